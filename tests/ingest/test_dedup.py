"""bertforge.ingest.dedup: exact duplicates dropped, the first occurrence in source order wins."""

from __future__ import annotations

import numpy as np

from bertforge.ingest.cleaning import clean_text
from bertforge.ingest.dedup import SeenDigests
from bertforge.ingest.documents import document_id
from tests.factories import ingest_params, numbered_document, run_ingest, write_txt


def test_exact_duplicates_are_dropped_and_the_first_occurrence_in_source_order_wins(tmp_path):
    repeated = numbered_document(5)
    write_txt(tmp_path / "a.txt", [numbered_document(1), repeated])
    # same text after cleaning (other whitespace, decomposed characters absent) counts as equal
    write_txt(tmp_path / "b.txt", [repeated.replace(" ", "  \t"), numbered_document(2), repeated])
    params = ingest_params({"path": str(tmp_path / "*.txt")}, holdout_fraction=0.01)
    metrics, train, heldout = run_ingest(params, tmp_path / "o")
    rows = train + heldout
    assert metrics["dropped"]["duplicate"] == 2
    assert len(rows) == 3
    duplicate_id = document_id(clean_text(repeated))
    assert [row["source"] for row in rows if row["doc_id"] == duplicate_id] == [
        (tmp_path / "a.txt").as_posix()
    ]


def test_seen_digests_keeps_exactly_the_first_occurrences_like_a_python_set():
    rng = np.random.default_rng(0)
    seen, reference = SeenDigests(), set()
    for _ in range(60):
        batch = rng.integers(0, 3000, size=int(rng.integers(0, 200)), dtype=np.uint64)
        batch[:3] = np.uint64(2**64 - 1)  # the largest digest
        expected = []
        for digest in batch.tolist():
            expected.append(digest not in reference)
            reference.add(digest)
        assert seen.add_first_occurrences(batch).tolist() == expected
    assert len(seen) == len(reference)
