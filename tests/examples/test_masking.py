"""The masked-LM rule, each part checked exactly or statistically: how many tokens, which ones
(uniform, whole words), and what they become (80/10/10).

Statistical checks use 5-sigma binomial bounds on large samples, so a correct implementation
fails them with probability below one in a million, and a wrong rate (say 0.4 for 0.5) fails.
"""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd

from bertforge.constants import IGNORE_INDEX
from bertforge.examples.masking import MaskingRule, create_masked_lm_predictions, mask_batch
from tests.factories import within_binomial_bound

CLS, SEP, MASK = 2, 3, 4


def rule(vocab_size: int = 1000, continuation_from: int | None = None, **meta) -> MaskingRule:
    """The rule `MaskingRule.from_meta` builds for a meta.json with `meta` (defaults: 15%, at
    most 20); with `continuation_from`, whole words, ids from it on being ``##`` pieces."""
    whole_words = continuation_from is not None
    meta = {
        "masked_lm_prob": 0.15,
        "max_predictions_per_seq": 20,
        "vocab_size": vocab_size,
        "special_token_ids": {"[CLS]": CLS, "[SEP]": SEP, "[MASK]": MASK},
        "whole_word_mask": whole_words,
    } | meta
    vocab = {
        ("##" if whole_words and i >= continuation_from else "") + f"t{i}": i
        for i in range(vocab_size)
    }
    return MaskingRule.from_meta(meta, vocab)


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


def test_from_meta_marks_the_continuation_pieces_for_whole_words_only():
    assert rule(continuation_from=500).continuation.tolist() == [i >= 500 for i in range(1000)]
    assert rule().continuation is None
    assert rule().unmaskable_ids == (CLS, SEP) and rule().mask_id == MASK


def test_whole_word_mask_never_splits_a_word_and_never_overshoots():
    vocab_size = 1000
    continuation = np.zeros(vocab_size, dtype=bool)
    continuation[500:] = True  # ids >= 500 are "##" pieces
    rng = np.random.default_rng(3)
    ids, lengths = random_pairs(rng, 5000, vocab_size)
    whole_words = rule(vocab_size, continuation_from=500)
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
