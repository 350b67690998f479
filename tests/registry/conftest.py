"""The registry tests' MLflow store: a fresh copy of an empty, migrated sqlite store per test."""

from __future__ import annotations

import pytest

from tests.factories import fresh_store


@pytest.fixture
def store(tmp_path_factory, tmp_path, monkeypatch) -> str:
    return fresh_store(tmp_path_factory, tmp_path, monkeypatch)
