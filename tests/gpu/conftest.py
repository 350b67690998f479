"""GPU tests need no MLflow store: the GPU machine runs them without MLflow installed."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def isolated_mlflow() -> None:
    """Replaces tests/conftest.py's fixture of the same name, which imports MLflow."""
