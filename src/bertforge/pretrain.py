"""BERT pretraining with DeepSpeed ZeRO: params, data order, the training loop, checkpoints, export.

The stage is a function of data/examples, data/tokenizer and the ``pretrain`` params. Read top
to bottom:

* **Params** — `PretrainParams` (with `ModelParams`, the BERT shape) and the checks that need
  the machine: the batch arithmetic (global = micro × accumulation × processes) and what a CPU
  cannot do (bf16/fp16, LAMB).
* **Inputs** — `check_inputs` refuses, in one line and before any worker starts, examples made
  with another tokenizer, token ids outside the vocabulary, sequences longer than the position
  table, too few examples, and a checkpoint directory that holds an unfinished run of other
  params.
* **Data order** — `BatchPlan`: a seeded permutation per epoch; inside a window of global
  batches examples are sorted by length and cut into groups of ``processes × micro_batch_size``
  similar lengths, the groups are shuffled, and each rank takes its slice of each group. The
  batch of (step, rank) is a pure function of the step, so the data position in a checkpoint is
  just the step. Batches are padded only to their longest row. Dynamic masks are drawn per
  example from a generator keyed by (seed, epoch, example index).
* **Engine** — `deepspeed.initialize` from a config dict built from the params, with torch's
  AdamW (fused on GPU) or DeepSpeed's FusedLamb (GPU) as the optimizer; the learning rate is
  set by `learning_rate` before every optimizer step.
* **A step** — `train_step`: forward/backward over the accumulation micro-batches; one
  all-reduce of the step's sums decides, on every rank alike, whether a loss was not finite, in
  which case the optimizer step is cancelled (`skippable`) and counted;
  `max_nonfinite_in_a_row` such steps stop the run.
* **Checkpoints** — `CheckpointStore`: DeepSpeed's model/optimizer files plus our
  ``trainer_state.json`` (step, data position, counters, the training fingerprint) and each
  rank's RNG states, in ``step-<n>/``; the ``latest`` marker is replaced (atomically) only once
  every rank has finished writing, so a kill at any moment leaves a loadable checkpoint.
  Resuming restores all of it, and the weights come out bitwise identical to an uninterrupted
  run (on CPU).
* **Evaluation and export** — held-out MLM/NSP loss and accuracy next to the unigram baseline;
  the float32 master weights gathered from every ZeRO stage (also ZeRO-3 shards) and written
  in transformers' layout with the tokenizer files, atomically.
* **Launching** — `launch_local_processes` starts the ranks of a one-machine job (torchrun's
  environment contract, so torchrun or DeepSpeed's launcher drive multi-node jobs unchanged).

See docs/pretrain.md for the semantics in prose and measured numbers.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import torch
from tqdm import tqdm

from bertforge.errors import BertforgeError
from bertforge.examples import (
    MaskingRule,
    collate_instances,
    create_masked_lm_predictions,
    read_meta,
)
from bertforge.io import atomic_directory, replace_path, write_json_atomic
from bertforge.model import (
    IGNORE_INDEX,
    BertConfig,
    BertForPreTraining,
    count_parameters,
    flops_per_token,
    save_pretrained,
)
from bertforge.params import flatten, require
from bertforge.shards import shard_files

SPLITS = ("train", "heldout")
ZERO_STAGES = (0, 1, 2, 3)

# Domains of the seeded generators: every random draw is keyed by (seed, domain, ...).
ORDER, WINDOW, MASK, HELDOUT_MASK, DROPOUT, GLOBAL = range(6)


# --- params ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ModelParams:
    """``pretrain.model``: the BERT shape; names and meanings are transformers' `BertConfig`.

    The vocabulary size and [PAD] id are not knobs: they are the tokenizer's (data/examples
    records them), so the export always matches its vocab.txt.
    """

    hidden_size: int = 128
    num_hidden_layers: int = 4
    num_attention_heads: int = 4
    intermediate_size: int = 512
    hidden_dropout_prob: float = 0.0
    attention_probs_dropout_prob: float = 0.0
    max_position_embeddings: int = 512
    type_vocab_size: int = 2
    layer_norm_eps: float = 1e-12
    initializer_range: float = 0.02
    pre_layer_norm: bool = False

    def __post_init__(self) -> None:
        self.bert_config(vocab_size=1, pad_token_id=0)  # BertConfig's own range checks

    def bert_config(self, vocab_size: int, pad_token_id: int) -> BertConfig:
        return BertConfig(
            vocab_size=vocab_size, pad_token_id=pad_token_id, **dataclasses.asdict(self)
        )


@dataclass(frozen=True)
class PretrainParams:
    """The ``pretrain`` section of params.yaml (docs/pretrain.md explains each knob)."""

    model: ModelParams = field(default_factory=ModelParams)
    processes: int | None = 2
    zero_stage: int = 2
    micro_batch_size: int = 16
    gradient_accumulation_steps: int | None = None
    global_batch_size: int = 32
    optimizer: Literal["adamw", "lamb"] = "adamw"
    lr: float = 1e-3
    betas: tuple[float, ...] = (0.9, 0.999)
    weight_decay: float = 0.01
    eps: float = 1e-6
    warmup_steps: int = 100
    decay: Literal["linear", "polynomial"] = "linear"
    decay_power: float = 1.0
    gradient_clipping: float = 1.0
    precision: Literal["fp32", "bf16", "fp16"] = "fp32"
    max_steps: int = 1400
    seed: int = 0
    length_bucket_batches: int = 50
    checkpoint_every: int = 200
    keep_checkpoints: int = 2
    eval_every: int = 0
    eval_batch_size: int = 128
    max_nonfinite_in_a_row: int = 5
    compile: bool = False
    log_every: int = 10

    def __post_init__(self) -> None:
        for name in POSITIVE_INTEGERS:
            require(getattr(self, name) >= 1, name, "must be at least 1", getattr(self, name))
        for name, meaning_of_zero in ZERO_ALLOWED.items():
            value = getattr(self, name)
            require(value >= 0, name, f"must be at least 0 (0: {meaning_of_zero})", value)
        for name in ("processes", "gradient_accumulation_steps"):
            value = getattr(self, name)
            require(value is None or value >= 1, name, "must be null or at least 1", value)
        for name in ("lr", "eps", "decay_power"):
            require(getattr(self, name) > 0, name, "must be positive", getattr(self, name))
        require(
            self.zero_stage in ZERO_STAGES,
            "zero_stage",
            "must be one of 0, 1, 2, 3 (DeepSpeed ZeRO stages)",
            self.zero_stage,
        )
        require(
            len(self.betas) == 2 and all(0 <= beta < 1 for beta in self.betas),
            "betas",
            "must be two numbers in [0, 1)",
            list(self.betas),
        )


POSITIVE_INTEGERS = (
    "micro_batch_size",
    "global_batch_size",
    "max_steps",
    "checkpoint_every",
    "keep_checkpoints",
    "eval_batch_size",
    "max_nonfinite_in_a_row",
    "log_every",
)
ZERO_ALLOWED = {
    "weight_decay": "none",
    "warmup_steps": "none",
    "gradient_clipping": "off",
    "length_bucket_batches": "no length bucketing",
    "eval_every": "at the end only",
}

RUNTIME_ONLY_PARAMS = frozenset(
    {
        "processes",  # the world size itself is part of the fingerprint
        "checkpoint_every",
        "keep_checkpoints",
        "eval_every",
        "eval_batch_size",
        "max_nonfinite_in_a_row",
        "log_every",
    }
)
"""Params that do not change the trained weights; changing them never invalidates a checkpoint."""


def default_processes(params: PretrainParams) -> int:
    """How many ranks a job started by the stage itself runs: `processes`, or every GPU."""
    if params.processes is not None:
        return params.processes
    return max(1, torch.cuda.device_count()) if torch.cuda.is_available() else 1


def accumulation_steps(params: PretrainParams, world_size: int) -> int:
    """Micro-batches per rank per optimizer step, so that micro × accumulation × ranks = global."""
    per_pass = params.micro_batch_size * world_size
    if params.global_batch_size % per_pass != 0:
        raise BertforgeError(
            f"params.yaml: pretrain.global_batch_size must be a multiple of micro_batch_size × "
            f"processes = {params.micro_batch_size} × {world_size} = {per_pass}, "
            f"got {params.global_batch_size}"
        )
    derived = params.global_batch_size // per_pass
    given = params.gradient_accumulation_steps
    if given is not None and given != derived:
        raise BertforgeError(
            f"params.yaml: pretrain.global_batch_size must equal micro_batch_size × "
            f"gradient_accumulation_steps × processes = {params.micro_batch_size} × {given} × "
            f"{world_size} = {per_pass * given}, got {params.global_batch_size} "
            "(or set gradient_accumulation_steps: null to derive it)"
        )
    return derived


def check_device_support(params: PretrainParams, device_type: str) -> None:
    """bf16/fp16 mixed precision and LAMB are GPU features here; say so before starting."""
    if device_type == "cuda":
        return
    if params.precision != "fp32":
        raise BertforgeError(
            f"params.yaml: pretrain.precision {params.precision} needs a GPU; "
            "use fp32 on CPU, got " + repr(params.precision)
        )
    if params.optimizer == "lamb":
        raise BertforgeError(
            "params.yaml: pretrain.optimizer lamb needs a GPU (DeepSpeed's FusedLamb); "
            "use adamw on CPU, got 'lamb'"
        )


def learning_rate(params: PretrainParams, step: int) -> float:
    """The learning rate of optimizer step `step` (1-based, up to `max_steps`).

    Linear warmup from lr/warmup_steps to lr over `warmup_steps`, then decay to lr/(steps left)
    at the last step: linear, or polynomial with `decay_power`. No step has a zero rate.
    """
    if step <= params.warmup_steps:
        return params.lr * step / params.warmup_steps
    decay_steps = params.max_steps - params.warmup_steps
    remaining = (params.max_steps - step + 1) / decay_steps
    power = params.decay_power if params.decay == "polynomial" else 1.0
    return params.lr * remaining**power


# --- inputs ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PretrainPaths:
    """Where the stage reads and writes (relative to the repo root)."""

    examples: Path = Path("data/examples")
    tokenizer: Path = Path("data/tokenizer")
    checkpoints: Path = Path("data/pretrained/checkpoints")
    export: Path = Path("data/pretrained/model")
    train_log: Path = Path("metrics/pretrain_log.tsv")


@dataclass(frozen=True)
class PretrainInputs:
    """The checked inputs and the job's shape: what every rank needs before it starts."""

    meta: dict[str, Any]
    config: BertConfig
    world_size: int
    accumulation: int
    rows: dict[str, int]
    vocab_digest: str
    examples_digest: str
    fingerprint: dict[str, Any]

    @property
    def special_ids(self) -> dict[str, int]:
        return self.meta["special_token_ids"]


def examples_digest(examples: Path) -> str:
    """Identity of data/examples without reading the shards: meta.json plus shard names/sizes."""
    digest = hashlib.sha256((Path(examples) / "meta.json").read_bytes())
    for split in SPLITS:
        for path in shard_files(Path(examples) / split):
            digest.update(f"{split}/{path.name}:{path.stat().st_size}\n".encode())
    return digest.hexdigest()[:16]


def training_fingerprint(
    params: PretrainParams, world_size: int, vocab_digest: str, data_digest: str
) -> dict[str, Any]:
    """Everything that changes the trained weights: a checkpoint is only resumable under it."""
    trained = {
        f"pretrain.{key}": value
        for key, value in flatten(params).items()
        if key.split(".")[0] not in RUNTIME_ONLY_PARAMS
    }
    trained = {
        key: list(value) if isinstance(value, tuple) else value for key, value in trained.items()
    }
    return trained | {
        "world_size": world_size,
        "vocab_digest": vocab_digest,
        "examples_digest": data_digest,
    }


def check_inputs(
    params: PretrainParams,
    paths: PretrainPaths,
    world_size: int,
    device_type: str | None = None,
) -> PretrainInputs:
    """Check everything that would make the stage fail later, in one line, before it starts."""
    from bertforge.vocab import vocab_digest

    device_type = device_type or ("cuda" if torch.cuda.is_available() else "cpu")
    check_device_support(params, device_type)
    accumulation = accumulation_steps(params, world_size)
    meta = read_meta(paths.examples)
    vocab_file = paths.tokenizer / "vocab.txt"
    if not vocab_file.is_file():
        raise BertforgeError(f"{vocab_file}: not found (run the vocab stage first)")
    tokenizer_digest = vocab_digest(paths.tokenizer)
    if tokenizer_digest != meta["vocab_digest"]:
        raise BertforgeError(
            f"{vocab_file} does not match {paths.examples / 'meta.json'} (vocab_digest "
            f"{tokenizer_digest[:12]}… vs {meta['vocab_digest'][:12]}…): the examples were made "
            "with another tokenizer; re-run the examples stage"
        )
    config = params.model.bert_config(meta["vocab_size"], meta["special_token_ids"]["[PAD]"])
    if meta["max_seq_length"] > config.max_position_embeddings:
        raise BertforgeError(
            f"params.yaml: pretrain.model.max_position_embeddings must be at least the examples' "
            f"max_seq_length ({meta['max_seq_length']}), got {config.max_position_embeddings}"
        )
    rows = {
        split: check_example_ids(
            paths.examples / split, config.vocab_size, config.max_position_embeddings
        )
        for split in SPLITS
    }
    if rows["train"] < params.global_batch_size:
        raise BertforgeError(
            f"{paths.examples / 'train'}: {rows['train']} examples, fewer than "
            f"pretrain.global_batch_size ({params.global_batch_size})"
        )
    if rows["heldout"] == 0:
        raise BertforgeError(f"{paths.examples / 'heldout'}: no examples to evaluate on")
    data_digest = examples_digest(paths.examples)
    fingerprint = training_fingerprint(params, world_size, tokenizer_digest, data_digest)
    CheckpointStore(paths.checkpoints).resumable_tag(fingerprint)
    return PretrainInputs(
        meta=meta,
        config=config,
        world_size=world_size,
        accumulation=accumulation,
        rows=rows,
        vocab_digest=tokenizer_digest,
        examples_digest=data_digest,
        fingerprint=fingerprint,
    )


def check_example_ids(split_dir: Path, vocab_size: int, max_length: int) -> int:
    """Count a split's rows; an id outside the vocabulary or an overlong row names its place."""
    files = shard_files(split_dir)
    if not files:
        raise BertforgeError(f"{split_dir}: no part-*.parquet shards (run the examples stage)")
    rows = 0
    for path in files:
        table = pq.read_table(path, columns=["input_ids", "masked_lm_ids"])
        lengths = pc.list_value_length(table["input_ids"]).to_numpy(zero_copy_only=False)
        for row in np.flatnonzero(lengths > max_length)[:1]:
            raise BertforgeError(
                f"{path}: row {row} has {lengths[row]} tokens, more than the model's "
                f"max_position_embeddings ({max_length})"
            )
        for column in ("input_ids", "masked_lm_ids"):
            values = pc.list_flatten(table[column])
            if len(values) and pc.max(values).as_py() >= vocab_size:
                parents = pc.list_parent_indices(table[column]).to_numpy()
                flat = values.to_numpy()
                offending = int(np.flatnonzero(flat >= vocab_size)[0])
                raise BertforgeError(
                    f"{path}: row {parents[offending]} has token id {flat[offending]} in "
                    f"{column}, outside the model's vocabulary (vocab_size {vocab_size}); "
                    "the examples and data/tokenizer do not belong together"
                )
        rows += table.num_rows
    return rows


# --- data order --------------------------------------------------------------------------------


def stream(seed: int, *key: int) -> np.random.Generator:
    """The seeded generator of one purpose (a domain and its indices): no global state."""
    return np.random.default_rng([seed, *key])


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


MODEL_INPUTS = {
    "input_ids": "input_ids",
    "token_type_ids": "token_type_ids",
    "attention_mask": "attention_mask",
    "masked_lm_positions": "masked_lm_positions",
    "masked_lm_labels": "masked_lm_ids",
    "next_sentence_label": "next_sentence_label",
}
"""`collate_instances`' arrays → the argument names of `BertForPreTraining.forward`."""


@dataclass
class Collator:
    """Example indices → padded model inputs on the device (padding only to the longest row)."""

    split: ExampleSplit
    pad_id: int
    max_predictions_per_seq: int
    device: torch.device
    dynamic_masking: MaskingRule | None
    seed: int
    mask_domain: int
    pad_multiple: int = 1

    def __call__(self, indices: np.ndarray, epoch: int = 0) -> dict[str, torch.Tensor]:
        rows = self.split.table.take(pa.array(indices))
        longest = int(self.split.lengths[indices].max())
        width = -(-longest // self.pad_multiple) * self.pad_multiple
        arrays = collate_instances(rows, self.pad_id, self.max_predictions_per_seq, pad_to=width)
        if self.dynamic_masking is not None:
            self._mask(arrays, indices, epoch)
        predictions = max(int((arrays["masked_lm_labels"] != IGNORE_INDEX).sum(axis=1).max()), 1)
        for key in ("masked_lm_positions", "masked_lm_labels"):  # the MLM head's rows: no padding
            arrays[key] = np.ascontiguousarray(arrays[key][:, :predictions])
        return {
            name: torch.from_numpy(arrays[key]).to(self.device)
            for key, name in MODEL_INPUTS.items()
        }

    def _mask(self, arrays: dict[str, np.ndarray], indices: np.ndarray, epoch: int) -> None:
        """Dynamic masking: one generator per example, keyed by (seed, epoch, example index),
        so an example's mask depends on neither its batch nor the number of processes."""
        arrays["masked_lm_positions"][:] = 0
        arrays["masked_lm_labels"][:] = IGNORE_INDEX
        for row, example in enumerate(indices.tolist()):
            length = int(self.split.lengths[example])
            rng = stream(self.seed, self.mask_domain, epoch, example)
            masked, positions, labels = create_masked_lm_predictions(
                arrays["input_ids"][row, :length], self.dynamic_masking, rng
            )
            arrays["input_ids"][row, :length] = masked
            arrays["masked_lm_positions"][row, : len(positions)] = positions
            arrays["masked_lm_labels"][row, : len(labels)] = labels


def eval_batches(
    lengths: np.ndarray, batch_size: int, rank: int, world_size: int
) -> list[tuple[np.ndarray, bool]]:
    """Held-out batches of `rank` as (indices, counted): sorted by length, dealt round-robin.

    Every rank must run the same number of forward passes (ZeRO-3 gathers weights in them), so
    a rank short of a batch repeats the first one with counted=False and discards the result.
    """
    order = np.argsort(-lengths, kind="stable")
    batches = [order[start : start + batch_size] for start in range(0, len(order), batch_size)]
    per_rank = -(-len(batches) // world_size)
    mine = [(batch, True) for batch in batches[rank::world_size]]
    return mine + [(batches[0], False)] * (per_rank - len(mine))


# --- unigram baseline --------------------------------------------------------------------------


def unigram_counts(split: ExampleSplit, meta: Mapping[str, Any]) -> np.ndarray:
    """How often each id is a masked-LM target in the train split (what a unigram model knows).

    Static masking: the stored `masked_lm_ids`. Dynamic masking: every maskable token, since
    the masks are drawn uniformly over them.
    """
    vocab_size = meta["vocab_size"]
    if meta["masking"] == "static":
        values = pc.list_flatten(split.table["masked_lm_ids"]).to_numpy()
    else:
        values = pc.list_flatten(split.table["input_ids"]).to_numpy()
        special = meta["special_token_ids"]
        values = values[~np.isin(values, [special["[CLS]"], special["[SEP]"], special["[PAD]"]])]
    return np.bincount(values.astype(np.int64), minlength=vocab_size)


# --- the engine --------------------------------------------------------------------------------


def skippable(optimizer_cls: type[torch.optim.Optimizer]) -> type[torch.optim.Optimizer]:
    """`optimizer_cls` whose next `step` can be cancelled: how a non-finite loss skips an update.

    DeepSpeed drives the optimizer (on ZeRO's flat partitions); setting `skip_next_step` before
    the boundary `engine.step()` makes that step a no-op for weights and optimizer state on every
    ZeRO stage and precision alike, while DeepSpeed still clears the gradients.
    """

    class SkippableOptimizer(optimizer_cls):  # type: ignore[valid-type, misc]
        skip_next_step = False

        def step(self, closure: Callable[[], float] | None = None) -> Any:
            if self.skip_next_step:
                return None
            return super().step(closure)

    SkippableOptimizer.__name__ = f"Skippable{optimizer_cls.__name__}"
    return SkippableOptimizer


def parameter_groups(model: torch.nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """BERT's two groups: weight decay on matrices, none on biases and LayerNorm weights."""
    decayed = [p for p in model.parameters() if p.ndim >= 2]
    plain = [p for p in model.parameters() if p.ndim < 2]
    return [
        {"params": decayed, "weight_decay": weight_decay},
        {"params": plain, "weight_decay": 0.0},
    ]


def make_optimizer(
    model: torch.nn.Module, params: PretrainParams, device_type: str
) -> torch.optim.Optimizer:
    groups = parameter_groups(model, params.weight_decay)
    betas = (params.betas[0], params.betas[1])
    if params.optimizer == "lamb":
        from deepspeed.ops.lamb import FusedLamb

        return skippable(FusedLamb)(groups, lr=params.lr, betas=betas, eps=params.eps)
    fused = {"fused": True} if device_type == "cuda" else {}
    return skippable(torch.optim.AdamW)(groups, lr=params.lr, betas=betas, eps=params.eps, **fused)


def deepspeed_config(params: PretrainParams, accumulation: int) -> dict[str, Any]:
    """The DeepSpeed config of these params (the optimizer and the schedule are ours)."""
    return {
        "train_batch_size": params.global_batch_size,
        "train_micro_batch_size_per_gpu": params.micro_batch_size,
        "gradient_accumulation_steps": accumulation,
        "gradient_clipping": params.gradient_clipping,
        "zero_optimization": {"stage": params.zero_stage},
        "zero_allow_untested_optimizer": True,
        "zero_force_ds_cpu_optimizer": False,
        "bf16": {"enabled": params.precision == "bf16"},
        "fp16": {"enabled": params.precision == "fp16", "loss_scale": 0, "initial_scale_power": 16},
        "steps_per_print": 2**31 - 1,
        "wall_clock_breakdown": False,
    }


@dataclass(frozen=True)
class Topology:
    """This process's place in the job."""

    rank: int
    local_rank: int
    world_size: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def start_distributed() -> Topology:
    """Join the job (gloo on CPU, nccl on GPU); a lone process is a job of one."""
    cuda = torch.cuda.is_available()
    if not cuda:
        os.environ.setdefault("DS_ACCELERATOR", "cpu")
    for name, value in (
        ("RANK", "0"),
        ("LOCAL_RANK", "0"),
        ("WORLD_SIZE", "1"),
        ("MASTER_ADDR", "127.0.0.1"),
    ):
        os.environ.setdefault(name, value)
    os.environ.setdefault("MASTER_PORT", str(free_port()))
    import deepspeed
    from deepspeed.utils import logger as deepspeed_logger

    deepspeed_logger.setLevel("ERROR")  # its progress chatter; our own bar says enough
    warnings.filterwarnings("ignore", category=FutureWarning, module="torch.distributed")
    local_rank = int(os.environ["LOCAL_RANK"])
    if cuda:
        torch.cuda.set_device(local_rank)
    deepspeed.init_distributed(dist_backend="nccl" if cuda else "gloo", verbose=False)
    device = torch.device("cuda", local_rank) if cuda else torch.device("cpu")
    return Topology(
        rank=torch.distributed.get_rank(),
        local_rank=local_rank,
        world_size=torch.distributed.get_world_size(),
        device=device,
    )


def build_engine(
    model: BertForPreTraining, params: PretrainParams, inputs: PretrainInputs, topology: Topology
) -> tuple[Any, torch.optim.Optimizer]:
    """The DeepSpeed engine and the optimizer it drives (kept to set rates and cancel steps)."""
    import deepspeed

    optimizer = make_optimizer(model, params, topology.device.type)
    config = deepspeed_config(params, inputs.accumulation)
    engine, _, _, _ = deepspeed.initialize(model=model, optimizer=optimizer, config=config)
    if params.compile:
        engine.compile(compile_kwargs={"dynamic": True})
    return engine, optimizer


def seed_generators(seed: int, rank: int) -> None:
    """Seed the global generators libraries may draw from, and dropout's (differs per rank).

    Our own draws never use them (see `stream`); they are seeded and checkpointed so that
    nothing else can make two runs differ either.
    """
    random.seed(int(stream(seed, GLOBAL, rank).integers(2**63)))
    np.random.seed(int(stream(seed, GLOBAL, rank).integers(2**32)))
    torch.manual_seed(int(stream(seed, DROPOUT, rank).integers(2**63)))


def rng_states() -> dict[str, Any]:
    states = {
        "python": random.getstate(),
        "numpy": np.random.get_state(),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def restore_rng_states(states: Mapping[str, Any]) -> None:
    random.setstate(states["python"])
    np.random.set_state(states["numpy"])
    torch.set_rng_state(states["torch"])
    if "cuda" in states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])


# --- checkpoints -------------------------------------------------------------------------------


LATEST = "latest"
TRAINER_STATE = "trainer_state.json"
TRAIN_LOG = "train_log.tsv"


class CheckpointStore:
    """data/pretrained/checkpoints: ``step-<n>/`` directories and the ``latest`` marker.

    A checkpoint is DeepSpeed's files (model, optimizer partitions) plus ``trainer_state.json``
    (rank 0: step, data position, counters, the training fingerprint) and
    ``rng_state_rank<r>.pt`` (each rank's generators). ``latest`` names the newest *complete*
    checkpoint: it is replaced atomically after a barrier that every rank passes only once its
    files are written, and is DeepSpeed's own format, so ``zero_to_fp32.py`` works here too.
    """

    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)

    @staticmethod
    def tag(step: int) -> str:
        return f"step-{step:08d}"

    def latest_tag(self) -> str | None:
        marker = self.directory / LATEST
        if not marker.is_file():
            return None
        tag = marker.read_text(encoding="utf-8").strip()
        return tag if (self.directory / tag / TRAINER_STATE).is_file() else None

    def trainer_state(self, tag: str) -> dict[str, Any]:
        return json.loads((self.directory / tag / TRAINER_STATE).read_text(encoding="utf-8"))

    def resumable_tag(self, fingerprint: Mapping[str, Any]) -> str | None:
        """The checkpoint to resume from, None to start fresh; an error for a foreign run.

        A checkpoint of the same training fingerprint is resumed. One of other params whose
        run had finished is superseded (its export is what it was for): start fresh. One of
        other params whose run had *not* finished is an error, so that hours of training are
        never thrown away by a changed knob: resume with the old params, or delete it.
        """
        tag = self.latest_tag()
        if tag is None:
            return None
        state = self.trainer_state(tag)
        if state["fingerprint"] == dict(fingerprint):
            return tag
        if state["step"] >= state["max_steps"]:
            return None
        old, new = flatten(state["fingerprint"]), flatten(dict(fingerprint))
        changed = sorted(key for key in old.keys() | new.keys() if old.get(key) != new.get(key))
        raise BertforgeError(
            f"{self.directory} holds an unfinished run ({state['step']} of {state['max_steps']} "
            f"steps) with other training params or data (changed: {', '.join(changed)}); "
            f"restore them to resume, or delete {self.directory} to start over"
        )

    def prepare(self, fingerprint: Mapping[str, Any]) -> str | None:
        """(rank 0) Remove incomplete or superseded checkpoints; return the tag to resume."""
        tag = self.resumable_tag(fingerprint)
        self.directory.mkdir(parents=True, exist_ok=True)
        for entry in sorted(self.directory.glob("step-*")):
            if tag is None or entry.name > tag:
                shutil.rmtree(entry, ignore_errors=True)
        if tag is None:
            for name in (LATEST, TRAIN_LOG):
                (self.directory / name).unlink(missing_ok=True)
        return tag

    def save(
        self, engine: Any, step: int, state: Mapping[str, Any], topology: Topology, keep: int
    ) -> None:
        """Write checkpoint `step` on every rank, then (rank 0) the marker, then prune."""
        tag = self.tag(step)
        if topology.is_main:
            shutil.rmtree(self.directory / tag, ignore_errors=True)
        torch.distributed.barrier()
        engine.save_checkpoint(str(self.directory), tag=tag, save_latest=False)
        torch.save(rng_states(), self.directory / tag / f"rng_state_rank{topology.rank}.pt")
        if topology.is_main:
            write_json_atomic(self.directory / tag / TRAINER_STATE, state)
        torch.distributed.barrier()
        if topology.is_main:
            staging = self.directory / f".{LATEST}.tmp"
            staging.write_text(tag, encoding="utf-8")
            os.replace(staging, self.directory / LATEST)
            for old in sorted(self.directory.glob("step-*"))[:-keep]:
                shutil.rmtree(old, ignore_errors=True)

    def load(self, engine: Any, tag: str, topology: Topology) -> dict[str, Any]:
        """Restore weights, optimizer, this rank's generators; return the trainer state."""
        load_path, _ = engine.load_checkpoint(
            str(self.directory), tag=tag, load_optimizer_states=True, load_lr_scheduler_states=False
        )
        if load_path is None:
            raise BertforgeError(
                f"{self.directory / tag}: DeepSpeed could not load this checkpoint"
            )
        states = torch.load(
            self.directory / tag / f"rng_state_rank{topology.rank}.pt", weights_only=False
        )
        restore_rng_states(states)
        return self.trainer_state(tag)


class TrainingLog:
    """Rows of per-step metrics (the DVC plot), kept with the checkpoints so a resume continues."""

    COLUMNS = (
        "step",
        "loss",
        "mlm_loss",
        "nsp_loss",
        "mlm_accuracy",
        "nsp_accuracy",
        "lr",
        "grad_norm",
        "tokens_per_s",
        "mfu",
        "nonfinite_steps",
    )

    def __init__(self, path: Path) -> None:
        self.path = Path(path)

    def continue_from(self, step: int) -> TrainingLog:
        """Keep the rows up to `step` (the checkpoint resumed; none for a fresh run)."""
        kept = ["\t".join(self.COLUMNS) + "\n"]
        if step > 0 and self.path.is_file():
            for line in self.path.read_text(encoding="utf-8").splitlines()[1:]:
                if line and int(line.split("\t", 1)[0]) <= step:
                    kept.append(line + "\n")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.path.write_text("".join(kept), encoding="utf-8")
        return self

    def append(self, row: Mapping[str, float]) -> None:
        values = [
            f"{row[name]:.6g}" if name != "step" else str(int(row[name])) for name in self.COLUMNS
        ]
        with open(self.path, "a", encoding="utf-8") as handle:
            handle.write("\t".join(values) + "\n")

    def last_row(self) -> dict[str, float]:
        """The newest row (also one written before a resume), or {} when there is none."""
        lines = self.path.read_text(encoding="utf-8").splitlines()
        if len(lines) < 2:
            return {}
        return dict(zip(self.COLUMNS, map(float, lines[-1].split("\t")), strict=True))

    def publish(self, destination: Path) -> None:
        destination = Path(destination)
        destination.parent.mkdir(parents=True, exist_ok=True)
        staging = destination.parent / f".{destination.name}.tmp-{os.getpid()}"
        shutil.copyfile(self.path, staging)
        replace_path(staging, destination)


# --- a step ------------------------------------------------------------------------------------

STATS = (
    "loss",
    "mlm_loss",
    "nsp_loss",
    "mlm_correct",
    "mlm_total",
    "nsp_correct",
    "nsp_total",
    "tokens",
    "flops",
    "micro_batches",
    "nonfinite",
)


@dataclass
class StepResult:
    """Sums over the step's micro-batches and ranks, and what happened to the update."""

    sums: dict[str, float]
    grad_norm: float
    skipped: bool


def train_step(
    engine: Any,
    optimizer: torch.optim.Optimizer,
    micro_batches: Sequence[Mapping[str, torch.Tensor]],
    lr: float,
    flops_of: Callable[[Mapping[str, torch.Tensor]], float],
) -> StepResult:
    """One optimizer step over `micro_batches`, skipped on every rank if any loss is not finite.

    The step's sums are all-reduced once, after the last backward and before the boundary
    `engine.step()`; a non-finite loss anywhere cancels the optimizer step everywhere, so the
    ranks stay identical. DeepSpeed's own overflow detection (non-finite gradients under ZeRO)
    also counts as skipped, except with fp16, where skipping is loss scaling at work.
    """
    for group in optimizer.param_groups:
        group["lr"] = lr
    sums = torch.zeros(len(STATS), dtype=torch.float64, device=engine.device)
    grad_norm = None
    for index, batch in enumerate(micro_batches):
        output = engine(**batch)
        finite = torch.isfinite(output.loss)
        sums += torch.stack(
            [
                torch.where(finite, output.loss.detach(), 0.0).double(),
                torch.where(finite, output.mlm_loss.detach(), 0.0).double(),
                torch.where(finite, output.nsp_loss.detach(), 0.0).double(),
                output.mlm_correct.double(),
                output.mlm_total.double(),
                output.nsp_correct.double(),
                output.nsp_total.double(),
                batch["attention_mask"].sum().double(),
                torch.tensor(flops_of(batch), dtype=torch.float64, device=engine.device),
                torch.tensor(1.0, dtype=torch.float64, device=engine.device),
                (~finite).double(),
            ]
        )
        engine.backward(output.loss)
        if index == len(micro_batches) - 1:
            torch.distributed.all_reduce(sums)
            optimizer.skip_next_step = bool(sums[STATS.index("nonfinite")] > 0)
            if not (
                engine.zero_optimization() or engine.bfloat16_enabled() or engine.fp16_enabled()
            ):
                grad_norm = gradient_norm(engine.module)
        skipped_before = engine.skipped_steps
        engine.step()
    overflowed = engine.skipped_steps > skipped_before and not engine.fp16_enabled()
    skipped = optimizer.skip_next_step or overflowed
    optimizer.skip_next_step = False
    if grad_norm is None:
        norm = engine.get_global_grad_norm()
        grad_norm = float(norm) if norm is not None else float("nan")
    return StepResult(dict(zip(STATS, sums.tolist(), strict=True)), grad_norm, skipped)


def gradient_norm(module: torch.nn.Module) -> float:
    """L2 norm of all gradients (ZeRO-0 keeps whole, already averaged gradients)."""
    norms = [p.grad.detach().float().norm() for p in module.parameters() if p.grad is not None]
    return float(torch.linalg.vector_norm(torch.stack(norms))) if norms else 0.0


# --- evaluation --------------------------------------------------------------------------------


EVAL_SUMS = (
    "mlm_loss",
    "mlm_correct",
    "mlm_total",
    "nsp_loss",
    "nsp_correct",
    "nsp_total",
    "nsp_random_next",
    "unigram_correct",
    "unigram_nll",
)


def evaluate(
    engine: Any,
    collate: Collator,
    batches: Sequence[tuple[np.ndarray, bool]],
    unigram_log_probs: torch.Tensor,
) -> dict[str, float]:
    """Held-out MLM/NSP loss and accuracy, and baselines on the same targets for scale.

    The unigram baseline always predicts the train split's most frequent target (accuracy) and
    scores each target by its add-one-smoothed train frequency (loss). The NSP baseline always
    predicts the held-out split's more frequent NSP label.
    """
    engine.eval()
    sums = torch.zeros(len(EVAL_SUMS), dtype=torch.float64, device=engine.device)
    top_token = int(unigram_log_probs.argmax())
    with torch.no_grad():
        for indices, counted in batches:
            batch = collate(indices)
            output = engine(**batch)
            if not counted:
                continue
            labels = batch["masked_lm_ids"]
            labelled = labels != IGNORE_INDEX
            sums += torch.stack(
                [
                    output.mlm_loss.double() * output.mlm_total,
                    output.mlm_correct.double(),
                    output.mlm_total.double(),
                    output.nsp_loss.double() * output.nsp_total,
                    output.nsp_correct.double(),
                    output.nsp_total.double(),
                    (batch["next_sentence_label"] == 1).sum().double(),
                    ((labels == top_token) & labelled).sum().double(),
                    -unigram_log_probs[labels[labelled]].double().sum(),
                ]
            )
    torch.distributed.all_reduce(sums)
    engine.train()
    total = dict(zip(EVAL_SUMS, sums.tolist(), strict=True))
    masked = max(total["mlm_total"], 1)
    metrics = {
        "mlm_loss": total["mlm_loss"] / masked,
        "mlm_accuracy": total["mlm_correct"] / masked,
        "masked_tokens": int(total["mlm_total"]),
        "unigram_mlm_accuracy": total["unigram_correct"] / masked,
        "unigram_mlm_loss": total["unigram_nll"] / masked,
    }
    metrics["mlm_accuracy_over_unigram"] = total["mlm_correct"] / max(total["unigram_correct"], 1)
    if total["nsp_total"]:
        random_next = total["nsp_random_next"] / total["nsp_total"]
        metrics |= {
            "nsp_loss": total["nsp_loss"] / total["nsp_total"],
            "nsp_accuracy": total["nsp_correct"] / total["nsp_total"],
            "nsp_majority_accuracy": max(random_next, 1 - random_next),
        }
    return metrics


def unigram_log_probabilities(counts: np.ndarray, device: torch.device) -> torch.Tensor:
    """Add-one smoothed log unigram probabilities of the train targets."""
    smoothed = counts.astype(np.float64) + 1.0
    return torch.from_numpy(np.log(smoothed / smoothed.sum())).to(device)


# --- export ------------------------------------------------------------------------------------


def consolidated_state_dict(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The float32 master weights, whole, on CPU, whatever the ZeRO stage and precision.

    Collective under ZeRO-3 (each parameter is gathered from its shards): every rank calls it,
    in the same order. Under ZeRO-1/2 and bf16 the optimizer's float32 copy is used, not the
    16-bit working weights; without ZeRO in float32 the parameters are the master weights.
    """
    from deepspeed.utils import safe_get_full_fp32_param

    state: dict[str, torch.Tensor] = {}
    for name, parameter in module.named_parameters():
        full = safe_get_full_fp32_param(parameter)
        state[name] = (parameter if full is None else full).detach().float().cpu().clone()
    for name, buffer in module.named_buffers():
        state[name] = buffer.detach().cpu().clone()
    return state


def export_pretrained(
    module: BertForPreTraining,
    state: Mapping[str, torch.Tensor],
    tokenizer_dir: Path,
    export_dir: Path,
    lineage: Mapping[str, Any],
) -> None:
    """(rank 0) config.json + model.safetensors + the tokenizer files + lineage.json, atomically."""
    with atomic_directory(export_dir) as staging:
        save_pretrained(module, staging, state_dict=state)
        for path in sorted(Path(tokenizer_dir).iterdir()):
            if path.is_file():
                shutil.copyfile(path, staging / path.name)
        write_json_atomic(staging / "lineage.json", dict(lineage))


# --- throughput --------------------------------------------------------------------------------


def measure_matmul_peak(device: torch.device, dtype: torch.dtype, trials: int = 5) -> float:
    """FLOP/s of a large dense matmul on this process's device: the ceiling MFU is taken against.

    The best of a few short trials, so that a moment of contention does not lower the ceiling.
    """
    size = 4096 if device.type == "cuda" else 512
    generator = torch.Generator(device).manual_seed(0)  # leaves the global (dropout) RNG alone
    a = torch.randn(size, size, device=device, dtype=dtype, generator=generator)
    b = torch.randn(size, size, device=device, dtype=dtype, generator=generator)
    best = 0.0
    for _ in range(trials + 1):  # the first trial warms up
        start, iterations = time.perf_counter(), 0
        while iterations < 3 or time.perf_counter() - start < 0.1:
            torch.matmul(a, b)
            iterations += 1
            if device.type == "cuda":
                torch.cuda.synchronize(device)
        best = max(best, 2 * size**3 * iterations / (time.perf_counter() - start))
    return best


# --- the run -----------------------------------------------------------------------------------


MetricsLogger = Callable[[Mapping[str, float], int], None]


@dataclass
class Progress:
    """Where the run is, besides weights and optimizer: what a checkpoint's trainer state holds."""

    step: int = 0
    nonfinite_in_a_row: int = 0
    nonfinite_total: int = 0

    def trainer_state(self, plan: BatchPlan, params: PretrainParams, fingerprint: Mapping) -> dict:
        return {
            "step": self.step,
            "max_steps": params.max_steps,
            "data_position": plan.position(self.step),
            "nonfinite_in_a_row": self.nonfinite_in_a_row,
            "nonfinite_total": self.nonfinite_total,
            "fingerprint": dict(fingerprint),
        }


@dataclass
class TrainingData:
    """The examples as the loop reads them: the batch plan, collators, held-out batches."""

    plan: BatchPlan
    train: Collator
    heldout: Collator
    heldout_batches: list[tuple[np.ndarray, bool]]
    unigram_log_probs: torch.Tensor

    @classmethod
    def load(
        cls,
        params: PretrainParams,
        inputs: PretrainInputs,
        paths: PretrainPaths,
        topology: Topology,
    ) -> TrainingData:
        meta = inputs.meta
        train = ExampleSplit.load(paths.examples / "train")
        heldout = ExampleSplit.load(paths.examples / "heldout")
        masking = masking_rule(meta, paths.tokenizer) if meta["masking"] == "dynamic" else None
        common = {
            "pad_id": inputs.special_ids["[PAD]"],
            "max_predictions_per_seq": meta["max_predictions_per_seq"],
            "device": topology.device,
            "dynamic_masking": masking,
            "seed": params.seed,
            "pad_multiple": 8 if topology.device.type == "cuda" else 1,  # tensor-core tiles
        }
        plan = BatchPlan(
            train.lengths,
            seed=params.seed,
            world_size=topology.world_size,
            micro_batch_size=params.micro_batch_size,
            accumulation=inputs.accumulation,
            window=params.length_bucket_batches,
        )
        return cls(
            plan=plan,
            train=Collator(train, mask_domain=MASK, **common),
            heldout=Collator(heldout, mask_domain=HELDOUT_MASK, **common),
            heldout_batches=eval_batches(
                heldout.lengths, params.eval_batch_size, topology.rank, topology.world_size
            ),
            unigram_log_probs=unigram_log_probabilities(
                unigram_counts(train, meta), topology.device
            ),
        )

    def evaluate(self, engine: Any) -> dict[str, float]:
        return evaluate(engine, self.heldout, self.heldout_batches, self.unigram_log_probs)


class StepLogger:
    """Sums the steps between log rows into a row: progress bar, training log, MLflow (rank 0).

    Throughput counts real (non-padding) tokens of all ranks; MFU divides the model FLOPs of
    those tokens (`bertforge.model.flops_per_token`) by the measured matmul peak of all ranks.
    """

    def __init__(
        self,
        params: PretrainParams,
        start_step: int,
        log: TrainingLog | None,
        log_metrics: MetricsLogger | None,
        peak_flops: float,
    ) -> None:
        self.every = params.log_every
        self.max_steps = params.max_steps
        self.log = log
        self.log_metrics = log_metrics if log is not None else None
        self.peak_flops = peak_flops
        self.window = dict.fromkeys(STATS, 0.0)
        self.started = self.window_started = time.perf_counter()
        self.tokens = self.flops = 0.0
        self.bar = tqdm(
            total=params.max_steps,
            initial=start_step,
            desc="pretrain",
            unit="step",
            disable=log is None,
            file=sys.stderr,
        )

    def add(self, step: int, result: StepResult, lr: float, nonfinite_total: int) -> None:
        """Account step `step` (1-based); every `log_every` steps, emit a row."""
        for key, value in result.sums.items():
            self.window[key] += value
        self.tokens += result.sums["tokens"]
        self.flops += result.sums["flops"]
        self.bar.update(1)
        if step % self.every and step != self.max_steps:
            return
        elapsed = time.perf_counter() - self.window_started
        row = log_row(
            step, self.window, lr, result.grad_norm, elapsed, self.peak_flops, nonfinite_total
        )
        self.bar.set_postfix(
            loss=f"{row['loss']:.3f}", mlm_acc=f"{row['mlm_accuracy']:.3f}", lr=f"{lr:.2e}"
        )
        if self.log is not None:
            self.log.append(row)
        if self.log_metrics is not None:
            self.log_metrics({key: value for key, value in row.items() if key != "step"}, step)
        self.window = dict.fromkeys(STATS, 0.0)
        self.window_started = time.perf_counter()

    def close(self) -> dict[str, float]:
        """Throughput of this invocation's training."""
        self.bar.close()
        seconds = time.perf_counter() - self.started
        flops_per_s = self.flops / seconds if self.flops else 0.0
        return {
            "seconds": seconds,
            "tokens_per_s": self.tokens / seconds if self.tokens else 0.0,
            "flops_per_s": flops_per_s,
            "mfu": flops_per_s / self.peak_flops,
            "peak_flops_per_s": self.peak_flops,
        }


def pretrain(
    params: PretrainParams,
    inputs: PretrainInputs,
    paths: PretrainPaths,
    log_metrics: MetricsLogger | None = None,
    lineage: Mapping[str, Any] | None = None,
) -> dict[str, Any] | None:
    """Train (or resume), evaluate, export. Returns the summary metrics on rank 0, else None.

    Every rank calls this. `log_metrics(metrics, step)` receives the per-step metrics (rank 0);
    `lineage` goes into the export's lineage.json (e.g. the MLflow run id).
    """
    topology = start_distributed()
    if topology.world_size != inputs.world_size:
        raise BertforgeError(
            f"the job has {topology.world_size} processes, but its inputs were checked for "
            f"{inputs.world_size}"
        )
    torch.manual_seed(params.seed)  # the same initial weights on every rank
    model = BertForPreTraining(inputs.config)
    parameters = count_parameters(model)  # before ZeRO-3 partitions them away
    seed_generators(params.seed, topology.rank)
    engine, optimizer = build_engine(model, params, inputs, topology)
    store = CheckpointStore(paths.checkpoints)
    progress = resume(store, engine, inputs.fingerprint, topology)
    start_step = progress.step
    data = TrainingData.load(params, inputs, paths, topology)

    throughput = train(
        params, inputs, engine, optimizer, data, store, progress, topology, log_metrics
    )
    if throughput is None:
        return None  # stopped on non-finite steps; rank 0 raised
    heldout = data.evaluate(engine)
    state = consolidated_state_dict(engine.module)
    if not topology.is_main:
        return None
    export_pretrained(
        engine.module,
        state,
        paths.tokenizer,
        paths.export,
        {
            **(lineage or {}),
            "vocab_digest": inputs.vocab_digest,
            "examples_digest": inputs.examples_digest,
            "steps": params.max_steps,
        },
    )
    log = TrainingLog(paths.checkpoints / TRAIN_LOG)
    log.publish(paths.train_log)
    final = log.last_row()
    return {
        "heldout": heldout,
        "train": {
            "steps": params.max_steps,
            "steps_this_run": params.max_steps - start_step,
            "resumed_from_step": start_step,
            "examples_seen": params.max_steps * data.plan.global_batch_size,
            "epochs": params.max_steps / data.plan.steps_per_epoch,
            "nonfinite_steps": progress.nonfinite_total,
            "final_loss": final.get("loss"),
            "final_mlm_accuracy": final.get("mlm_accuracy"),
            **throughput,
        },
        "model": {
            "parameters": parameters,
            "processes": topology.world_size,
            "device": topology.device.type,
        },
    }


def resume(
    store: CheckpointStore, engine: Any, fingerprint: Mapping[str, Any], topology: Topology
) -> Progress:
    """Load the latest complete checkpoint of this run, if any (rank 0 tidies the store first)."""
    tag = store.prepare(fingerprint) if topology.is_main else None
    torch.distributed.barrier()
    if not topology.is_main:
        tag = store.latest_tag()
    if tag is None:
        return Progress()
    state = store.load(engine, tag, topology)
    if topology.is_main:
        print(
            f"pretrain: resuming from {store.directory / tag} (step {state['step']})",
            file=sys.stderr,
        )
    return Progress(state["step"], state["nonfinite_in_a_row"], state["nonfinite_total"])


def train(
    params: PretrainParams,
    inputs: PretrainInputs,
    engine: Any,
    optimizer: torch.optim.Optimizer,
    data: TrainingData,
    store: CheckpointStore,
    progress: Progress,
    topology: Topology,
    log_metrics: MetricsLogger | None,
) -> dict[str, float] | None:
    """The loop from `progress.step` to `max_steps`; returns this invocation's throughput.

    Stops after `max_nonfinite_in_a_row` skipped steps: rank 0 raises the one-line error, the
    other ranks return None.
    """
    config = inputs.config

    def flops_of(batch: Mapping[str, torch.Tensor]) -> float:
        tokens = float(batch["attention_mask"].sum())
        masked = float((batch["masked_lm_ids"] != IGNORE_INDEX).sum())
        return flops_per_token(config, batch["input_ids"].shape[1], masked / tokens) * tokens

    dtype = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
    peak = torch.tensor(
        measure_matmul_peak(topology.device, dtype[params.precision]),
        dtype=torch.float64,
        device=topology.device,
    )
    torch.distributed.all_reduce(peak)
    log = (
        TrainingLog(store.directory / TRAIN_LOG).continue_from(progress.step)
        if topology.is_main
        else None
    )
    logger = StepLogger(params, progress.step, log, log_metrics, float(peak))
    engine.train()
    for step in range(progress.step, params.max_steps):
        epoch = data.plan.epoch_of(step)
        indices = data.plan.micro_batches(step, topology.rank)
        lr = learning_rate(params, step + 1)
        result = train_step(
            engine, optimizer, [data.train(i, epoch) for i in indices], lr, flops_of
        )
        progress.step = step + 1
        progress.nonfinite_in_a_row = progress.nonfinite_in_a_row + 1 if result.skipped else 0
        progress.nonfinite_total += int(result.skipped)
        logger.add(progress.step, result, lr, progress.nonfinite_total)
        if progress.nonfinite_in_a_row >= params.max_nonfinite_in_a_row:
            logger.close()
            if not topology.is_main:
                return None
            raise BertforgeError(
                f"pretrain: the loss or gradients were not finite for "
                f"{progress.nonfinite_in_a_row} steps in a row (steps "
                f"{progress.step + 1 - progress.nonfinite_in_a_row}-{progress.step}, none of "
                f"them applied); lower pretrain.lr (now {params.lr:g}) or check the examples; "
                f"the last good checkpoint is in {store.directory}"
            )
        at_end = progress.step == params.max_steps
        if params.eval_every and progress.step % params.eval_every == 0 and not at_end:
            heldout = data.evaluate(engine)
            if log_metrics is not None and topology.is_main:
                log_metrics(
                    {f"heldout_{key}": value for key, value in heldout.items()}, progress.step
                )
        if progress.step % params.checkpoint_every == 0 or at_end:
            state = progress.trainer_state(data.plan, params, inputs.fingerprint)
            store.save(engine, progress.step, state, topology, params.keep_checkpoints)
    return logger.close()


def log_row(
    step: int,
    window: Mapping[str, float],
    lr: float,
    grad_norm: float,
    elapsed: float,
    peak_flops: float,
    nonfinite_total: int,
) -> dict[str, float]:
    """One row of the training log from the sums of the steps since the last row."""
    batches = max(window["micro_batches"] - window["nonfinite"], 1)
    return {
        "step": step,
        "loss": window["loss"] / batches,
        "mlm_loss": window["mlm_loss"] / batches,
        "nsp_loss": window["nsp_loss"] / batches,
        "mlm_accuracy": window["mlm_correct"] / max(window["mlm_total"], 1),
        "nsp_accuracy": window["nsp_correct"] / max(window["nsp_total"], 1),
        "lr": lr,
        "grad_norm": grad_norm,
        "tokens_per_s": window["tokens"] / elapsed,
        "mfu": window["flops"] / elapsed / peak_flops,
        "nonfinite_steps": nonfinite_total,
    }


def masking_rule(meta: Mapping[str, Any], tokenizer_dir: Path) -> MaskingRule:
    lines = (Path(tokenizer_dir) / "vocab.txt").read_text(encoding="utf-8").splitlines()
    return MaskingRule.from_meta(meta, {token: index for index, token in enumerate(lines)})


# --- launching ---------------------------------------------------------------------------------


def under_launcher() -> bool:
    """True inside a job started by torchrun, DeepSpeed's launcher or `launch_local_processes`."""
    return "WORLD_SIZE" in os.environ and "RANK" in os.environ


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def launch_local_processes(processes: int, command: Sequence[str]) -> int:
    """Run `command` as the `processes` ranks of a one-machine job; return the job's exit code.

    The environment is torchrun's (RANK, LOCAL_RANK, WORLD_SIZE, MASTER_ADDR/PORT), and CPU
    threads are split between the ranks (OMP_NUM_THREADS, unless set). The first rank to fail
    stops the others; its exit code is the job's (2 for a one-line `BertforgeError`).
    """
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    port = free_port()
    children: list[subprocess.Popen] = []
    for rank in range(processes):
        env = dict(
            os.environ,
            RANK=str(rank),
            LOCAL_RANK=str(rank),
            WORLD_SIZE=str(processes),
            LOCAL_WORLD_SIZE=str(processes),
            MASTER_ADDR="127.0.0.1",
            MASTER_PORT=str(port),
        )
        env.setdefault("OMP_NUM_THREADS", str(max(1, (cores or 1) // processes)))
        children.append(subprocess.Popen(list(command), env=env))

    def stop_children(signum: int, _frame: Any) -> None:
        for child in children:
            if child.poll() is None:
                child.send_signal(signum)

    # SIGTERM to this process alone is passed on; Ctrl-C reaches the whole process group anyway,
    # so here it only must not end the launcher before its ranks.
    previous = {
        signal.SIGTERM: signal.signal(signal.SIGTERM, stop_children),
        signal.SIGINT: signal.signal(signal.SIGINT, lambda signum, frame: None),
    }
    try:
        while True:
            codes = [child.poll() for child in children]
            failed = [code for code in codes if code not in (None, 0)]
            if failed:
                for child in children:
                    if child.poll() is None:
                        child.terminate()
                for child in children:
                    try:
                        child.wait(timeout=30)
                    except subprocess.TimeoutExpired:
                        child.kill()
                return failed[0] if failed[0] > 0 else 1
            if all(code == 0 for code in codes):
                return 0
            time.sleep(0.1)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
