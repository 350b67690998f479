"""Shared fixtures: an isolated MLflow store for every test (helpers live in tests/support.py)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def migrated_mlflow_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An empty MLflow sqlite store with its schema migrations applied, made once per session.

    Creating a store runs MLflow's database migrations (many seconds); copying a migrated empty
    one gives every test a fresh store in milliseconds.
    """
    import mlflow

    store = tmp_path_factory.mktemp("mlflow-template") / "mlflow.db"
    mlflow.MlflowClient(tracking_uri=f"sqlite:///{store}").search_experiments()
    return store


@pytest.fixture(autouse=True)
def isolated_mlflow(
    migrated_mlflow_store: Path,
    tmp_path_factory: pytest.TempPathFactory,
    monkeypatch: pytest.MonkeyPatch,
) -> Path:
    """Every test logs to its own sqlite store, never to the repo's mlflow.db."""
    store = tmp_path_factory.mktemp("mlflow") / "mlflow.db"
    shutil.copy(migrated_mlflow_store, store)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{store}")
    monkeypatch.setenv("GIT_PYTHON_REFRESH", "quiet")
    return store


@pytest.fixture(scope="session")
def ingested(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """data/ingested with the multilingual fixture documents (tokenizer and vocab tests)."""
    from tests.factories import VOCAB_HELDOUT_DOCUMENTS, VOCAB_TRAIN_DOCUMENTS, write_ingested

    root = tmp_path_factory.mktemp("ingested")
    return write_ingested(root, VOCAB_TRAIN_DOCUMENTS, VOCAB_HELDOUT_DOCUMENTS)


@pytest.fixture(scope="session")
def uncased_dir(ingested: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The default BERT setup (lowercase, strip accents), trained once and written."""
    from tests.factories import vocab_params, write_trained_tokenizer

    directory = tmp_path_factory.mktemp("uncased")
    return write_trained_tokenizer(directory, ingested / "data/ingested/train", vocab_params())
