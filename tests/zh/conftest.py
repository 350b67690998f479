"""A small Chinese project, from the first documents of the embedded Chinese corpus: ingested
as `language: zh` with joined lines does it, and a tokenizer trained on them."""

from __future__ import annotations

import lzma
from pathlib import Path

import pytest

from bertforge.ingest.cleaning import clean_text
from bertforge.ingest.zh import chinese_splitter, join_wrapped_lines
from tests.factories import vocab_params, write_split, write_trained_tokenizer
from tests.support import REPO_ROOT

CORPUS_ZH = REPO_ROOT / "data/raw/corpus-zh"


def chinese_documents(name: str, count: int, skip: int = 0) -> list[list[str]]:
    """The first `count` documents (after `skip`) of corpus-zh/<name>.txt.xz, as sentences."""
    text = lzma.decompress((CORPUS_ZH / f"{name}.txt.xz").read_bytes()).decode("utf-8")
    split = chinese_splitter()
    documents = text.removesuffix("\n").split("\n\n")[skip : skip + count]
    return [split(clean_text(join_wrapped_lines(document))) for document in documents]


@pytest.fixture(scope="package")
def chinese_project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """data/ingested (train: 160 documents in 2 shards, heldout: 20) and data/tokenizer."""
    root = tmp_path_factory.mktemp("chinese")
    train = chinese_documents("fortunes", 100) + chinese_documents("tang300", 60)
    write_split(root / "data/ingested/train", train, rows_per_shard=80)
    write_split(root / "data/ingested/heldout", chinese_documents("tang300", 20, skip=60))
    params = vocab_params(vocab_size=5000, limit_alphabet=100, min_frequency=2)
    write_trained_tokenizer(root / "data/tokenizer", root / "data/ingested/train", params)
    return root
