"""The learning-rate schedule; the DeepSpeed config's mixed precision."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from bertforge.model import BertForPreTraining
from bertforge.pretrain.data import ExampleSplit
from bertforge.pretrain.engine import build_engine, deepspeed_config, learning_rate
from bertforge.pretrain.export import consolidated_state_dict
from bertforge.pretrain.inputs import check_inputs
from bertforge.pretrain.step import train_step
from tests.factories import cpu_collator, pretrain_params, pretrain_paths


def test_learning_rate_warms_up_linearly_then_decays_linearly_without_reaching_zero():
    params = pretrain_params(lr=1.0, warmup_steps=4, max_steps=12)
    rates = [learning_rate(params, step) for step in range(1, 13)]
    assert rates[:4] == pytest.approx([0.25, 0.5, 0.75, 1.0])
    assert rates[4:] == pytest.approx([1.0, 7 / 8, 6 / 8, 5 / 8, 4 / 8, 3 / 8, 2 / 8, 1 / 8])


def test_polynomial_decay_raises_the_remaining_fraction_to_the_power():
    params = pretrain_params(
        lr=2.0, warmup_steps=0, max_steps=4, decay="polynomial", decay_power=2.0
    )
    rates = [learning_rate(params, step) for step in range(1, 5)]
    assert rates == pytest.approx([2.0, 2.0 * (3 / 4) ** 2, 2.0 * (2 / 4) ** 2, 2.0 * (1 / 4) ** 2])


def test_bf16_accumulates_gradients_in_fp32():
    config = deepspeed_config(pretrain_params(precision="bf16"), accumulation=2)
    assert config["bf16"]["enabled"]
    assert config["data_types"] == {"grad_accum_dtype": "fp32"}
    assert "data_types" not in deepspeed_config(pretrain_params(precision="fp32"), 2)


@pytest.mark.parametrize("zero_stage", [1, 2])
def test_bf16_trains_with_fp32_master_weights_and_fp32_gradient_accumulation(
    single_process_job, project: Path, zero_stage: int
):
    # the stage runs bf16 on GPUs only; DeepSpeed's CPU engine runs the same optimizer path
    params = pretrain_params(precision="bf16", zero_stage=zero_stage)
    inputs = check_inputs(params, pretrain_paths(project), world_size=1, device_type="cuda")
    torch.manual_seed(0)
    model = BertForPreTraining(inputs.config)
    engine, optimizer = build_engine(model, params, inputs.accumulation, single_process_job.device)
    assert engine.get_data_types() == (torch.bfloat16, torch.float32)
    assert next(engine.module.parameters()).dtype == torch.bfloat16
    collate = cpu_collator(ExampleSplit.load(project / "data/examples/train"))
    batches = [collate(np.arange(0, 8)), collate(np.arange(8, 16))]  # 2 accumulation steps
    before = consolidated_state_dict(engine.module)
    losses = []
    for _ in range(3):
        result = train_step(engine, optimizer, batches, 1e-3, lambda batch: 0.0, "micro_batch")
        assert not result.skipped and np.isfinite(result.grad_norm)
        losses.append(result.sums["loss"])
    assert losses[-1] < losses[0]
    after = consolidated_state_dict(engine.module)
    assert not all(torch.equal(before[name], after[name]) for name in before)
    # the fp32 master copy holds what the bf16 working weights round away
    working = {name: parameter.float() for name, parameter in engine.module.named_parameters()}
    assert any(not torch.equal(after[name], working[name]) for name in working)
