"""Examples to tensors: WordPiece encoding, dynamic padding and length-bucketed batches.

A split is encoded once, unpadded; each batch is padded only to its longest row, and an epoch's
batches group rows of similar length, so little compute goes to padding.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from tokenizers import Tokenizer

from bertforge.finetune.tasks import Example, TaskData


@dataclass(frozen=True)
class EncodedSplit:
    """Token ids and segment ids per example (unpadded), and targets (class ids or floats)."""

    input_ids: list[np.ndarray]
    token_type_ids: list[np.ndarray]
    targets: np.ndarray

    def __len__(self) -> int:
        return len(self.input_ids)


def encode_split(
    tokenizer: Tokenizer, task: TaskData, examples: Sequence[Example], max_seq_length: int
) -> EncodedSplit:
    """Tokenize a split: [CLS] A [SEP] (B [SEP]), longest-first truncation to `max_seq_length`."""
    tokenizer = Tokenizer.from_str(tokenizer.to_str())  # a copy: truncation is set on it
    tokenizer.encode_special_tokens = True  # not serialized: "[SEP]" in a text stays text
    tokenizer.no_padding()
    # truncate the longer text of a pair first, a token at a time, to max_seq_length
    tokenizer.enable_truncation(max_length=max_seq_length)
    inputs = [e.texts[0] if len(e.texts) == 1 else (e.texts[0], e.texts[1]) for e in examples]
    encodings = tokenizer.encode_batch(inputs)
    if task.kind == "regression":
        targets = np.array([e.label for e in examples], dtype=np.float32)
    else:
        index = {label: i for i, label in enumerate(task.labels)}
        targets = np.array([index[e.label] for e in examples], dtype=np.int64)
    return EncodedSplit(
        input_ids=[np.array(e.ids, dtype=np.int64) for e in encodings],
        token_type_ids=[np.array(e.type_ids, dtype=np.int64) for e in encodings],
        targets=targets,
    )


def pad_batch(split: EncodedSplit, rows: np.ndarray, pad_id: int) -> dict[str, torch.Tensor]:
    """The rows as a [B, T] batch padded to its longest row (T ≤ max_seq_length)."""
    length = max(len(split.input_ids[row]) for row in rows)
    input_ids = np.full((len(rows), length), pad_id, dtype=np.int64)
    token_type_ids = np.zeros((len(rows), length), dtype=np.int64)
    attention_mask = np.zeros((len(rows), length), dtype=bool)
    for position, row in enumerate(rows):
        size = len(split.input_ids[row])
        input_ids[position, :size] = split.input_ids[row]
        token_type_ids[position, :size] = split.token_type_ids[row]
        attention_mask[position, :size] = True
    return {
        "input_ids": torch.from_numpy(input_ids),
        "token_type_ids": torch.from_numpy(token_type_ids),
        "attention_mask": torch.from_numpy(attention_mask),
        "labels": torch.from_numpy(split.targets[rows]),
    }


def length_bucketed_batches(
    lengths: np.ndarray, batch_size: int, rng: np.random.Generator, window: int = 50
) -> list[np.ndarray]:
    """One epoch of shuffled batches of rows of similar length (little compute on padding).

    Rows are shuffled, cut into windows of `window` batches, sorted by length inside each
    window and cut into batches; then the batches are shuffled. Every row appears once.
    """
    permutation = rng.permutation(len(lengths))
    batches = []
    for start in range(0, len(permutation), batch_size * window):
        chunk = permutation[start : start + batch_size * window]
        chunk = chunk[np.argsort(lengths[chunk], kind="stable")]
        batches += [chunk[i : i + batch_size] for i in range(0, len(chunk), batch_size)]
    return [batches[index] for index in rng.permutation(len(batches))]
