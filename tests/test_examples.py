"""The rules of BERT's pretraining instances, each checked exactly or statistically.

Statistical checks use 5-sigma binomial bounds on large samples, so a correct implementation
fails them with probability below one in a million, and a wrong rate (say 0.4 for 0.5) fails.
Provenance is tracked with documents of disjoint token ids: token ``t`` belongs to document
``t // DOCUMENT_ID_STRIDE``.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from bertforge.errors import BertforgeError
from bertforge.examples import (
    IGNORE_INDEX,
    ExamplesParams,
    MaskingRule,
    SplitDocuments,
    TokenizedUnit,
    TokenizerInfo,
    UnitSettings,
    assemble_instances,
    create_instances_from_documents,
    create_masked_lm_predictions,
    create_unit_instances,
    mask_batch,
    truncate_seq_pair,
    unit_ranges,
)
from bertforge.params import parse
from bertforge.schemas import examples_schema, validate

DOCUMENT_ID_STRIDE = 10_000
CLS, SEP, MASK = 2, 3, 4


def within_binomial_bound(successes: int, trials: int, probability: float, sigmas: float = 5.0):
    """Is `successes` within `sigmas` standard deviations of Binomial(trials, probability)?"""
    spread = sigmas * math.sqrt(trials * probability * (1 - probability))
    return abs(successes - trials * probability) <= spread


def unit_from_sentence_lengths(documents: list[list[int]]) -> TokenizedUnit:
    """A unit whose document d has sentences of the given lengths, tokens from d's own id range."""
    sentence_lengths = np.array([length for document in documents for length in document])
    sentences_per_document = np.array([len(document) for document in documents])
    document_of_token = np.repeat(
        np.repeat(np.arange(len(documents)), sentences_per_document), sentence_lengths
    )
    token_ids = (document_of_token + 1) * DOCUMENT_ID_STRIDE + np.arange(
        len(document_of_token)
    ) % 97
    document_ends = np.cumsum(sentences_per_document).tolist()
    return TokenizedUnit(
        token_ids.astype(np.uint32),
        [0, *np.cumsum(sentence_lengths).tolist()],
        list(zip([0, *document_ends[:-1]], document_ends, strict=True)),
    )


def document_of(token_ids: np.ndarray) -> np.ndarray:
    return token_ids // DOCUMENT_ID_STRIDE - 1


def params(**overrides) -> ExamplesParams:
    return ExamplesParams(**{"num_proc": 1, **overrides})


def rule(vocab_size: int = 1000, **overrides) -> MaskingRule:
    values = {
        "masked_lm_prob": 0.15,
        "max_predictions_per_seq": 20,
        "vocab_size": vocab_size,
        "mask_id": MASK,
        "unmaskable_ids": (CLS, SEP),
    } | overrides
    return MaskingRule(**values)


def random_pairs(rng: np.random.Generator, count: int, vocab_size: int = 1000):
    """Padded [CLS] A [SEP] B [SEP] sequences of random lengths, ids outside the specials."""
    lengths = rng.integers(5, 129, size=count)
    ids = rng.integers(5, vocab_size, size=(count, 128))
    b_start = np.array([rng.integers(2, n - 1) for n in lengths])
    ids[:, 0] = CLS
    ids[np.arange(count), b_start - 1] = SEP
    ids[np.arange(count), lengths - 1] = SEP
    ids[np.arange(128) >= lengths[:, None]] = 0
    return ids, lengths


# --- masking ----------------------------------------------------------------------------------


def test_masked_token_count_is_min_of_max_predictions_and_rounded_fraction_of_length():
    rng = np.random.default_rng(0)
    ids, lengths = random_pairs(rng, 5000)
    _, positions, labels = mask_batch(ids, lengths, rule(), rng)
    counts = (labels != IGNORE_INDEX).sum(axis=1)
    expected = np.minimum(20, np.maximum(1, np.array([round(n * 0.15) for n in lengths])))
    assert (counts == expected).all()
    for row in range(len(ids)):
        chosen = positions[row, : counts[row]]
        assert (np.diff(chosen) > 0).all(), "positions ascending and unique"
        assert (chosen < lengths[row]).all()
        assert not np.isin(ids[row, chosen], (CLS, SEP)).any(), "never [CLS] or [SEP]"
        assert (labels[row, : counts[row]] == ids[row, chosen]).all()


def test_masked_positions_are_uniform_over_the_candidates():
    rng = np.random.default_rng(1)
    ids = np.full((40_000, 12), 7)
    ids[:, 0], ids[:, 5], ids[:, 11] = CLS, SEP, SEP  # 9 candidates, round(12 * 0.25) = 3 chosen
    _, positions, labels = mask_batch(ids, np.full(40_000, 12), rule(masked_lm_prob=0.25), rng)
    hits = np.bincount(positions[labels != IGNORE_INDEX], minlength=12)
    assert hits[[0, 5, 11]].sum() == 0
    for position in (1, 2, 3, 4, 6, 7, 8, 9, 10):
        assert within_binomial_bound(hits[position], 40_000, 3 / 9)


def test_every_subset_of_candidates_is_equally_likely():
    # what shuffling the candidates and taking the first ones gives: not only uniform marginals
    rng = np.random.default_rng(11)
    ids = np.full((40_000, 8), 7)
    ids[:, 0], ids[:, 4], ids[:, 7] = CLS, SEP, SEP  # 5 candidates, round(8 * 0.25) = 2 chosen
    _, positions, labels = mask_batch(ids, np.full(40_000, 8), rule(masked_lm_prob=0.25), rng)
    assert (labels[:, :2] != IGNORE_INDEX).all() and (labels[:, 2:] == IGNORE_INDEX).all()
    subsets = pd.Series([tuple(row) for row in positions[:, :2].tolist()]).value_counts()
    assert sorted(subsets.index) == list(itertools.combinations((1, 2, 3, 5, 6), 2))
    for hits in subsets:
        assert within_binomial_bound(hits, 40_000, 1 / 10)


def test_chosen_tokens_become_mask_80_percent_stay_10_percent_random_10_percent():
    vocab_size = 50
    rng = np.random.default_rng(2)
    ids, lengths = random_pairs(rng, 20_000, vocab_size)
    masked, positions, labels = mask_batch(ids, lengths, rule(vocab_size), rng)
    rows, columns = np.nonzero(labels != IGNORE_INDEX)
    original = labels[rows, columns]
    became = masked[rows, positions[rows, columns]]
    trials = len(original)
    # a random replacement is uniform over the whole vocabulary, so it may hit [MASK] or the
    # original token: P(MASK) = 0.8 + 0.1/V, P(same) = 0.1 + 0.1/V (originals are never [MASK])
    assert within_binomial_bound(int((became == MASK).sum()), trials, 0.8 + 0.1 / vocab_size)
    assert within_binomial_bound(int((became == original).sum()), trials, 0.1 + 0.1 / vocab_size)
    random = became[(became != MASK) & (became != original)]
    assert within_binomial_bound(len(random), trials, 0.1 * (1 - 2 / vocab_size))
    assert set(random.tolist()) >= {0, 1, CLS, SEP}, "random tokens span the whole vocabulary"
    unmasked = np.ones_like(ids, dtype=bool)
    unmasked[rows, positions[rows, columns]] = False
    assert (masked[unmasked] == ids[unmasked]).all(), "only chosen positions change"


def test_whole_word_mask_never_splits_a_word_and_never_overshoots():
    vocab_size = 1000
    continuation = np.zeros(vocab_size, dtype=bool)
    continuation[500:] = True  # ids >= 500 are "##" pieces
    rng = np.random.default_rng(3)
    ids, lengths = random_pairs(rng, 5000, vocab_size)
    whole_words = rule(vocab_size, continuation=continuation)
    _, positions, labels = mask_batch(ids, lengths, whole_words, rng)
    expected = np.minimum(20, np.maximum(1, np.rint(lengths * 0.15)))
    for row in range(len(ids)):
        chosen = set(positions[row][labels[row] != IGNORE_INDEX].tolist())
        assert len(chosen) <= expected[row]
        for word in words_of(ids[row, : lengths[row]], continuation):
            assert set(word) <= chosen or not set(word) & chosen, f"row {row}: {word} split"


def words_of(token_ids: np.ndarray, continuation: np.ndarray) -> list[list[int]]:
    """Positions grouped into words: a "##" piece joins the word before, specials stand alone."""
    words: list[list[int]] = []
    previous_special = True
    for position, token in enumerate(token_ids.tolist()):
        special = token in (CLS, SEP)
        if not special:
            if continuation[token] and not previous_special:
                words[-1].append(position)
            else:
                words.append([position])
        previous_special = special
    return words


def test_create_masked_lm_predictions_masks_one_sequence_like_the_batch():
    token_ids = np.array([CLS, *range(10, 60), SEP, *range(60, 80), SEP], dtype=np.uint16)
    masked, positions, labels = create_masked_lm_predictions(
        token_ids, rule(), np.random.default_rng(4)
    )
    batch_masked, batch_positions, batch_labels = mask_batch(
        token_ids[None, :], np.array([len(token_ids)]), rule(), np.random.default_rng(4)
    )
    assert masked.dtype == np.uint16 and len(positions) == round(len(token_ids) * 0.15)
    assert (masked == batch_masked[0]).all()
    assert (positions == batch_positions[0, : len(positions)]).all()
    assert (labels == token_ids[positions]).all() and (labels == batch_labels[0, :11]).all()


# --- segments ---------------------------------------------------------------------------------


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


def test_unit_ranges_cut_fixed_units_and_merge_a_single_trailing_document():
    def unit_sizes(documents: int, unit_size: int) -> list[int]:
        ranges = unit_ranges(documents, unit_size)
        assert ranges[0][0] == 0 and ranges[-1][1] == documents
        assert all(end == start for (_, end), (start, _) in itertools.pairwise(ranges))
        return [end - start for start, end in ranges]

    assert unit_sizes(7, 3) == [3, 4]
    assert unit_sizes(8, 3) == [3, 3, 2]
    assert unit_sizes(8, 2) == [2, 2, 2, 2]
    assert unit_sizes(9, 2) == [2, 2, 2, 3]
    assert unit_sizes(1, 5) == [1]
    assert unit_sizes(5, 5) == [5]


def test_split_documents_reads_any_range_across_shards_and_row_groups(tmp_path):
    documents = [[f"document {i}.", f"sentence {i}b."] for i in range(23)]
    for shard, (start, end) in enumerate([(0, 10), (10, 17), (17, 23)]):
        table = pa.table({"sentences": pa.array(documents[start:end])})
        pq.write_table(table, tmp_path / f"part-{shard:05d}.parquet", row_group_size=4)
    split = SplitDocuments(tmp_path)
    assert split.documents == 23 and len(split.row_groups) == 3 + 2 + 2
    for start, end in [(0, 23), (0, 1), (3, 9), (9, 18), (16, 17), (22, 23), (5, 5)]:
        assert split.read(start, end).to_pylist() == documents[start:end]


def test_unit_with_a_single_document_cannot_draw_nsp_negatives():
    unit = unit_from_sentence_lengths([[5, 5]])
    info = TokenizerInfo(None, 60_000, {"[CLS]": CLS, "[SEP]": SEP, "[MASK]": MASK}, "", ())
    settings = UnitSettings(params(), info, (1, 1))
    with pytest.raises(BertforgeError, match="nsp needs at least two documents"):
        create_unit_instances(unit, settings, 1, np.random.default_rng(0), "here")


# --- the contract -----------------------------------------------------------------------------


def contract(nsp: bool = True, masking: str = "static"):
    return examples_schema(100, CLS, SEP, 16, 3, nsp, masking)


def instance_frame(**overrides) -> pd.DataFrame:
    row = {
        "input_ids": np.array([CLS, 10, MASK, SEP, 12, 13, SEP], dtype=np.uint16),
        "segment_b_start": np.int16(4),
        "masked_lm_positions": np.array([2, 5], dtype=np.int16),
        "masked_lm_ids": np.array([11, 13], dtype=np.uint16),
        "next_sentence_label": np.int8(1),
    } | overrides
    frame = pd.DataFrame([row])
    frame["segment_b_start"] = frame["segment_b_start"].astype("int16")
    frame["next_sentence_label"] = frame["next_sentence_label"].astype("int8")
    return frame


def test_contract_accepts_a_valid_instance():
    validate(contract(), instance_frame(), "here")


@pytest.mark.parametrize(
    ("corruption", "message"),
    [
        ({"input_ids": np.array([5, 10, MASK, SEP, 12, 13, SEP], np.uint16)}, "start with"),
        ({"input_ids": np.array([CLS, 10, MASK, SEP, 12, 13, 14], np.uint16)}, "end with"),
        ({"input_ids": np.array([CLS, 10, MASK, 9, 12, 13, SEP], np.uint16)}, "segment_b_start"),
        ({"input_ids": np.array([CLS, 10, 100, SEP, 12, 13, SEP], np.uint16)}, "< 100"),
        ({"input_ids": np.array([CLS, *[7] * 14, SEP, 8, SEP], np.uint16)}, "to 16 ids"),
        ({"segment_b_start": np.int16(7)}, "segment_b_start"),
        ({"masked_lm_positions": np.array([0, 5], np.int16)}, "masked_lm_positions"),
        ({"masked_lm_positions": np.array([3, 5], np.int16)}, "masked_lm_positions"),
        ({"masked_lm_positions": np.array([5, 2], np.int16)}, "masked_lm_positions"),
        ({"masked_lm_positions": np.array([2, 2], np.int16)}, "masked_lm_positions"),
        ({"masked_lm_positions": np.array([2, 9], np.int16)}, "masked_lm_positions"),
        ({"masked_lm_ids": np.array([11], np.uint16)}, "masked_lm_positions"),
        (
            {
                "masked_lm_positions": np.array([], np.int16),
                "masked_lm_ids": np.array([], np.uint16),
            },
            "1 to 3 of them",
        ),
        ({"next_sentence_label": np.int8(-1)}, "isin"),
    ],
)
def test_contract_rejects_a_corrupted_instance(corruption, message):
    with pytest.raises(BertforgeError, match=message):
        validate(contract(), instance_frame(**corruption), "data/examples/train")


def test_contract_without_nsp_wants_label_minus_one_and_no_segment_b():
    frame = instance_frame(
        input_ids=np.array([CLS, 10, MASK, 12, SEP], np.uint16),
        segment_b_start=np.int16(5),
        masked_lm_positions=np.array([2], np.int16),
        masked_lm_ids=np.array([11], np.uint16),
        next_sentence_label=np.int8(-1),
    )
    validate(contract(nsp=False), frame, "here")
    with pytest.raises(BertforgeError, match="isin"):
        validate(contract(nsp=False), frame.assign(next_sentence_label=np.int8(0)), "here")


def test_contract_with_dynamic_masking_wants_no_stored_masks():
    frame = instance_frame(
        masked_lm_positions=np.array([], np.int16), masked_lm_ids=np.array([], np.uint16)
    )
    validate(contract(masking="dynamic"), frame, "here")
    with pytest.raises(BertforgeError, match="masked_lm_positions"):
        validate(contract(masking="dynamic"), instance_frame(), "here")


# --- assembling and params --------------------------------------------------------------------


def test_assemble_instances_builds_cls_a_sep_b_sep_and_cls_a_sep():
    token_ids = np.arange(100, 120, dtype=np.uint16)
    spans = np.array([[0, 3, 10, 12, 1], [5, 9, 0, 0, -1]])
    batch = assemble_instances(token_ids, spans, CLS, SEP)
    rows = batch.rows()
    assert rows[0]["input_ids"].tolist() == [CLS, 100, 101, 102, SEP, 110, 111, SEP]
    assert rows[0]["segment_b_start"] == 5 and rows[0]["next_sentence_label"] == 1
    assert rows[1]["input_ids"].tolist() == [CLS, 105, 106, 107, 108, SEP]
    assert rows[1]["segment_b_start"] == 6 and rows[1]["next_sentence_label"] == -1


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"max_predictions_per_seq": 126}, "examples.max_predictions_per_seq must be in"),
        ({"masked_lm_prob": 0.0}, "examples.masked_lm_prob must be in"),
        ({"masked_lm_prob": 1.0}, "examples.masked_lm_prob must be in"),
        ({"max_seq_length": 7}, "examples.max_seq_length must be in"),
        ({"masking": "sometimes"}, "examples.masking must be one of"),
        ({"negative_pool_size": 1}, "examples.negative_pool_size must be at least 2"),
    ],
)
def test_inconsistent_params_are_one_line_errors_naming_the_parameter(values, message):
    with pytest.raises(BertforgeError, match=message):
        parse(ExamplesParams, values, "params.yaml: examples")


def test_max_predictions_may_reach_max_seq_length_minus_two_without_nsp():
    assert parse(ExamplesParams, {"nsp": False, "max_predictions_per_seq": 126}, "x")
    with pytest.raises(BertforgeError):
        parse(ExamplesParams, {"nsp": True, "max_predictions_per_seq": 126}, "x")
