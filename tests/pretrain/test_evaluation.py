"""Held-out batches across ranks and the unigram baseline."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from bertforge.pretrain.data import ExampleSplit
from bertforge.pretrain.evaluation import eval_batches, unigram_counts
from tests.factories import PRETRAIN_VOCAB


def test_heldout_batches_are_split_evenly_across_ranks_without_overlap():
    lengths = np.arange(10)
    per_rank = [eval_batches(lengths, batch_size=3, rank=rank, world_size=3) for rank in range(3)]
    assert {len(batches) for batches in per_rank} == {2}
    counted = [i for batches in per_rank for batch, real in batches if real for i in batch.tolist()]
    assert sorted(counted) == list(range(10))


def test_unigram_baseline_counts_the_train_targets_or_every_maskable_token(project: Path):
    split = ExampleSplit.load(project / "data/examples/train")
    meta = json.loads((project / "data/examples/meta.json").read_text(encoding="utf-8"))
    targets = np.concatenate([np.asarray(ids) for ids in split.table["masked_lm_ids"].to_pylist()])
    assert (
        unigram_counts(split, meta).tolist()
        == np.bincount(targets, minlength=len(PRETRAIN_VOCAB)).tolist()
    )
    dynamic = unigram_counts(split, meta | {"masking": "dynamic"})
    tokens = np.concatenate([np.asarray(ids) for ids in split.table["input_ids"].to_pylist()])
    expected = np.bincount(tokens, minlength=len(PRETRAIN_VOCAB))
    special = meta["special_token_ids"]
    expected[[special["[CLS]"], special["[SEP]"], special["[PAD]"]]] = 0  # never masked
    assert dynamic.tolist() == expected.tolist()
