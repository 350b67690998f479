"""pretrain.unpad: the stage trains on micro-batches of real tokens only, with the same examples,
masks, targets and accounting as padded rows, and to the same losses and weights.

Tolerance, stated once: with no dropout (dropout draws differ by layout: [B, T, H] against
[N, H] masks), a short fp32 run's per-step losses agree within 1e-5 relative and its exported
weights within 1e-5 absolute; measured ~3e-8 for the weights after 6 steps (attention sums the
same keys either way; only the order of some sums differs).
"""

from __future__ import annotations

import dataclasses
import importlib.util
from pathlib import Path
from typing import get_args, get_type_hints

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from bertforge.errors import BertforgeError
from bertforge.model import VARLEN_KERNELS, Unpadded
from bertforge.pretrain.data import Collator, ExampleSplit, attention_width, real_tokens
from bertforge.pretrain.inputs import check_inputs
from bertforge.pretrain.params import PretrainParams, check_device_support
from bertforge.pretrain.progress import TrainingLog, batch_flops
from bertforge.pretrain.train import pretrain
from tests.factories import (
    PRETRAIN_TINY_MODEL,
    cpu_collator,
    make_pretrain_project,
    pretrain_masking_rule,
    pretrain_params,
    pretrain_paths,
)

NO_DROPOUT = PRETRAIN_TINY_MODEL | {"hidden_dropout_prob": 0.0, "attention_probs_dropout_prob": 0.0}
LOSS_RTOL = 1e-5
WEIGHTS_ATOL = 1e-5


def both_layouts(collate: Collator, indices: np.ndarray) -> tuple[dict, dict]:
    return collate(indices), dataclasses.replace(collate, unpad=True)(indices)


@pytest.mark.parametrize("dynamic", [False, True], ids=["stored masks", "dynamic masks"])
def test_an_unpadded_batch_holds_the_padded_batch_real_tokens_masks_and_labels(
    project: Path, dynamic: bool
):
    split = ExampleSplit.load(project / "data/examples/train")
    collate = cpu_collator(split, pretrain_masking_rule() if dynamic else None, seed=3)
    indices = np.array([5, 0, 17, 42, 3])
    padded, unpadded = both_layouts(collate, indices)
    real = padded["attention_mask"].bool()
    assert not bool(real.all())  # the batch has padding to drop
    layout = unpadded["attention_mask"]
    assert isinstance(layout, Unpadded) and layout.attention == "auto"
    lengths = split.lengths[indices]
    assert layout.cu_seqlens.tolist() == [0, *np.cumsum(lengths).tolist()]
    assert layout.max_seqlen == int(lengths.max())
    assert torch.equal(unpadded["input_ids"], padded["input_ids"][real])  # masks applied alike
    assert torch.equal(unpadded["token_type_ids"], padded["token_type_ids"][real])
    for name in ("masked_lm_positions", "masked_lm_ids", "next_sentence_label"):
        assert torch.equal(unpadded[name], padded[name])  # row-local, as they were
    assert int(real_tokens(unpadded)) == int(real_tokens(padded)) == int(lengths.sum())
    assert attention_width(unpadded) == attention_width(padded) == int(lengths.max())


def test_unpadded_batches_count_the_same_tokens_and_model_flops(project: Path):
    inputs = check_inputs(pretrain_params(), pretrain_paths(project), world_size=1)
    collate = cpu_collator(ExampleSplit.load(project / "data/examples/train"))
    padded, unpadded = both_layouts(collate, np.arange(8))
    assert batch_flops(inputs.config, unpadded) == batch_flops(inputs.config, padded)


def test_the_unpadded_kernel_is_the_collators_and_ignored_padding_multiple(project: Path):
    split = ExampleSplit.load(project / "data/examples/train")
    collate = dataclasses.replace(
        cpu_collator(split), unpad=True, attention="nested-sdpa", pad_multiple=8
    )
    batch = collate(np.array([1, 2, 3]))
    assert batch["attention_mask"].attention == "nested-sdpa"
    assert batch["input_ids"].shape == (int(split.lengths[[1, 2, 3]].sum()),)


def train_log_losses(path: Path) -> np.ndarray:
    losses = ("loss", "mlm_loss", "nsp_loss")
    return np.array([[row[name] for name in losses] for row in TrainingLog(path).rows()])


def run_in_process(root: Path, monkeypatch: pytest.MonkeyPatch, **overrides) -> dict:
    """The stage's training (one rank, this process) in the fixture project at `root`."""
    monkeypatch.delenv("TORCH_EXTENSIONS_DIR", raising=False)  # prepare_ops sets it
    params = pretrain_params(**({"model": NO_DROPOUT} | overrides))
    paths = pretrain_paths(make_pretrain_project(root))
    return pretrain(params, check_inputs(params, paths, world_size=1), paths)


def test_unpadded_training_gives_the_padded_losses_and_weights(
    single_process_job, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    summaries = {
        unpad: run_in_process(tmp_path / str(unpad), monkeypatch, unpad=unpad)
        for unpad in (False, True)
    }
    padded, unpadded = (
        train_log_losses(tmp_path / f"{unpad}/metrics/pretrain_log.tsv") for unpad in (False, True)
    )
    assert padded.shape == (6, 3)
    np.testing.assert_allclose(unpadded, padded, rtol=LOSS_RTOL)
    assert padded[-1, 0] < padded[0, 0]  # it trained
    for name in ("mlm_loss", "mlm_accuracy", "nsp_loss"):
        assert summaries[True]["heldout"][name] == pytest.approx(
            summaries[False]["heldout"][name], rel=LOSS_RTOL
        )
    assert summaries[True]["train"]["tokens_per_s"] > 0
    weights = [
        load_file(tmp_path / f"{unpad}/data/pretrained/model/model.safetensors")
        for unpad in (False, True)
    ]
    assert weights[0].keys() == weights[1].keys()
    for name in weights[0]:
        torch.testing.assert_close(weights[1][name], weights[0][name], atol=WEIGHTS_ATOL, rtol=0)


def test_the_kernel_names_are_the_models():
    assert get_args(get_type_hints(PretrainParams)["unpad_attention"]) == VARLEN_KERNELS


def test_an_unknown_kernel_is_a_one_line_params_error():
    with pytest.raises(BertforgeError, match=r"unpad_attention must be one of 'auto', "):
        pretrain_params(unpad=True, unpad_attention="xformers")


@pytest.mark.parametrize(
    ("device", "precision", "needs"),
    [("cpu", "fp32", "a GPU"), ("cuda", "fp32", "precision bf16 or fp16")],
)
def test_flash_attn_where_it_cannot_run_is_refused_in_one_line(device, precision, needs):
    params = pretrain_params(unpad=True, unpad_attention="flash-attn", precision=precision)
    with pytest.raises(BertforgeError) as refused:
        check_device_support(params, device)
    message = str(refused.value)
    assert "\n" not in message
    assert message.startswith(f"params.yaml: pretrain.unpad_attention flash-attn needs {needs}")


def test_flash_attn_not_installed_is_refused_in_one_line(monkeypatch: pytest.MonkeyPatch):
    find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *a: None if name == "flash_attn" else find_spec(name, *a),
    )
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)  # skip the bf16 GPU probe
    params = pretrain_params(unpad=True, unpad_attention="flash-attn", precision="bf16")
    with pytest.raises(BertforgeError) as refused:
        check_device_support(params, "cuda")
    message = str(refused.value)
    assert "\n" not in message
    assert message.startswith("params.yaml: pretrain.unpad_attention: attention 'flash-attn' ")
    assert "flash-attn package, which is not installed" in message


def test_padded_batches_never_check_the_unpadded_kernel():
    check_device_support(pretrain_params(unpad=False, unpad_attention="flash-attn"), "cpu")
