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


@dataclass(frozen=True)
class TargetScale:
    """How regression targets are standardised for training: ``(y - mean) / std``.

    Raw targets (STS-B's 0-5) against a head that starts near 0 make the first hundreds of
    steps fit the offset, not the texts; standardised targets start the head at the train
    mean with unit spread. `fold_into` puts the scale into the head's weights, so the model
    written to disk predicts raw targets and loads in transformers unchanged.
    """

    mean: float = 0.0
    std: float = 1.0

    @classmethod
    def of(cls, split: EncodedSplit, regression: bool) -> TargetScale:
        """The train split's mean and standard deviation (identity for classification)."""
        if not regression:
            return cls()
        std = float(np.std(split.targets.astype(np.float64)))
        # constant targets are refused when the task is loaded; this only guards the division
        return cls(float(np.mean(split.targets.astype(np.float64))), std if std > 0 else 1.0)

    def standardise(self, split: EncodedSplit) -> EncodedSplit:
        """The split with targets ``(y - mean) / std`` (class ids are left alone)."""
        if self == TargetScale():
            return split
        targets = ((split.targets - self.mean) / self.std).astype(np.float32)
        return EncodedSplit(split.input_ids, split.token_type_ids, targets)

    def restore(self, outputs: np.ndarray) -> np.ndarray:
        """Model outputs on the standardised scale back to raw targets."""
        return outputs * self.std + self.mean

    def fold_into(self, weight: torch.Tensor, bias: torch.Tensor) -> None:
        """Rescale a linear head in place so it outputs raw targets: W·std, b·std + mean."""
        with torch.no_grad():
            weight.mul_(self.std)
            bias.mul_(self.std).add_(self.mean)


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
