"""Fixtures of the fine-tuning tests: a tiny pretrained export and two tiny tasks."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.factories import make_tiny_export, write_embedded_tasks


@pytest.fixture(scope="module")
def export(tmp_path_factory) -> Path:
    """A random export with a real WordPiece tokenizer (the pretrain stage's shape)."""
    return make_tiny_export(tmp_path_factory.mktemp("export") / "model")


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> tuple[Path, dict]:
    """A project root with two embedded tasks, and their specs."""
    root = tmp_path_factory.mktemp("project")
    return root, write_embedded_tasks(root)
