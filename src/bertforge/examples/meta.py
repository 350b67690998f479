"""data/examples/meta.json: what a reader needs to interpret and check the shards.

It names the vocabulary (digest, size, id type, special ids), the instance counts per split and
the params that shaped the instances; pretrain reads it to batch the shards and, with
``masking: dynamic``, to build the same `MaskingRule` (`MaskingRule.from_meta`).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from bertforge.constants import EXAMPLE_SPLITS
from bertforge.examples.params import ExamplesParams
from bertforge.io import read_json
from bertforge.schemas import id_dtype_name
from bertforge.tokenizer.files import TokenizerInfo

META_FILE = "meta.json"
RECORDED_PARAMS = (
    "max_seq_length",
    "masking",
    "nsp",
    "whole_word_mask",
    "max_predictions_per_seq",
    "masked_lm_prob",
    "short_seq_prob",
    "negative_pool_size",
    "random_seed",
)


def examples_meta(tokenizer: TokenizerInfo, params: ExamplesParams) -> dict[str, Any]:
    """meta.json but for the instance counts: known before any instance is made."""
    return {
        "vocab_digest": tokenizer.digest,
        "vocab_size": tokenizer.vocab_size,
        "id_dtype": id_dtype_name(tokenizer.vocab_size),
        "special_token_ids": tokenizer.special_ids,
        "dupe_factor": dict(zip(EXAMPLE_SPLITS, params.dupe_factors, strict=True)),
        **{key: getattr(params, key) for key in RECORDED_PARAMS},
        # recorded only when set, so that meta.json without a segmenter keeps its bytes
        **({"word_segmenter": params.word_segmenter} if params.word_segmenter != "none" else {}),
    }


def write_meta(path: Path, meta: Mapping[str, Any], instances: Mapping[str, int]) -> None:
    """Write `meta` (from `examples_meta`) with the number of instances of each split."""
    payload = {**meta, "instances": {split: int(count) for split, count in instances.items()}}
    Path(path).write_text(json.dumps(payload, indent=2, sort_keys=True) + "\n", encoding="utf-8")


def read_meta(examples_dir: Path) -> dict[str, Any]:
    """data/examples/meta.json, for readers of the shards (pretrain)."""
    return read_json(Path(examples_dir) / META_FILE, "examples")
