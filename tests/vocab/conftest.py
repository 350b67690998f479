"""A tokenizer trained once for the vocab tests, on the multilingual fixture documents."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.factories import (
    VOCAB_HELDOUT_DOCUMENTS,
    VOCAB_TRAIN_DOCUMENTS,
    vocab_params,
    write_ingested,
    write_trained_tokenizer,
)


@pytest.fixture(scope="package")
def ingested(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """data/ingested with the multilingual fixture documents."""
    root = tmp_path_factory.mktemp("ingested")
    return write_ingested(root, VOCAB_TRAIN_DOCUMENTS, VOCAB_HELDOUT_DOCUMENTS)


@pytest.fixture(scope="package")
def uncased_dir(ingested: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The default BERT setup (lowercase, strip accents), trained and written."""
    directory = tmp_path_factory.mktemp("uncased")
    return write_trained_tokenizer(directory, ingested / "data/ingested/train", vocab_params())
