"""pretrain.mlm_loss_normalisation: global_batch weighs every masked token of a step the same."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from bertforge.errors import BertforgeError
from bertforge.model import IGNORE_INDEX, BertForPreTraining
from bertforge.pretrain.data import ExampleSplit
from bertforge.pretrain.engine import build_engine
from bertforge.pretrain.inputs import check_inputs
from bertforge.pretrain.step import train_step
from tests.factories import PRETRAIN_TINY_MODEL, cpu_collator, pretrain_params, pretrain_paths
from tests.support import REPO_ROOT


def step_gradients(job, project: Path, micro: int, normalisation: str, batches) -> list:
    """The gradients the optimizer step of one `train_step` sees (captured before it)."""
    # no dropout: the two batch splits would draw different masks
    model = PRETRAIN_TINY_MODEL | {"hidden_dropout_prob": 0.0, "attention_probs_dropout_prob": 0.0}
    params = pretrain_params(
        model=model, zero_stage=0, micro_batch_size=micro, global_batch_size=16
    )
    inputs = check_inputs(params, pretrain_paths(project), world_size=1)
    torch.manual_seed(0)
    model = BertForPreTraining(inputs.config)
    engine, optimizer = build_engine(model, params, 16 // micro, job.device)
    captured = []
    original_step = engine.step

    def capturing_step(*args, **kwargs):
        if engine.is_gradient_accumulation_boundary():
            captured[:] = [p.grad.detach().clone() for p in engine.module.parameters()]
        return original_step(*args, **kwargs)

    engine.step = capturing_step
    train_step(engine, optimizer, batches, 1e-3, lambda batch: 0.0, normalisation)
    return captured


def test_global_batch_normalisation_gives_the_gradient_of_one_big_batch(
    single_process_job, project: Path
):
    collate = cpu_collator(ExampleSplit.load(project / "data/examples/train"))
    halves = [collate(np.arange(0, 8)), collate(np.arange(8, 16))]
    counts = [int((b["masked_lm_ids"] != IGNORE_INDEX).sum()) for b in halves]
    assert counts[0] != counts[1]  # otherwise both normalisations agree
    whole = step_gradients(single_process_job, project, 16, "micro_batch", [collate(np.arange(16))])
    global_ = step_gradients(single_process_job, project, 8, "global_batch", halves)
    per_micro = step_gradients(single_process_job, project, 8, "micro_batch", halves)
    for big, accumulated in zip(whole, global_, strict=True):
        torch.testing.assert_close(accumulated, big, rtol=1e-4, atol=1e-6)
    assert not all(
        torch.allclose(a, b, rtol=1e-4, atol=1e-6) for a, b in zip(whole, per_micro, strict=True)
    )


def test_an_unknown_normalisation_is_a_one_line_params_error():
    with pytest.raises(
        BertforgeError,
        match=r"mlm_loss_normalisation must be one of 'micro_batch', 'global_batch', got 'token'",
    ):
        pretrain_params(mlm_loss_normalisation="token")


def test_an_unknown_precision_is_a_one_line_params_error():
    with pytest.raises(BertforgeError, match=r"precision must be one of 'fp32', 'bf16', 'fp16'"):
        pretrain_params(precision="fp8")


def test_an_unknown_ablation_preset_is_one_line_and_exit_2_before_any_run():
    result = subprocess.run(
        [sys.executable, str(REPO_ROOT / "benchmarks/ablate_pretrain.py"), "--variants", "bert2"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("error: unknown variant or preset 'bert2' (known: default, original")
