"""The export: the float32 master weights, gathered from any ZeRO stage, written in
transformers' layout (config.json, model.safetensors) with the tokenizer files, atomically."""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from bertforge.io import atomic_directory, write_json_atomic
from bertforge.model import BertForPreTraining, save_pretrained


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


def training_digest(fingerprint: Mapping[str, Any]) -> str:
    """Short sha256 of what shaped the weights (params, vocabulary, examples, parent).

    The world size is left out: the weights are the same whatever the number of processes.
    Lineage is content only (no run id, no time), so an identical re-run exports identical bytes.
    """
    shaping = {key: value for key, value in fingerprint.items() if key != "world_size"}
    return hashlib.sha256(json.dumps(shaping, sort_keys=True).encode()).hexdigest()[:16]


def export_pretrained(
    module: BertForPreTraining,
    state: Mapping[str, torch.Tensor],
    tokenizer_dir: Path,
    export_dir: Path,
    lineage: Mapping[str, Any],
) -> None:
    """(rank 0) config.json + model.safetensors + the tokenizer files + lineage.json, atomically.

    An empty existing `export_dir` is a staging folder of the caller's (stages/pretrain.py
    stages the export and its metrics together) and is written in place, so that no staging
    folder nests in another (a kill there would leave one no clean-up knows); otherwise the
    export is staged here.
    """
    export_dir = Path(export_dir)
    if export_dir.is_dir() and not any(export_dir.iterdir()):
        write_export(module, state, tokenizer_dir, export_dir, lineage)
        return
    with atomic_directory(export_dir) as staging:
        write_export(module, state, tokenizer_dir, staging, lineage)


def write_export(
    module: BertForPreTraining,
    state: Mapping[str, torch.Tensor],
    tokenizer_dir: Path,
    directory: Path,
    lineage: Mapping[str, Any],
) -> None:
    save_pretrained(module, directory, state_dict=state)
    for path in sorted(Path(tokenizer_dir).iterdir()):
        if path.is_file():
            shutil.copyfile(path, directory / path.name)
    write_json_atomic(directory / "lineage.json", dict(lineage))
