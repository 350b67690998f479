"""Write and read exports in transformers' layout: config.json + model.safetensors."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import NamedTuple

import torch
from safetensors.torch import load_file, save_file
from torch import Tensor

from bertforge.errors import BertforgeError
from bertforge.io import write_json_atomic
from bertforge.model.config import BertConfig
from bertforge.model.models import PretrainedBert

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"


class LoadReport(NamedTuple):
    """What `load_pretrained` did not take from the file, by parameter name."""

    initialized: list[str]  # in the model, not in the file: freshly initialised (a new head)
    unused: list[str]  # in the file, not in the model (e.g. pretraining heads for a classifier)


def save_pretrained(
    model: PretrainedBert, directory: Path, state_dict: Mapping[str, Tensor] | None = None
) -> None:
    """Write `directory`/config.json and model.safetensors (float32) in transformers' layout.

    Tied aliases (the MLM decoder's weight and bias) are not written: safetensors cannot hold
    shared tensors, and transformers re-ties them from the embedding and `cls.predictions.bias`
    on load, as it does for its own exports. `state_dict` overrides the model's own weights
    (e.g. the float32 master weights gathered from a DeepSpeed checkpoint). The files are
    written in place; wrap the call in `bertforge.io.atomic_directory` for an atomic export.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    weights = model.state_dict() if state_dict is None else state_dict
    tensors = {
        name: tensor.detach().to(device="cpu", dtype=torch.float32).contiguous()
        for name, tensor in weights.items()
        if name not in model.tied_parameters
    }
    save_file(tensors, directory / WEIGHTS_FILE, metadata={"format": "pt"})
    write_json_atomic(directory / CONFIG_FILE, model.hf_config())


def check_shapes(
    saved: Mapping[str, Tensor], expected: Mapping[str, Tensor], where: str, expected_by: str
) -> None:
    """One line naming the first saved tensor whose shape is not the one `expected_by` has."""
    for name, tensor in saved.items():
        if name in expected and tensor.shape != expected[name].shape:
            raise BertforgeError(
                f"{where}: {name} has shape {list(tensor.shape)}, {expected_by} expects "
                f"{list(expected[name].shape)}"
            )


def load_pretrained(
    directory: Path,
    model_cls: type[PretrainedBert],
    num_labels: int | None = None,
    generator: torch.Generator | None = None,
) -> tuple[PretrainedBert, LoadReport]:
    """Build `model_cls` from an export (ours or transformers') and load its weights.

    Embedding and encoder weights must all be in the file; heads missing from it (a classifier
    on a pretraining export, a pooler on an MLM-only export) keep their fresh initialisation and
    are listed in the report. For `BertForSequenceClassification`, `num_labels` defaults to the
    export's own label count and is required when the export has no classification head;
    `generator` seeds the initialisation of what the file does not hold.
    """
    directory = Path(directory)
    config_path = directory / CONFIG_FILE
    weights_path = directory / WEIGHTS_FILE
    try:
        hf = json.loads(config_path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise BertforgeError(f"{config_path}: not found") from None
    except json.JSONDecodeError as error:
        raise BertforgeError(f"{config_path}: not valid JSON: {error}") from None
    if not weights_path.is_file():
        raise BertforgeError(f"{weights_path}: not found")
    try:
        model = model_cls.for_loading(BertConfig.from_hf_dict(hf), hf, num_labels, generator)
    except BertforgeError as error:
        raise BertforgeError(f"{config_path}: {error}") from None

    saved = load_file(weights_path)
    expected = {
        name: tensor
        for name, tensor in model.state_dict().items()
        if name not in model.tied_parameters
    }
    check_shapes(saved, expected, str(weights_path), "the model")
    initialized = sorted(set(expected) - set(saved))
    required = [
        name for name in initialized if name.startswith(("bert.embeddings.", "bert.encoder."))
    ]
    if required:
        raise BertforgeError(f"{weights_path}: {required[0]} is missing ({len(required)} in all)")
    unused = sorted(set(saved) - set(expected) - set(model.tied_parameters))
    model.load_state_dict({name: saved[name] for name in expected if name in saved}, strict=False)
    return model, LoadReport(initialized=initialized, unused=unused)
