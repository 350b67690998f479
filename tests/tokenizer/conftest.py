"""A cased tokenizer for the tokenizer tests (`ingested` and `uncased_dir`: tests/conftest.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from bertforge.vocab.train import train_tokenizer
from tests.factories import vocab_params


@pytest.fixture(scope="package")
def cased_vocab(ingested: Path) -> dict[str, int]:
    """A cased vocabulary: capitals and accents survive, so every variant has pieces to find."""
    params = vocab_params(lowercase=False, vocab_size=900)
    return train_tokenizer(ingested / "data/ingested/train", params).get_vocab()
