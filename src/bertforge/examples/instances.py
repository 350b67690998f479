"""The original's instance rules, run for every document of a work unit at once.

google-research/bert ``create_pretraining_data.py`` makes instances one document at a time:
`create_instances_from_document` accumulates sentences into chunks, cuts each chunk into
segments A and B (B a random next from another document half of the time: here another
document of the same work unit, which is the negative pool), and `truncate_seq_pair` shortens
the pair to fit. Here the same steps run as index arithmetic on a
unit's flat token array: a segment is a ``(start, end)`` span, truncation moves the span's ends,
and every step runs for all the documents of the unit at once. `assemble_instances` then writes
``[CLS] A [SEP] B [SEP]`` into ragged arrays (`InstanceBatch`), the stored form.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa

from bertforge.examples.params import ExamplesParams
from bertforge.tokenizer.sentences import concatenated_ranges


@dataclass(frozen=True)
class TokenizedUnit:
    """The documents of one work unit as a flat token array.

    Sentence ``s`` is ``token_ids[sentence_starts[s]:sentence_starts[s + 1]]``; document ``d``
    is sentences ``document_sentences[d][0]`` up to (not including) ``document_sentences[d][1]``.
    Consecutive sentences are contiguous, so any run of sentences is one ``(start, end)`` span.
    Sentences without tokens and documents without sentences are dropped, as the original does.
    """

    token_ids: np.ndarray
    sentence_starts: np.ndarray | list[int]
    document_sentences: np.ndarray | list[tuple[int, int]]
    word_continues: np.ndarray | None = None  # per token, with a word segmenter (segmentation.py)

    @property
    def num_documents(self) -> int:
        return len(self.document_sentences)


INSTANCE_COLUMNS = ("a_start", "a_end", "b_start", "b_end", "next_sentence_label", "document")
"""The columns of `create_instances_from_documents`' rows: segments as ``[start, end)`` spans of
the unit's token array (B empty without NSP), the label, and the document A comes from."""


def create_instances_from_documents(
    unit: TokenizedUnit, params: ExamplesParams, passes: int, rng: np.random.Generator
) -> np.ndarray:
    """The original's `create_instances_from_document` loop, `passes` times over every document
    of the unit, run for all of them at once: one row per instance (`INSTANCE_COLUMNS`).

    Each (pass, document) is a lane with its own target length and position. A step cuts the
    next chunk of every unfinished lane, so a unit takes as many numpy steps as its longest
    document has chunks, whatever the number of documents. Per lane the rules are the
    original's: sentences are accumulated into a chunk until it reaches the target length
    (drawn once per document: with probability `short_seq_prob` uniform in [2, max_num_tokens])
    or the document ends; A is the chunk's first `a_end` sentences, `a_end` uniform in
    [1, len(chunk) - 1]. With probability 0.5 — always for a one-sentence chunk — B is a random
    continuation from another document of the unit (label 1) and the chunk's unused sentences
    are put back; otherwise B is the rest of the chunk (label 0). Without NSP, A is as many
    whole sentences as fit the target (RoBERTa's DOC-SENTENCES).
    """
    starts = np.asarray(unit.sentence_starts, dtype=np.int64)
    bounds = np.asarray(unit.document_sentences, dtype=np.int64).reshape(-1, 2)
    document = np.tile(np.arange(len(bounds)), passes)  # dupe_factor passes over every document
    chunk_start = bounds[document, 0].copy()
    end = bounds[document, 1]
    max_num_tokens = params.max_num_tokens
    short, shorter = rng.random((2, len(document)))
    # short_seq_prob of the time, a shorter target length, uniform in [2, max_num_tokens]
    target = np.where(
        short < params.short_seq_prob, 2 + (shorter * (max_num_tokens - 1)).astype(np.int64),
        max_num_tokens,
    )  # fmt: skip
    step = _next_sentence_pairs if params.nsp else _next_full_sentences
    rows: list[np.ndarray] = []
    lanes = np.flatnonzero(chunk_start < end)
    while len(lanes):
        lane = _Lanes(document[lanes], chunk_start[lanes], end[lanes], target[lanes])
        spans, next_start = step(starts, bounds, lane, rng)
        a_start, a_end, b_start, b_end = truncate_seq_pair(*spans[:4], max_num_tokens, rng)
        rows.append(np.stack([a_start, a_end, b_start, b_end, spans[4], lane.document], axis=1))
        chunk_start[lanes] = next_start
        lanes = lanes[next_start < lane.end]
    return np.concatenate(rows) if rows else np.zeros((0, len(INSTANCE_COLUMNS)), np.int64)


@dataclass(frozen=True)
class _Lanes:
    """The unfinished (pass, document) lanes of a step: their document, the first sentence of
    their next chunk, their document's end sentence and their target length."""

    document: np.ndarray
    chunk_start: np.ndarray
    end: np.ndarray
    target: np.ndarray


Spans = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]
"""a_start, a_end, b_start, b_end (token coordinates), next_sentence_label."""


def _next_sentence_pairs(
    starts: np.ndarray, bounds: np.ndarray, lanes: _Lanes, rng: np.random.Generator
) -> tuple[Spans, np.ndarray]:
    """The next [CLS] A [SEP] B [SEP] chunk of every lane, and where each lane goes on."""
    chunk_start, target = lanes.chunk_start, lanes.target
    # the chunk ends at the first sentence that reaches the target, or at the document's end
    chunk_end = np.minimum(np.searchsorted(starts, starts[chunk_start] + target), lanes.end)
    chunk_sentences = chunk_end - chunk_start
    a_draw, next_draw, other_draw, start_draw = rng.random((4, len(chunk_start)))
    # A: the chunk's first a_end sentences, a_end uniform in [1, len(chunk) - 1]
    a_end = chunk_start + np.where(
        chunk_sentences == 1, 1, 1 + (a_draw * (chunk_sentences - 1)).astype(np.int64)
    )
    # Random next half the time, and always when the chunk has a single sentence
    random_next = (chunk_sentences == 1) | (next_draw < 0.5)
    a_start_token, a_end_token = starts[chunk_start], starts[a_end]
    # Random next: a random start sentence in a random *other* document of the unit, sentences
    # until B reaches target - len(A), at least one, no further than that document's end
    other = (other_draw * (len(bounds) - 1)).astype(np.int64)
    other += other >= lanes.document  # never the lane's own document
    other_first, other_end = bounds[other, 0], bounds[other, 1]
    random_start = other_first + (start_draw * (other_end - other_first)).astype(np.int64)
    target_b = target - (a_end_token - a_start_token)
    random_end = np.searchsorted(starts, starts[random_start] + target_b)
    random_end = np.minimum(np.maximum(random_end, random_start + 1), other_end)
    # Actual next: B is the rest of the chunk
    b_start = np.where(random_next, starts[random_start], a_end_token)
    b_end = np.where(random_next, starts[random_end], starts[chunk_end])
    # after a random next, the chunk's unused sentences are put back for the next chunk
    next_start = np.where(random_next, a_end, chunk_end)
    label = random_next.astype(np.int64)
    return (a_start_token, a_end_token, b_start, b_end, label), next_start


def _next_full_sentences(
    starts: np.ndarray, bounds: np.ndarray, lanes: _Lanes, rng: np.random.Generator
) -> tuple[Spans, np.ndarray]:
    """Without NSP: the next [CLS] A [SEP] of every lane, A as many whole sentences as fit the
    target (at least one: only a single sentence longer than the sequence is truncated)."""
    chunk_start = lanes.chunk_start
    # as many whole sentences as fit the target, at least one (RoBERTa's DOC-SENTENCES)
    chunk_end = np.searchsorted(starts, starts[chunk_start] + lanes.target, side="right") - 1
    chunk_end = np.minimum(np.maximum(chunk_end, chunk_start + 1), lanes.end)
    empty = np.zeros_like(chunk_start)
    label = np.full_like(chunk_start, -1)
    return (starts[chunk_start], starts[chunk_end], empty, empty, label), chunk_end


def truncate_seq_pair(
    a_start: np.ndarray,
    a_end: np.ndarray,
    b_start: np.ndarray,
    b_end: np.ndarray,
    max_num_tokens: int,
    rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Shorten each pair of spans A, B to `max_num_tokens` together, one token at a time from
    the longer one.

    B loses the token on ties, and each token goes from the front or the back with probability
    0.5. Removing tokens one by one this way amounts to: all from the longer segment until they
    are level, then alternately B, A, B, …; the number taken from the front is binomial.
    """
    length_a, length_b = a_end - a_start, b_end - b_start
    excess = np.maximum(length_a + length_b - max_num_tokens, 0)
    # truncate the longer segment (B on ties) until they are level, then alternately B, A, …
    gap = length_a - length_b
    level_excess = np.maximum(excess - np.abs(gap), 0)
    removed_a = np.where(
        gap >= excess, excess, np.where(-gap >= excess, 0, np.maximum(gap, 0) + level_excess // 2)
    )
    removed_b = excess - removed_a
    # truncate from the front or back at random, each token with probability 0.5
    front_a = rng.binomial(removed_a, 0.5)
    front_b = rng.binomial(removed_b, 0.5)
    return (
        a_start + front_a,
        a_end - (removed_a - front_a),
        b_start + front_b,
        b_end - (removed_b - front_b),
    )


@dataclass
class InstanceBatch:
    """Instances as flat arrays plus offsets (row ``i`` is ``values[offsets[i]:offsets[i+1]]``).

    This is the stored form: unpadded, ids in the narrowest unsigned type of the vocabulary.
    """

    input_ids: np.ndarray
    input_offsets: np.ndarray
    segment_b_start: np.ndarray
    masked_lm_positions: np.ndarray
    masked_lm_ids: np.ndarray
    masked_offsets: np.ndarray
    next_sentence_label: np.ndarray

    def __len__(self) -> int:
        return len(self.segment_b_start)

    def to_arrow(self, schema: pa.Schema) -> pa.Table:
        """The instances as a table of the examples contract's columns, built column-wise."""

        def ragged(values: np.ndarray, offsets: np.ndarray, name: str) -> pa.ListArray:
            value_type = schema.field(name).type.value_type
            return pa.ListArray.from_arrays(
                pa.array(offsets.astype(np.int32)), pa.array(values, type=value_type)
            )

        columns = {
            "input_ids": ragged(self.input_ids, self.input_offsets, "input_ids"),
            "segment_b_start": self.segment_b_start,
            "masked_lm_positions": ragged(
                self.masked_lm_positions, self.masked_offsets, "masked_lm_positions"
            ),
            "masked_lm_ids": ragged(self.masked_lm_ids, self.masked_offsets, "masked_lm_ids"),
            "next_sentence_label": self.next_sentence_label,
        }
        return pa.Table.from_arrays(
            [pa.array(columns[field.name], type=field.type) for field in schema], schema=schema
        )

    def rows(self) -> list[dict[str, Any]]:
        """One dict per instance, in the columns of the examples contract."""
        input_ids = _split(self.input_ids, self.input_offsets)
        positions = _split(self.masked_lm_positions, self.masked_offsets)
        masked_ids = _split(self.masked_lm_ids, self.masked_offsets)
        return [
            {
                "input_ids": row_ids,
                "segment_b_start": b_start,
                "masked_lm_positions": row_positions,
                "masked_lm_ids": row_masked_ids,
                "next_sentence_label": label,
            }
            for row_ids, b_start, row_positions, row_masked_ids, label in zip(
                input_ids,
                self.segment_b_start,
                positions,
                masked_ids,
                self.next_sentence_label,
                strict=True,
            )
        ]


def _split(values: np.ndarray, offsets: np.ndarray) -> list[np.ndarray]:
    bounds = offsets.tolist()
    return [values[start:end] for start, end in itertools.pairwise(bounds)]


def assemble_instances(
    token_ids: np.ndarray, spans: np.ndarray, cls_id: int, sep_id: int
) -> InstanceBatch:
    """Build ``[CLS] A [SEP] B [SEP]`` (or ``[CLS] A [SEP]`` without B) for every span row."""
    a_start, a_end, b_start, b_end, label = spans.T
    length_a, length_b = a_end - a_start, b_end - b_start
    has_b = length_b > 0
    lengths = 2 + length_a + np.where(has_b, length_b + 1, 0)
    offsets = np.concatenate([[0], np.cumsum(lengths)])
    input_ids = np.empty(int(offsets[-1]), dtype=token_ids.dtype)
    input_ids[offsets[:-1]] = cls_id
    input_ids[offsets[:-1] + 1 + length_a] = sep_id
    input_ids[offsets[1:] - 1] = sep_id
    input_ids[concatenated_ranges(offsets[:-1] + 1, length_a)] = token_ids[
        concatenated_ranges(a_start, length_a)
    ]
    input_ids[concatenated_ranges(offsets[:-1] + 2 + length_a, length_b)] = token_ids[
        concatenated_ranges(b_start, length_b)
    ]
    empty = np.zeros(0, dtype=np.int16)
    return InstanceBatch(
        input_ids=input_ids,
        input_offsets=offsets,
        segment_b_start=np.where(has_b, 2 + length_a, lengths).astype(np.int16),
        masked_lm_positions=empty,
        masked_lm_ids=np.zeros(0, dtype=token_ids.dtype),
        masked_offsets=np.zeros(len(lengths) + 1, dtype=np.int64),
        next_sentence_label=label.astype(np.int8),
    )


def pad_ragged(
    values: np.ndarray, offsets: np.ndarray, pad_value: int, width: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Rows of a ragged array as a ``[rows, width]`` matrix; returns it and the row lengths."""
    lengths = np.diff(offsets)
    width = int(lengths.max(initial=0)) if width is None else width
    padded = np.full((len(lengths), width), pad_value, dtype=values.dtype)
    padded[np.arange(width) < lengths[:, None]] = values
    return padded, lengths
