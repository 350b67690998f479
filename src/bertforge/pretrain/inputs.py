"""The checked inputs: everything that would make the stage fail later, refused in one line
before any worker starts — examples made with another tokenizer, token ids outside the
vocabulary, sequences longer than the position table, too few examples, and a checkpoint
directory that holds an unfinished run of other params (`training_fingerprint`)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.compute as pc
import pyarrow.parquet as pq
import torch

from bertforge.constants import EXAMPLE_SPLITS
from bertforge.errors import BertforgeError
from bertforge.examples.meta import META_FILE, read_meta
from bertforge.model import BertConfig
from bertforge.params import flatten
from bertforge.pretrain.checkpoint import CheckpointStore
from bertforge.pretrain.init import ParentWeights, check_parent
from bertforge.pretrain.params import (
    RUNTIME_ONLY_PARAMS,
    PretrainParams,
    PretrainPaths,
    accumulation_steps,
    check_device_support,
)
from bertforge.shards import shard_files
from bertforge.tokenizer.files import VOCAB_FILE, vocab_digest


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
    parent: ParentWeights | None = None  # pretrain.init_from, checked

    @property
    def special_ids(self) -> dict[str, int]:
        return self.meta["special_token_ids"]


def examples_digest(examples: Path) -> str:
    """Identity of data/examples without reading the shards: meta.json plus shard names/sizes."""
    digest = hashlib.sha256((Path(examples) / META_FILE).read_bytes())
    for split in EXAMPLE_SPLITS:
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
    device_type = device_type or ("cuda" if torch.cuda.is_available() else "cpu")
    check_device_support(params, device_type)
    accumulation = accumulation_steps(params, world_size)
    meta = read_meta(paths.examples)
    vocab_file = paths.tokenizer / VOCAB_FILE
    if not vocab_file.is_file():
        raise BertforgeError(f"{vocab_file}: not found (run the vocab stage first)")
    tokenizer_digest = vocab_digest(paths.tokenizer)
    if tokenizer_digest != meta["vocab_digest"]:
        raise BertforgeError(
            f"{vocab_file} does not match {paths.examples / META_FILE} (vocab_digest "
            f"{tokenizer_digest[:12]}… vs {meta['vocab_digest'][:12]}…): the examples were made "
            "with another tokenizer; re-run the examples stage"
        )
    config = params.model.bert_config(meta["vocab_size"], meta["special_token_ids"]["[PAD]"])
    parent = None
    if params.init_from is not None:  # continued pretraining: the parent must fit (init.py)
        parent = check_parent(params.init_from, config, paths.tokenizer, meta["max_seq_length"])
    if meta["max_seq_length"] > config.max_position_embeddings:
        raise BertforgeError(
            f"params.yaml: pretrain.model.max_position_embeddings must be at least the examples' "
            f"max_seq_length ({meta['max_seq_length']}), got {config.max_position_embeddings}"
        )
    rows = {
        split: check_example_ids(
            paths.examples / split, config.vocab_size, config.max_position_embeddings
        )
        for split in EXAMPLE_SPLITS
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
    if parent is not None:
        fingerprint["parent"] = parent.identity  # another parent's checkpoint is not resumed
    CheckpointStore(paths.checkpoints).resumable_tag(fingerprint)  # a foreign run: refuse now
    return PretrainInputs(
        meta=meta,
        config=config,
        world_size=world_size,
        accumulation=accumulation,
        rows=rows,
        vocab_digest=tokenizer_digest,
        examples_digest=data_digest,
        fingerprint=fingerprint,
        parent=parent,
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
