"""Masked-LM predictions, as google-research/bert's `create_masked_lm_predictions` makes them.

The original's rules: candidates are every position but [CLS] and [SEP]; ``num_to_predict =
min(max_predictions_per_seq, max(1, round(len * masked_lm_prob)))`` of them are chosen at random
(whole words together with ``whole_word_mask``); each chosen token becomes [MASK] 80% of the
time, stays 10%, becomes a random token 10%. `mask_batch` does this for a padded batch at once;
the examples stage applies it to the stored instances (``masking: static``, `mask_instances`)
and pretrain at training time (``masking: dynamic``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from bertforge.constants import IGNORE_INDEX
from bertforge.examples.instances import InstanceBatch, pad_ragged
from bertforge.tokenizer.pipeline import CONTINUING_SUBWORD_PREFIX


@dataclass(frozen=True, eq=False)
class MaskingRule:
    """How many tokens to predict and what they become; shared by static and dynamic masking.

    Build it with `from_meta`. `continuation` (whole-word masking) marks the vocabulary ids of
    ``##`` pieces; `None` masks single tokens. Random replacements are drawn over the whole
    vocabulary, special tokens included, as in the original
    (``vocab_words = list(tokenizer.vocab.keys())``).
    """

    masked_lm_prob: float
    max_predictions_per_seq: int
    vocab_size: int
    mask_id: int
    unmaskable_ids: tuple[int, ...]
    continuation: np.ndarray | None = None

    @classmethod
    def from_meta(cls, meta: Mapping[str, Any], vocab: Mapping[str, int]) -> MaskingRule:
        """The rule data/examples/meta.json describes, for `vocab` (token → id).

        `meta` needs ``masked_lm_prob``, ``max_predictions_per_seq``, ``vocab_size``,
        ``special_token_ids`` and ``whole_word_mask``; `vocab` is read only for whole words.
        """
        special_ids = meta["special_token_ids"]
        continuation = None
        if meta["whole_word_mask"]:
            # a ## piece continues the word before it
            continuation = np.zeros(meta["vocab_size"], dtype=bool)
            continuation[
                [i for token, i in vocab.items() if token.startswith(CONTINUING_SUBWORD_PREFIX)]
            ] = True
        return cls(
            masked_lm_prob=meta["masked_lm_prob"],
            max_predictions_per_seq=meta["max_predictions_per_seq"],
            vocab_size=meta["vocab_size"],
            mask_id=special_ids["[MASK]"],
            unmaskable_ids=(special_ids["[CLS]"], special_ids["[SEP]"]),  # never masked
            continuation=continuation,
        )


def create_masked_lm_predictions(
    token_ids: np.ndarray, rule: MaskingRule, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mask one sequence: ``(masked ids, masked_lm_positions ascending, original ids there)``."""
    token_ids = np.asarray(token_ids)
    masked, positions, labels = mask_batch(
        token_ids[None, :], np.array([len(token_ids)]), rule, rng
    )
    count = int((labels[0] != IGNORE_INDEX).sum())
    return masked[0], positions[0, :count], labels[0, :count].astype(token_ids.dtype)


def mask_batch(
    input_ids: np.ndarray,
    lengths: np.ndarray,
    rule: MaskingRule,
    rng: np.random.Generator,
    word_continues: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """`create_masked_lm_predictions` for a padded batch ``[batch, width]`` of sequences.

    Positions at or past a row's length (padding) are never chosen. Returns the masked ids
    (same shape and dtype), ``masked_lm_positions [batch, max_predictions_per_seq]`` ascending
    and padded with 0, and ``masked_lm_labels`` (the original ids) padded with `IGNORE_INDEX`.
    With whole words, `word_continues` (``[batch, width]``, from a word segmenter) marks the
    tokens that continue the word before them instead of the vocabulary's ``##`` pieces.
    """
    input_ids = np.asarray(input_ids)
    lengths = np.asarray(lengths, dtype=np.int64)
    batch, width = input_ids.shape
    in_sequence = np.arange(width) < lengths[:, None]
    candidate = in_sequence
    for unmaskable in rule.unmaskable_ids:
        candidate = candidate & (input_ids != unmaskable)  # never [CLS] or [SEP]
    # num_to_predict = min(max_predictions_per_seq, max(1, round(len * masked_lm_prob)))
    num_to_predict = np.rint(lengths * rule.masked_lm_prob).astype(np.int64)
    num_to_predict = np.minimum(rule.max_predictions_per_seq, np.maximum(1, num_to_predict))
    num_to_predict = np.minimum(num_to_predict, candidate.sum(axis=1))
    predictions = rule.max_predictions_per_seq
    if rule.continuation is None:
        positions = _choose_tokens(candidate, in_sequence, num_to_predict, predictions, rng)
        count = num_to_predict
    else:
        # whole words: a ## piece (or a segmented word's later character) joins the word before it
        # (unless that is [CLS] or [SEP])
        continues = rule.continuation[input_ids] if word_continues is None else word_continues
        word_start = candidate & ~(continues & _shift_right(candidate))
        chosen = _choose_whole_words(candidate, word_start, num_to_predict, rng)
        chosen_rows, chosen_columns = np.nonzero(chosen)  # ascending within each row
        count = np.bincount(chosen_rows, minlength=batch)
        positions = np.zeros((batch, predictions), dtype=np.int64)
        positions[chosen_rows, _slots(count)] = chosen_columns
    is_prediction = np.arange(predictions) < count[:, None]
    rows = np.broadcast_to(np.arange(batch)[:, None], positions.shape)
    labels = np.where(is_prediction, input_ids[rows, positions].astype(np.int64), IGNORE_INDEX)

    decision = rng.random((batch, predictions))
    random_words = rng.integers(0, rule.vocab_size, size=(batch, predictions))
    # 80% of the time, replace with [MASK]
    replacement = np.full_like(labels, rule.mask_id)
    # 10% of the time, keep original
    keep = (decision >= 0.8) & (decision < 0.9)
    replacement[keep] = labels[keep]
    # 10% of the time, replace with random word
    random_word = decision >= 0.9
    replacement[random_word] = random_words[random_word]
    masked = input_ids.copy()
    masked[rows[is_prediction], positions[is_prediction]] = replacement[is_prediction]
    return masked, positions, labels


def _shift_right(flags: np.ndarray) -> np.ndarray:
    shifted = np.zeros_like(flags)
    shifted[:, 1:] = flags[:, :-1]
    return shifted


def _slots(count: np.ndarray) -> np.ndarray:
    """For items grouped by row (`count` per row, in row order): each item's index in its row."""
    return np.arange(int(count.sum())) - np.repeat(np.cumsum(count) - count, count)


def _choose_tokens(
    candidate: np.ndarray,
    in_sequence: np.ndarray,
    num_to_predict: np.ndarray,
    predictions: int,
    rng: np.random.Generator,
) -> np.ndarray:
    """A uniformly random subset of `num_to_predict` candidates in each row, as positions
    ``[batch, predictions]``, ascending, then 0.

    Floyd's algorithm, vectorized over rows: at step t, with j = candidates - to_predict + t,
    draw r uniform in [0, j] and take candidate r, or candidate j if r is already taken. A row
    costs `num_to_predict` draws, not one per candidate.
    """
    batch, width = candidate.shape
    num_candidates = candidate.sum(axis=1)
    taken = np.zeros((batch, width), dtype=bool)  # by candidate index
    picks = np.full((batch, predictions), width, dtype=np.int64)  # candidate indexes; width: none
    # a uniform subset: what the original gets by shuffling the candidates, taking the first ones
    for step in range(int(num_to_predict.max(initial=0))):
        rows = np.flatnonzero(num_to_predict > step)
        last = num_candidates[rows] - num_to_predict[rows] + step
        drawn = (rng.random(len(rows)) * (last + 1)).astype(np.int64)
        drawn = np.where(taken[rows, drawn], last, drawn)
        taken[rows, drawn] = True
        picks[rows, step] = drawn
    # candidate index → position: step over the row's non-candidates ([CLS], [SEP]) up to it
    skipped_rows, skipped_columns = np.nonzero(in_sequence & ~candidate)
    skipped_count = np.bincount(skipped_rows, minlength=batch)
    skipped = np.full((batch, int(skipped_count.max(initial=0))), width, dtype=np.int64)
    skipped[skipped_rows, _slots(skipped_count)] = skipped_columns
    positions = picks.copy()
    for column in skipped.T:
        positions += column[:, None] <= positions
    positions[picks == width] = width
    positions.sort(axis=1)
    positions[positions == width] = 0
    return positions


def _choose_whole_words(
    candidate: np.ndarray,
    word_start: np.ndarray,
    num_to_predict: np.ndarray,
    rng: np.random.Generator,
) -> np.ndarray:
    """Whole words in a random order, as a ``[batch, width]`` mask of the chosen positions."""
    word_index = np.cumsum(word_start, axis=1) - 1
    chosen = np.zeros_like(candidate)
    for row in range(len(candidate)):
        words = word_index[row][candidate[row]]
        word_lengths = np.bincount(words).tolist()
        picked: list[int] = []
        covered = 0
        for word in np.argsort(rng.random(len(word_lengths)), kind="stable").tolist():
            if covered >= num_to_predict[row]:
                break
            # a word that would overshoot num_to_predict is skipped
            if covered + word_lengths[word] > num_to_predict[row]:
                continue
            picked.append(word)
            covered += word_lengths[word]
        chosen[row] = candidate[row] & np.isin(word_index[row], picked)
    return chosen


def mask_instances(
    instances: InstanceBatch,
    rule: MaskingRule,
    rng: np.random.Generator,
    word_continues: np.ndarray | None = None,
) -> None:
    """Static masking: substitute the masks into `instances` and record what was there
    (`word_continues`: a word segmenter's marks for every id of `instances`, or None)."""
    padded, lengths = pad_ragged(instances.input_ids, instances.input_offsets, 0)
    marks = None
    if word_continues is not None:
        marks = pad_ragged(word_continues, instances.input_offsets, False)[0]
    masked, positions, labels = mask_batch(padded, lengths, rule, rng, marks)
    is_prediction = labels != IGNORE_INDEX
    instances.input_ids = masked[np.arange(masked.shape[1]) < lengths[:, None]]
    instances.masked_lm_positions = positions[is_prediction].astype(np.int16)
    instances.masked_lm_ids = labels[is_prediction].astype(instances.input_ids.dtype)
    instances.masked_offsets = np.concatenate([[0], np.cumsum(is_prediction.sum(axis=1))])
