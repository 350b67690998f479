"""One optimizer step: a non-finite loss skips the update, weights and optimizer state alike."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from bertforge.model import BertForPreTraining
from bertforge.pretrain.data import ExampleSplit
from bertforge.pretrain.engine import build_engine
from bertforge.pretrain.export import consolidated_state_dict
from bertforge.pretrain.inputs import check_inputs
from bertforge.pretrain.step import StepResult, train_step
from tests.factories import cpu_collator, pretrain_params, pretrain_paths


class PoisonableBert(BertForPreTraining):
    """BERT whose loss is multiplied by `poison`: NaN makes the fault a step must survive."""

    poison = 1.0

    def forward(self, *args, **kwargs):
        output = super().forward(*args, **kwargs)
        return output._replace(loss=output.loss * self.poison)


def optimizer_state(optimizer: torch.optim.Optimizer) -> list[torch.Tensor]:
    return [
        value.clone()
        for state in optimizer.state.values()
        for value in state.values()
        if torch.is_tensor(value)
    ]


@pytest.mark.parametrize("zero_stage", [0, 2])
def test_a_nonfinite_loss_skips_the_update_and_the_next_step_trains(
    single_process_job, project: Path, zero_stage: int
):
    params = pretrain_params(zero_stage=zero_stage)
    inputs = check_inputs(params, pretrain_paths(project), world_size=1)
    torch.manual_seed(0)
    model = PoisonableBert(inputs.config)
    engine, optimizer = build_engine(model, params, inputs.accumulation, single_process_job.device)
    split = ExampleSplit.load(project / "data/examples/train")
    collate = cpu_collator(split)
    batches = [collate(np.arange(0, 8)), collate(np.arange(8, 16))]

    def step() -> StepResult:
        return train_step(engine, optimizer, batches, 1e-3, lambda batch: 0.0, "micro_batch")

    assert not step().skipped  # a real update first, so the optimizer has state to protect
    weights, moments = consolidated_state_dict(engine.module), optimizer_state(optimizer)
    model.poison = float("nan")
    poisoned = step()
    assert poisoned.skipped and poisoned.sums["nonfinite"] == 2
    after = consolidated_state_dict(engine.module)
    assert all(torch.equal(weights[name], after[name]) for name in weights)
    assert all(torch.equal(a, b) for a, b in zip(moments, optimizer_state(optimizer), strict=True))
    model.poison = 1.0
    assert not step().skipped
    trained = consolidated_state_dict(engine.module)
    assert not all(torch.equal(weights[name], trained[name]) for name in weights)
