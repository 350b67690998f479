"""The examples as the model sees them: which examples each rank reads at each step, and how a
micro-batch of stored instances becomes model inputs, padded or unpadded.

* **Order** — `BatchPlan`: a seeded permutation per epoch; inside a window of global batches
  examples are sorted by length and cut into groups of ``processes × micro_batch_size`` similar
  lengths, the groups are shuffled, and each rank takes its slice of each group. The batch of
  (step, rank) is a pure function of the step, so the data position in a checkpoint is just the
  step.
* **Collation** — `collate_instances` pads stored instances (only to the longest row) and derives
  attention mask, token types and labels; `Collator` takes a micro-batch's rows from the split in
  memory, and with ``masking: dynamic`` draws each example's masks (`Collator.mask`) from a
  generator keyed by (seed, epoch, example index), so a mask depends on neither its batch nor
  the number of processes. With ``unpad`` the collated rows lose their padding: the real tokens
  of the micro-batch concatenated, with an `Unpadded` layout (cumulative lengths) as the
  attention mask; masked positions and labels stay per row, so both layouts train on the same
  examples, masks and targets.
* **Prefetch** — `StepBatches`: a rank's micro-batches of a step; on CUDA the next step's are
  collated on a worker thread (into pinned memory, copied without blocking) while this one trains.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import torch

from bertforge.constants import IGNORE_INDEX
from bertforge.errors import BertforgeError
from bertforge.examples.instances import pad_ragged
from bertforge.examples.masking import MaskingRule, create_masked_lm_predictions
from bertforge.model import Unpadded
from bertforge.pretrain.rng import ORDER, WINDOW, stream
from bertforge.shards import shard_files
from bertforge.tokenizer.files import VOCAB_FILE


@dataclass
class ExampleSplit:
    """A split of data/examples in memory as Arrow columns (ids stay 2 or 4 bytes each)."""

    table: pa.Table
    lengths: np.ndarray

    @classmethod
    def load(cls, directory: Path) -> ExampleSplit:
        table = pa.concat_tables(pq.read_table(path) for path in shard_files(directory))
        table = table.combine_chunks()
        lengths = pc.list_value_length(table["input_ids"]).to_numpy(zero_copy_only=False)
        return cls(table, lengths.astype(np.int64))

    def __len__(self) -> int:
        return self.table.num_rows


class BatchPlan:
    """Which examples each rank trains on at each step: a pure function of the step.

    Epoch ``e`` is a permutation of the train examples drawn from ``(seed, e)``; its first
    ``steps_per_epoch × global_batch_size`` are used (the rest wait for another epoch's draw).
    With length bucketing, each window of `window` global batches is sorted by length and cut
    into groups of ``world_size × micro_batch_size`` examples of similar length; the groups of
    the window are shuffled (``(seed, e, window)``) and dealt out ``accumulation`` per step.
    Rank ``r`` takes slice ``r`` of each of its step's groups, so ranks never overlap, their
    micro-batches have similar lengths (nobody waits at the reduction), and a micro-batch is
    padded to little more than its longest row.
    """

    def __init__(
        self,
        lengths: np.ndarray,
        *,
        seed: int,
        world_size: int,
        micro_batch_size: int,
        accumulation: int,
        window: int,
    ) -> None:
        self.lengths = lengths
        self.seed = seed
        self.world_size = world_size
        self.micro_batch_size = micro_batch_size
        self.accumulation = accumulation
        self.global_batch_size = world_size * micro_batch_size * accumulation
        self.steps_per_epoch = len(lengths) // self.global_batch_size
        if self.steps_per_epoch == 0:
            raise BertforgeError(
                f"data/examples/train: {len(lengths)} examples, fewer than one global batch "
                f"({self.global_batch_size})"
            )
        self.window = window
        self._cached: tuple[tuple[int, int], np.ndarray] | None = None

    def position(self, step: int) -> dict[str, int]:
        """Where step `step` (0-based) reads: epoch and global batch within it."""
        epoch, batch = divmod(step, self.steps_per_epoch)
        return {
            "epoch": epoch,
            "batch_in_epoch": batch,
            "examples_seen": step * self.global_batch_size,
        }

    def micro_batches(self, step: int, rank: int) -> list[np.ndarray]:
        """The `accumulation` micro-batches (example indices) of `rank` at `step` (0-based)."""
        epoch, batch = divmod(step, self.steps_per_epoch)
        window = max(self.window, 1)
        window_index, batch_in_window = divmod(batch, window)
        groups = self._window_groups(epoch, window_index)
        per_step = groups[
            batch_in_window * self.accumulation : (batch_in_window + 1) * self.accumulation
        ]
        slice_ = slice(rank * self.micro_batch_size, (rank + 1) * self.micro_batch_size)
        return [group[slice_] for group in per_step]

    def epoch_of(self, step: int) -> int:
        return step // self.steps_per_epoch

    def _window_groups(self, epoch: int, window_index: int) -> np.ndarray:
        key = (epoch, window_index)
        if self._cached is not None and self._cached[0] == key:
            return self._cached[1]
        used = self.steps_per_epoch * self.global_batch_size
        order = stream(self.seed, ORDER, epoch).permutation(len(self.lengths))[:used]
        span = max(self.window, 1) * self.global_batch_size
        examples = order[window_index * span : (window_index + 1) * span]
        group_size = self.world_size * self.micro_batch_size
        if self.window > 0:
            examples = examples[np.argsort(-self.lengths[examples], kind="stable")]
            groups = examples.reshape(-1, group_size)
            groups = groups[stream(self.seed, WINDOW, epoch, window_index).permutation(len(groups))]
        else:
            groups = examples.reshape(-1, group_size)
        self._cached = (key, groups)
        return groups


# --- collation ---------------------------------------------------------------------------------


def collate_instances(
    batch: pa.RecordBatch | pa.Table,
    pad_id: int,
    max_predictions_per_seq: int,
    pad_to: int | None = None,
) -> dict[str, np.ndarray]:
    """Stored instances → padded int64 model inputs, as transformers' BERT names them.

    Returns ``input_ids``, ``attention_mask``, ``token_type_ids`` ``[batch, width]`` (width: the
    longest row, or `pad_to`), ``masked_lm_positions`` ``[batch, max_predictions_per_seq]``
    (padded with 0), ``masked_lm_labels`` (the original ids there, padded with `IGNORE_INDEX`),
    ``labels`` ``[batch, width]`` (the same as a full-sequence MLM target: `IGNORE_INDEX`
    except at masked positions) and ``next_sentence_label`` ``[batch]`` (`IGNORE_INDEX` without
    NSP). The masks are the stored ones (none with ``masking: dynamic``: see `Collator.mask`).
    """
    columns = {name: _combined(batch.column(name)) for name in batch.schema.names}
    input_ids, lengths = pad_ragged(
        columns["input_ids"].flatten().to_numpy(), _offsets(columns["input_ids"]), pad_id, pad_to
    )
    input_ids = input_ids.astype(np.int64)
    width = input_ids.shape[1]
    in_sequence = np.arange(width) < lengths[:, None]
    segment_b_start = columns["segment_b_start"].to_numpy().astype(np.int64)
    positions, _ = pad_ragged(
        columns["masked_lm_positions"].flatten().to_numpy().astype(np.int64),
        _offsets(columns["masked_lm_positions"]),
        0,
        max_predictions_per_seq,
    )
    masked_lm_labels, _ = pad_ragged(
        columns["masked_lm_ids"].flatten().to_numpy().astype(np.int64),
        _offsets(columns["masked_lm_ids"]),
        IGNORE_INDEX,
        max_predictions_per_seq,
    )
    labels = np.full(input_ids.shape, IGNORE_INDEX, dtype=np.int64)
    rows = np.broadcast_to(np.arange(len(labels))[:, None], positions.shape)
    has_label = masked_lm_labels != IGNORE_INDEX
    labels[rows[has_label], positions[has_label]] = masked_lm_labels[has_label]
    next_sentence_label = columns["next_sentence_label"].to_numpy().astype(np.int64)
    return {
        "input_ids": input_ids,
        "attention_mask": in_sequence.astype(np.int64),
        "token_type_ids": ((np.arange(width) >= segment_b_start[:, None]) & in_sequence).astype(
            np.int64
        ),
        "masked_lm_positions": positions,
        "masked_lm_labels": masked_lm_labels,
        "labels": labels,
        "next_sentence_label": np.where(next_sentence_label < 0, IGNORE_INDEX, next_sentence_label),
    }


def _combined(column: pa.Array | pa.ChunkedArray) -> pa.Array:
    return column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column


def _offsets(column: pa.ListArray) -> np.ndarray:
    offsets = column.offsets.to_numpy().astype(np.int64)
    return offsets - offsets[0]


MODEL_INPUTS = {
    "input_ids": "input_ids",
    "token_type_ids": "token_type_ids",
    "attention_mask": "attention_mask",
    "masked_lm_positions": "masked_lm_positions",
    "masked_lm_labels": "masked_lm_ids",
    "next_sentence_label": "next_sentence_label",
}
"""`collate_instances`' arrays → the argument names of `BertForPreTraining.forward`."""


Batch = dict[str, torch.Tensor | Unpadded]
"""A micro-batch as `BertForPreTraining.forward` takes it (an `Unpadded` as the unpadded mask)."""


@dataclass
class Collator:
    """Example indices → model inputs on the device: padded only to the longest row (rounded up
    to `pad_multiple`), or with `unpad` not padded at all.

    `dynamic_masking` is the rule of ``masking: dynamic`` (None: the stored, static masks);
    `mask_domain` keeps the train and held-out splits' masks apart; `attention` is the
    variable-length kernel of unpadded batches (bertforge.model's `VARLEN_KERNELS`).
    """

    split: ExampleSplit
    pad_id: int
    max_predictions_per_seq: int
    device: torch.device
    dynamic_masking: MaskingRule | None
    seed: int
    mask_domain: int
    pad_multiple: int = 1
    unpad: bool = False
    attention: str = "auto"

    def __call__(self, indices: np.ndarray, epoch: int = 0) -> Batch:
        rows = self.split.table.take(pa.array(indices))
        longest = int(self.split.lengths[indices].max())
        multiple = 1 if self.unpad else self.pad_multiple
        width = -(-longest // multiple) * multiple
        arrays = collate_instances(rows, self.pad_id, self.max_predictions_per_seq, pad_to=width)
        if self.dynamic_masking is not None:
            self.mask(arrays, indices, epoch)
        predictions = max(int((arrays["masked_lm_labels"] != IGNORE_INDEX).sum(axis=1).max()), 1)
        for key in ("masked_lm_positions", "masked_lm_labels"):  # the MLM head's rows: no padding
            arrays[key] = np.ascontiguousarray(arrays[key][:, :predictions])
        batch: Batch = {name: torch.from_numpy(arrays[key]) for key, name in MODEL_INPUTS.items()}
        if self.unpad:
            batch = unpadded(batch, self.attention)
        if self.device.type == "cuda":  # pinned pages, copied while the host goes on collating
            return {
                name: value.pin_memory().to(self.device, non_blocking=True)
                for name, value in batch.items()
            }
        return {name: value.to(self.device) for name, value in batch.items()}

    def mask(self, arrays: dict[str, np.ndarray], indices: np.ndarray, epoch: int) -> None:
        """Dynamic masking of collated `arrays` (rows: the examples `indices`), in place.

        ``labels``, which the model does not take, keeps the stored (no) masks.
        """
        arrays["masked_lm_positions"][:] = 0
        arrays["masked_lm_labels"][:] = IGNORE_INDEX
        for row, example in enumerate(indices.tolist()):
            length = int(self.split.lengths[example])
            # one generator per example, keyed by (seed, epoch, example index)
            rng = stream(self.seed, self.mask_domain, epoch, example)
            masked, positions, labels = create_masked_lm_predictions(
                arrays["input_ids"][row, :length], self.dynamic_masking, rng
            )
            arrays["input_ids"][row, :length] = masked
            arrays["masked_lm_positions"][row, : len(positions)] = positions
            arrays["masked_lm_labels"][row, : len(labels)] = labels


def unpadded(batch: Batch, attention: str) -> Batch:
    """A padded micro-batch's real tokens only: `input_ids` and `token_type_ids` [N], the rows'
    tokens one after another, and an `Unpadded` (cumulative lengths, positions) as
    `attention_mask`. Masked positions stay row-local [B, P], the labels as they were."""
    real = batch["attention_mask"].bool()
    lengths = real.sum(1)
    return {
        **batch,
        "input_ids": batch["input_ids"][real],
        "token_type_ids": batch["token_type_ids"][real],
        "attention_mask": Unpadded.from_lengths(lengths, attention),
    }


def real_tokens(batch: Batch) -> torch.Tensor:
    """A micro-batch's real (non-padding) tokens: a 0-dim tensor on the batch's device."""
    layout = batch["attention_mask"]
    if isinstance(layout, Unpadded):
        return layout.cu_seqlens[-1]
    return layout.sum()


def attention_width(batch: Batch) -> int:
    """The keys a row's tokens attend over as attention runs: padded width, or longest row."""
    layout = batch["attention_mask"]
    return layout.max_seqlen if isinstance(layout, Unpadded) else batch["input_ids"].shape[1]


def masking_rule(meta: Mapping[str, Any], tokenizer_dir: Path) -> MaskingRule:
    """The dynamic masking rule of data/examples/meta.json, for the vocabulary of vocab.txt."""
    lines = (Path(tokenizer_dir) / VOCAB_FILE).read_text(encoding="utf-8").splitlines()
    return MaskingRule.from_meta(meta, {token: index for index, token in enumerate(lines)})


class StepBatches:
    """A rank's micro-batches of each step, from `plan` through `collate`.

    With `ahead` (CUDA), taking step s starts collating step s + 1 (up to `end`) on one worker
    thread, so the host prepares the next batches while the device trains; a batch is the same
    pure function of (step, rank) either way, so the result does not depend on `ahead`.
    """

    def __init__(
        self,
        plan: BatchPlan,
        collate: Callable[[np.ndarray, int], Batch],
        rank: int,
        end: int,
        ahead: bool,
    ) -> None:
        self.plan, self.collate, self.rank, self.end = plan, collate, rank, end
        self.worker = ThreadPoolExecutor(1, "prefetch") if ahead else None
        self.pending: tuple[int, Future] | None = None

    def batches(self, step: int) -> list[Batch]:
        epoch = self.plan.epoch_of(step)
        return [
            self.collate(indices, epoch) for indices in self.plan.micro_batches(step, self.rank)
        ]

    def take(self, step: int) -> list[Batch]:
        if self.worker is None:
            return self.batches(step)
        pending, self.pending = self.pending, None
        ready = pending is not None and pending[0] == step
        batches = pending[1].result() if ready else self.batches(step)
        if step + 1 < self.end:  # the next step's, while this one trains
            self.pending = (step + 1, self.worker.submit(self.batches, step + 1))
        return batches
