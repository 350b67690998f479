"""Exact-duplicate removal in the main process: the first occurrence of each cleaned text wins.

Documents are compared by `doc_id` (64 bits of the sha256 of the cleaned text), in source order,
across all batches. Only the 8-byte digests of the kept documents accumulate (`SeenDigests`).
"""

from __future__ import annotations

import numpy as np

from bertforge.ingest.documents import CleanedDocument


def drop_duplicates(documents: list[CleanedDocument], seen: SeenDigests) -> list[CleanedDocument]:
    """The documents whose cleaned text was not seen before (earlier batches or this one)."""
    digests = np.array([int(document.doc_id, 16) for document in documents], dtype=np.uint64)
    is_first = seen.add_first_occurrences(digests)
    # keep the first occurrence in source order of each doc_id, drop the later ones
    return [document for document, first in zip(documents, is_first, strict=True) if first]


class SeenDigests:
    """A growing set of 64-bit digests at ~8 bytes each (a Python set costs ~70 bytes an entry).

    Digests live in sorted numpy runs whose sizes more than halve from one run to the next (like a
    binary counter), so a lookup is a few binary searches and each digest is merged O(log n) times.
    """

    def __init__(self) -> None:
        self._runs: list[np.ndarray] = []

    def __len__(self) -> int:
        return sum(len(run) for run in self._runs)

    def add_first_occurrences(self, digests: np.ndarray) -> np.ndarray:
        """Mark which digests (in order) were not seen before, neither earlier nor in this batch;
        add them."""
        digests = np.asarray(digests, dtype=np.uint64)
        is_first = np.zeros(len(digests), dtype=bool)
        if len(digests) == 0:
            return is_first
        # within the batch, only the first occurrence of a digest counts
        _, first_positions = np.unique(digests, return_index=True)
        is_first[first_positions] = True
        # and only if no earlier batch had it
        for run in self._runs:
            positions = np.minimum(np.searchsorted(run, digests), len(run) - 1)
            is_first &= run[positions] != digests
        new_run = np.sort(digests[is_first])
        if len(new_run) == 0:
            return is_first
        while self._runs and len(self._runs[-1]) <= len(new_run):
            # timsort ("stable") merges two sorted runs in linear time
            new_run = np.sort(np.concatenate([self._runs.pop(), new_run]), kind="stable")
        self._runs.append(new_run)
        return is_first
