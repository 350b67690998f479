"""bertforge.ingest.documents: the drop rules, and the held-out split by a salted hash of the id."""

from __future__ import annotations

import hashlib
import math

from bertforge.ingest.cleaning import clean_text
from bertforge.ingest.documents import document_id, is_held_out
from tests.factories import ingest_params, numbered_document, run_ingest, write_txt

# --- drop rules --------------------------------------------------------------------------------


def test_empty_short_and_one_sentence_documents_are_dropped_with_their_reason(tmp_path):
    documents = [
        "\u200b\x07\ufeff",  # empty once cleaned
        "Too short.",
        "One sentence that is long enough to pass the length filter",
        numbered_document(1),
    ]
    write_txt(tmp_path / "a.txt", documents)
    params = ingest_params({"path": str(tmp_path / "a.txt")}, min_sentences=2)
    metrics, train, heldout = run_ingest(params, tmp_path / "o")
    assert metrics["dropped"] == {
        "empty": 1,
        "too_short": 1,
        "too_few_sentences": 1,
        "duplicate": 0,
    }
    assert [row["doc_id"] for row in train + heldout] == [document_id(clean_text(documents[3]))]


# --- held-out split ----------------------------------------------------------------------------


def test_holdout_follows_the_documented_hash_rule():
    doc_id = "0123456789abcdef"
    value = int.from_bytes(hashlib.sha256(b"7:0123456789abcdef").digest()[:8], "big") / 2**64
    assert is_held_out(doc_id, 7, value + 1e-9)
    assert not is_held_out(doc_id, 7, value - 1e-9)


def test_holdout_fraction_is_within_a_binomial_bound():
    trials, fraction = 20_000, 0.1
    held = sum(is_held_out(f"{index:016x}", 3, fraction) for index in range(trials))
    bound = 5 * math.sqrt(trials * fraction * (1 - fraction))  # 5 standard deviations
    assert abs(held - trials * fraction) < bound


def test_holdout_split_does_not_change_when_documents_are_reordered(tmp_path):
    documents = [numbered_document(index) for index in range(200)]
    write_txt(tmp_path / "forward.txt", documents)
    write_txt(tmp_path / "backward.txt", documents[::-1])
    held = []
    for name in ("forward", "backward"):
        params = ingest_params({"path": str(tmp_path / f"{name}.txt")}, holdout_fraction=0.3)
        _, train, heldout = run_ingest(params, tmp_path / name)
        assert len(train) + len(heldout) == 200
        held.append({row["doc_id"] for row in heldout})
    assert held[0] == held[1]
    assert 30 < len(held[0]) < 90
