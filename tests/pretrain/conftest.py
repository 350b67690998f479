"""The pretrain fixture project: a tiny tokenizer and data/examples (tests.factories)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.factories import make_pretrain_project


@pytest.fixture
def project(tmp_path: Path) -> Path:
    return make_pretrain_project(tmp_path)
