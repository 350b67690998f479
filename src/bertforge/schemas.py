"""The contracts at every stage boundary, as pandera schemas plus the Arrow schema written.

The writer validates each shard before it lands in the stage's staging directory; readers trust
what they read. A violation is a bug in the writer (or a corrupted input), reported in one line.
"""

from __future__ import annotations

import weakref
from typing import Any

import numpy as np
import pandas as pd
import pandera.pandas as pa
import pyarrow

from bertforge.errors import BertforgeError

# --- ingest → data/ingested/{train,heldout}/part-*.parquet ------------------------------------
# One row per cleaned, deduplicated document: `doc_id` is the first 16 hex digits of the sha256
# of the document's cleaned text (so it is also the dedup key and the held-out split key),
# `source` names the file or hub dataset it came from, `sentences` its sentences in order.

DOCUMENT_ARROW_SCHEMA = pyarrow.schema(
    [
        ("doc_id", pyarrow.string()),
        ("source", pyarrow.string()),
        ("sentences", pyarrow.list_(pyarrow.string())),
    ]
)


def _is_sentence_list(sentences: object) -> bool:
    return (
        sentences is not None
        and len(sentences) > 0
        and all(isinstance(s, str) and s != "" and s == s.strip() for s in sentences)
    )


DOCUMENTS = pa.DataFrameSchema(
    {
        "doc_id": pa.Column(str, pa.Check.str_matches(r"^[0-9a-f]{16}$"), unique=True),
        "source": pa.Column(str, pa.Check.str_length(min_value=1)),
        "sentences": pa.Column(
            object,
            pa.Check(
                _is_sentence_list,
                element_wise=True,
                error="sentences must be a non-empty list of non-empty, stripped strings",
            ),
        ),
    },
    strict=True,
    ordered=True,
)


def validate(schema: pa.DataFrameSchema, frame: pd.DataFrame, where: str) -> None:
    """Check `frame` against `schema`; a violation becomes a one-line `BertforgeError`."""
    try:
        schema.validate(frame, lazy=False)
    except (pa.errors.SchemaError, pa.errors.SchemaErrors) as error:
        first_line = str(error).strip().splitlines()[0]
        raise BertforgeError(f"{where}: output contract violated: {first_line}") from None


# --- examples → data/examples/{train,heldout}/part-*.parquet ----------------------------------
# One row per MLM/NSP instance, unpadded. `input_ids` is [CLS] A [SEP] B [SEP] (or [CLS] A [SEP]
# without NSP), masks already substituted with static masking; token_type_ids are
# `position >= segment_b_start` (= len(input_ids) without B). `masked_lm_positions` ascending,
# never on [CLS]/[SEP] (empty with dynamic masking); `masked_lm_ids` the original ids there.
# `next_sentence_label`: 0 actual next, 1 random next, -1 no NSP. Ids use the narrowest unsigned
# type of the vocabulary (uint16 up to 65536 tokens). data/examples/meta.json describes the rest.


def id_dtype_name(vocab_size: int) -> str:
    """The narrowest unsigned integer type that holds every id of the vocabulary."""
    return "uint16" if vocab_size <= 1 << 16 else "uint32"


def examples_arrow_schema(vocab_size: int) -> pyarrow.Schema:
    id_type = pyarrow.from_numpy_dtype(id_dtype_name(vocab_size))
    return pyarrow.schema(
        [
            ("input_ids", pyarrow.list_(id_type)),
            ("segment_b_start", pyarrow.int16()),
            ("masked_lm_positions", pyarrow.list_(pyarrow.int16())),
            ("masked_lm_ids", pyarrow.list_(id_type)),
            ("next_sentence_label", pyarrow.int8()),
        ]
    )


class _Ragged:
    """A column of arrays flattened once, so row rules are numpy expressions, not Python loops.

    The column holds either arrays (object dtype) or Arrow lists (`pd.ArrowDtype`, as
    `bertforge.shards.write_shard` hands them over with ``arrow_lists``: no copy per row).
    """

    def __init__(self, column: pd.Series) -> None:
        if isinstance(column.dtype, pd.ArrowDtype):
            lists = pyarrow.array(column.array)
            if isinstance(lists, pyarrow.ChunkedArray):
                lists = lists.combine_chunks()
            offsets = lists.offsets.to_numpy().astype(np.int64)
            self.lengths = np.diff(offsets)
            self.values = lists.flatten().to_numpy(zero_copy_only=False)
        else:
            arrays = column.to_list()
            self.lengths = np.fromiter(map(len, arrays), dtype=np.int64, count=len(arrays))
            self.values = np.concatenate(arrays) if arrays else np.zeros(0, np.int64)
        self.starts = np.cumsum(self.lengths) - self.lengths
        self.row = np.repeat(np.arange(len(self.lengths), dtype=np.int32), self.lengths)

    @staticmethod
    def of(frame: pd.DataFrame, name: str, cache: dict) -> _Ragged:
        """`frame[name]` flattened, once per frame for all the checks of one validation."""
        cached = cache.get("frame")
        if cached is None or cached() is not frame:
            cache.clear()
            cache["frame"] = weakref.ref(frame)
        if name not in cache:
            cache[name] = _Ragged(frame[name])
        return cache[name]

    def rows_where(self, bad: np.ndarray) -> np.ndarray:
        """Per row: does any of its elements have `bad` set?"""
        return np.bincount(self.row[bad], minlength=len(self.lengths)) > 0

    def at(self, position: np.ndarray) -> np.ndarray:
        """Element `position[i]` of row i (-1 where out of range)."""
        inside = (position >= 0) & (position < self.lengths) & (len(self.values) > 0)
        index = np.where(inside, self.starts + position, 0)
        found = self.values[index].astype(np.int64) if len(self.values) else np.zeros(len(index))
        return np.where(inside, found, -1)


def examples_schema(
    vocab_size: int,
    cls_id: int,
    sep_id: int,
    max_seq_length: int,
    max_predictions_per_seq: int,
    nsp: bool,
    masking: str,
    whole_word_mask: bool = False,
) -> pa.DataFrameSchema:
    """The contract of an examples shard for one vocabulary and one set of examples params.

    Static masking predicts at least one token per instance, except with whole-word masking,
    where every word may be longer than the number to predict (the original allows it too).
    """

    def rule(error: str) -> Any:
        def decorate(check: Any) -> pa.Check:
            return pa.Check(lambda frame: pd.Series(check(frame), index=frame.index),
                            name=check.__name__, error=error)  # fmt: skip

        return decorate

    flattened: dict = {}  # the last frame's flattened list columns, shared by the checks
    least = 1 if masking == "static" and not whole_word_mask else 0
    most = max_predictions_per_seq if masking == "static" else 0
    shortest = 5 if nsp else 3  # [CLS] A [SEP] B [SEP] / [CLS] A [SEP], segments non-empty

    @rule(f"input_ids must hold {shortest} to {max_seq_length} ids, each < {vocab_size}")
    def ids_in_vocab_and_length(frame: pd.DataFrame) -> np.ndarray:
        ids = _Ragged.of(frame, "input_ids", flattened)
        fits = (ids.lengths >= shortest) & (ids.lengths <= max_seq_length)
        return fits & ~ids.rows_where(ids.values >= vocab_size)

    @rule("input_ids must start with [CLS] and end with [SEP]")
    def cls_first_sep_last(frame: pd.DataFrame) -> np.ndarray:
        ids = _Ragged.of(frame, "input_ids", flattened)
        return (ids.at(np.zeros_like(ids.lengths)) == cls_id) & (ids.at(ids.lengths - 1) == sep_id)

    @rule(
        "segment_b_start must follow the [SEP] ending segment A"
        if nsp
        else "segment_b_start must equal len(input_ids) without NSP"
    )
    def segments_end_with_sep(frame: pd.DataFrame) -> np.ndarray:
        ids = _Ragged.of(frame, "input_ids", flattened)
        b_start = frame["segment_b_start"].to_numpy().astype(np.int64)
        if not nsp:
            return b_start == ids.lengths
        inside = (b_start >= 2) & (b_start <= ids.lengths - 2)
        return inside & (ids.at(b_start - 1) == sep_id)

    @rule(
        "masked_lm_positions must be ascending, unique, inside the sequence, off [CLS]/[SEP], "
        f"{least} to {most} of them, with one masked_lm_id each, < {vocab_size}, not [CLS]/[SEP]"
    )
    def masked_positions_valid(frame: pd.DataFrame) -> np.ndarray:
        ids = _Ragged.of(frame, "input_ids", flattened)
        positions = _Ragged.of(frame, "masked_lm_positions", flattened)
        masked_ids = _Ragged.of(frame, "masked_lm_ids", flattened)
        b_start = frame["segment_b_start"].to_numpy().astype(np.int64)
        lengths = ids.lengths[positions.row]
        special = (
            (positions.values <= 0)
            | (positions.values >= lengths - 1)
            | (positions.values == b_start[positions.row] - 1)
        )
        ascending = np.ones(len(positions.values), dtype=bool)
        ascending[1:] = positions.values[1:] > positions.values[:-1]
        ascending[positions.starts[positions.lengths > 0]] = True
        count_ok = (positions.lengths >= least) & (positions.lengths <= most)
        labels_ok = masked_ids.lengths == positions.lengths
        labels_ok &= ~masked_ids.rows_where(
            (masked_ids.values >= vocab_size)
            | (masked_ids.values == cls_id)
            | (masked_ids.values == sep_id)
        )
        return count_ok & labels_ok & ~positions.rows_where(special | ~ascending)

    labels = [0, 1] if nsp else [-1]
    return pa.DataFrameSchema(
        {
            # list columns: arrays (object) or Arrow lists; the row rules read both
            "input_ids": pa.Column(),
            "segment_b_start": pa.Column("int16"),
            "masked_lm_positions": pa.Column(),
            "masked_lm_ids": pa.Column(),
            "next_sentence_label": pa.Column("int8", pa.Check.isin(labels)),
        },
        checks=[
            ids_in_vocab_and_length,
            cls_first_sep_last,
            segments_end_with_sep,
            masked_positions_valid,
        ],
        strict=True,
        ordered=True,
        name="examples",
    )
