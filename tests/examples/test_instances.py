"""The original's instance rules, each checked exactly or statistically: truncation, the
target length, NSP random next, and how the passes cover each document; then assembling
``[CLS] A [SEP] B [SEP]``.

Statistical checks use 5-sigma binomial bounds on large samples. Provenance is tracked with
documents of disjoint token ids: token ``t`` belongs to document ``t // DOCUMENT_ID_STRIDE - 1``.
"""

from __future__ import annotations

import itertools
import math

import numpy as np

from bertforge.examples.instances import (
    assemble_instances,
    create_instances_from_documents,
    truncate_seq_pair,
)
from bertforge.examples.params import ExamplesParams
from tests.factories import (
    DOCUMENT_ID_STRIDE,
    unit_from_sentence_lengths,
    within_binomial_bound,
)

CLS, SEP = 2, 3


def document_of(token_ids: np.ndarray) -> np.ndarray:
    return token_ids // DOCUMENT_ID_STRIDE - 1


def params(**overrides) -> ExamplesParams:
    return ExamplesParams(**{"num_proc": 1, **overrides})


def truncate_one_token_at_a_time(length_a: int, length_b: int, max_num_tokens: int):
    """The original's loop, counting only lengths."""
    while length_a + length_b > max_num_tokens:
        if length_a > length_b:
            length_a -= 1
        else:
            length_b -= 1
    return length_a, length_b


def instances_of_each_document(rows: np.ndarray) -> dict[int, np.ndarray]:
    """The rows of `create_instances_from_documents` grouped by document, in the order made."""
    order = np.argsort(rows[:, 5], kind="stable")
    documents, first = np.unique(rows[order, 5], return_index=True)
    return dict(zip(documents.tolist(), np.split(rows[order], first[1:]), strict=True))


def test_truncation_takes_from_the_longer_segment_b_on_ties_like_the_original_loop():
    length_a, length_b = (grid.ravel() for grid in np.meshgrid(np.arange(40), np.arange(40)))
    a_start, b_start = np.full_like(length_a, 100), np.full_like(length_b, 500)
    spans = truncate_seq_pair(
        a_start, a_start + length_a, b_start, b_start + length_b, 30, np.random.default_rng(5)
    )
    a_start, a_end, b_start, b_end = (np.asarray(s).tolist() for s in spans)
    for i, (before_a, before_b) in enumerate(
        zip(length_a.tolist(), length_b.tolist(), strict=True)
    ):
        after = (a_end[i] - a_start[i], b_end[i] - b_start[i])
        assert after == truncate_one_token_at_a_time(before_a, before_b, 30)
        assert 100 <= a_start[i] <= a_end[i] <= 100 + before_a
        assert 500 <= b_start[i] <= b_end[i] <= 500 + before_b


def test_truncation_removes_tokens_from_the_front_and_the_back_with_probability_half():
    pairs = 5000
    a_start, b_start = np.zeros(pairs, np.int64), np.full(pairs, 1000)
    spans = truncate_seq_pair(a_start, a_start + 100, b_start, b_start + 90, 125,
                              np.random.default_rng(6))  # fmt: skip
    from_front = int(spans[0].sum() + (spans[2] - 1000).sum())
    assert within_binomial_bound(from_front, pairs * 65, 0.5)


def test_short_seq_prob_draws_a_shorter_target_for_that_fraction_of_documents():
    # one-token sentences: an actual-next instance holds exactly `target_seq_length` tokens
    unit = unit_from_sentence_lengths([[1] * 130 for _ in range(20_000)])
    rows = create_instances_from_documents(
        unit, params(short_seq_prob=0.1), 1, np.random.default_rng(7)
    )
    first = np.array([instances[0] for instances in instances_of_each_document(rows).values()])
    actual_next = first[first[:, 4] == 0]
    lengths = (actual_next[:, 1] - actual_next[:, 0]) + (actual_next[:, 3] - actual_next[:, 2])
    short = lengths[lengths < 125]
    # the short target is uniform in [2, 125]: below 125 with probability 123/124
    assert within_binomial_bound(len(short), len(actual_next), 0.1 * 123 / 124)
    assert short.min() >= 2 and abs(short.mean() - 63) < 5 * 36 / math.sqrt(len(short))


def test_random_next_half_the_time_for_multi_sentence_chunks_always_for_one_sentence_chunks():
    # two 10-token sentences per document: the first chunk holds both; when B is a random
    # continuation the second sentence is put back and becomes a one-sentence chunk
    unit = unit_from_sentence_lengths([[10, 10] for _ in range(8000)])
    rows = create_instances_from_documents(
        unit, params(short_seq_prob=0.0), 1, np.random.default_rng(8)
    )
    first_random = 0
    for instances in instances_of_each_document(rows).values():
        labels = instances[:, 4].tolist()
        first_random += labels[0]
        assert labels == ([1, 1] if labels[0] == 1 else [0]), labels
    assert within_binomial_bound(first_random, unit.num_documents, 0.5)


def test_nsp_negative_comes_from_another_document_and_actual_next_from_the_same():
    rng = np.random.default_rng(9)
    lengths = [rng.integers(1, 40, size=rng.integers(1, 30)).tolist() for _ in range(300)]
    unit = unit_from_sentence_lengths(lengths)
    rows = create_instances_from_documents(unit, params(), 2, rng)
    assert set(rows[:, 5].tolist()) == set(range(300))
    for a_start, a_end, b_start, b_end, label, document in rows.tolist():
        sources_a = set(document_of(unit.token_ids[a_start:a_end]).tolist())
        sources_b = set(document_of(unit.token_ids[b_start:b_end]).tolist())
        assert sources_a == {document}
        assert len(sources_b) == 1, "B is a continuation from one document"
        assert (sources_b != {document}) == (label == 1)
        assert 2 <= (a_end - a_start) + (b_end - b_start) + 3 <= 128
    assert set(rows[:, 4].tolist()) == {0, 1}


def test_each_pass_puts_every_sentence_of_a_document_in_exactly_one_a_or_actual_next_b():
    # one-token sentences never need truncation: chunks reach the target exactly
    rng = np.random.default_rng(12)
    lengths = [[1] * int(rng.integers(1, 400)) for _ in range(300)]
    unit = unit_from_sentence_lengths(lengths)
    rows = create_instances_from_documents(unit, params(short_seq_prob=0.0), 3, rng)
    covered = np.zeros(len(unit.token_ids), dtype=np.int64)
    for a_start, a_end, b_start, b_end, label, _ in rows.tolist():
        covered[a_start:a_end] += 1
        if label == 0:
            covered[b_start:b_end] += 1
    assert (covered == 3).all()


def test_without_nsp_instances_are_whole_sentences_of_one_document_covering_it_once():
    rng = np.random.default_rng(10)
    lengths = [rng.integers(1, 60, size=rng.integers(1, 30)).tolist() for _ in range(200)]
    unit = unit_from_sentence_lengths(lengths)
    rows = create_instances_from_documents(unit, params(nsp=False, short_seq_prob=0.0), 1, rng)
    for document_index, instances in instances_of_each_document(rows).items():
        first, end = unit.document_sentences[document_index]
        covered = []
        for a_start, a_end, b_start, b_end, label, _ in instances.tolist():
            assert (label, b_start, b_end) == (-1, 0, 0)
            assert 1 <= a_end - a_start <= 126
            covered.append((a_start, a_end))
        document_tokens = (unit.sentence_starts[first], unit.sentence_starts[end])
        assert covered[0][0] == document_tokens[0] and covered[-1][1] == document_tokens[1]
        assert all(prev[1] == nxt[0] for prev, nxt in itertools.pairwise(covered))
        boundaries = set(unit.sentence_starts[first : end + 1])
        assert all(start in boundaries and stop in boundaries for start, stop in covered)
        # a chunk ends only where the next sentence would not fit
        for start, stop in covered[:-1]:
            next_end = min(b for b in boundaries if b > stop)
            assert next_end - start > 126


def test_assemble_instances_builds_cls_a_sep_b_sep_and_cls_a_sep():
    token_ids = np.arange(100, 120, dtype=np.uint16)
    spans = np.array([[0, 3, 10, 12, 1], [5, 9, 0, 0, -1]])
    batch = assemble_instances(token_ids, spans, CLS, SEP)
    rows = batch.rows()
    assert rows[0]["input_ids"].tolist() == [CLS, 100, 101, 102, SEP, 110, 111, SEP]
    assert rows[0]["segment_b_start"] == 5 and rows[0]["next_sentence_label"] == 1
    assert rows[1]["input_ids"].tolist() == [CLS, 105, 106, 107, 108, SEP]
    assert rows[1]["segment_b_start"] == 6 and rows[1]["next_sentence_label"] == -1
