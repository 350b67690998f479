"""The held-out metrics: [UNK] rate and tokens per word on sentences training never saw."""

from __future__ import annotations

from pathlib import Path

from bertforge.tokenizer.files import load_tokenizer
from bertforge.vocab.metrics import heldout_metrics
from tests.factories import VOCAB_HELDOUT_DOCUMENTS, write_documents


def test_heldout_metrics_count_unknown_tokens_and_tokens_per_word(
    uncased_dir: Path, ingested: Path
) -> None:
    tokenizer = load_tokenizer(uncased_dir)
    metrics = heldout_metrics(tokenizer, ingested / "data/ingested/heldout", batch_size=2)
    sentences = [sentence for document in VOCAB_HELDOUT_DOCUMENTS for sentence in document]
    encodings = [tokenizer.encode(s, add_special_tokens=False).tokens for s in sentences]
    tokens = sum(len(e) for e in encodings)
    words = sum(len(s.split()) for s in sentences)
    assert metrics["heldout_tokens"] == tokens
    assert metrics["heldout_words"] == words
    assert metrics["unk_rate"] == sum(e.count("[UNK]") for e in encodings) / tokens > 0
    assert metrics["tokens_per_word"] == tokens / words
    assert metrics["vocab_size"] == tokenizer.get_vocab_size()


def test_heldout_metrics_of_an_empty_split_are_null(uncased_dir: Path, tmp_path: Path) -> None:
    write_documents(tmp_path / "heldout", [])
    metrics = heldout_metrics(load_tokenizer(uncased_dir), tmp_path / "heldout")
    assert metrics["unk_rate"] is None and metrics["tokens_per_word"] is None
