"""metrics/ingest.json: running totals while the stage runs, and the file's contents at the end.

Sentence lengths are kept as histograms (counts by length), so memory stays bounded by the
longest sentence, not by the number of sentences.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from bertforge.ingest.documents import DROP_REASONS, BatchResult, CleanedDocument
from bertforge.ingest.readers import ReadProgress


@dataclass
class IngestCounts:
    """Running totals for metrics/ingest.json; sentence lengths as histograms (bounded memory)."""

    train: int = 0
    heldout: int = 0
    sentences: int = 0
    characters: int = 0
    characters_removed: int = 0
    dropped: dict[str, int] = field(default_factory=lambda: dict.fromkeys(DROP_REASONS, 0))
    sentence_chars: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    sentence_words: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))

    def add_batch(self, result: BatchResult, kept: list[CleanedDocument]) -> None:
        """Count a processed batch whose non-duplicate documents are `kept`."""
        for reason, number in result.dropped.items():
            self.dropped[reason] += number
        self.dropped["duplicate"] += len(result.documents) - len(kept)
        self.characters_removed += result.characters_removed
        self.add_kept(kept)

    def add_kept(self, documents: list[CleanedDocument]) -> None:
        held_out = sum(document.held_out for document in documents)
        self.heldout += held_out
        self.train += len(documents) - held_out
        self.characters += sum(document.characters for document in documents)
        sentences = [sentence for document in documents for sentence in document.sentences]
        self.sentences += len(sentences)
        # whitespace is collapsed, so a sentence has one more word than it has spaces
        words = [count + 1 for count in map(str.count, sentences, itertools.repeat(" "))]
        self.sentence_chars = add_to_histogram(self.sentence_chars, list(map(len, sentences)))
        self.sentence_words = add_to_histogram(self.sentence_words, words)


def add_to_histogram(histogram: np.ndarray, values: list[int]) -> np.ndarray:
    """`histogram` (counts by value) plus the counts of `values`, grown as needed."""
    counts = np.bincount(np.asarray(values, dtype=np.int64), minlength=len(histogram))
    counts[: len(histogram)] += histogram
    return counts


def length_summary(histogram: np.ndarray) -> dict[str, float]:
    """min, mean, p50, p90, p99 and max of a histogram (counts by length)."""
    total = int(histogram.sum())
    if total == 0:
        return {"max": 0, "mean": 0.0, "min": 0, "p50": 0, "p90": 0, "p99": 0}
    lengths = np.flatnonzero(histogram)
    cumulative = np.cumsum(histogram)
    summary: dict[str, float] = {
        "max": int(lengths[-1]),
        "mean": round(float(np.dot(np.arange(len(histogram)), histogram)) / total, 2),
        "min": int(lengths[0]),
    }
    for name, quantile in (("p50", 0.50), ("p90", 0.90), ("p99", 0.99)):
        summary[name] = int(np.searchsorted(cumulative, quantile * total))
    return summary


def ingest_metrics(
    counts: IngestCounts, progress: ReadProgress, shards: dict[str, int]
) -> dict[str, Any]:
    """The contents of metrics/ingest.json (docs/ingest.md describes each key)."""
    return {
        "documents": {
            "train": counts.train,
            "heldout": counts.heldout,
            "total": counts.train + counts.heldout,
            "read": progress.raw_documents,
        },
        "sentences": counts.sentences,
        "characters": counts.characters,
        "characters_removed": counts.characters_removed,
        "input_bytes": progress.input_bytes_done,
        "uncompressed_bytes": progress.uncompressed_bytes,
        "dropped": counts.dropped,
        "sentence_chars": length_summary(counts.sentence_chars),
        "sentence_words": length_summary(counts.sentence_words),
        "shards": shards,
    }
