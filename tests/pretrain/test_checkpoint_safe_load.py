"""Resume reads DeepSpeed's checkpoint files with ``weights_only=True``: every ZeRO stage's real
files load through the allow-list, and a file that would run code when unpickled is refused in
one line naming it, with nothing run."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from bertforge.errors import BertforgeError
from bertforge.model import BertForPreTraining
from bertforge.pretrain.checkpoint import CheckpointStore
from bertforge.pretrain.data import ExampleSplit
from bertforge.pretrain.engine import build_engine
from bertforge.pretrain.export import consolidated_state_dict
from bertforge.pretrain.inputs import check_inputs
from bertforge.pretrain.safe_load import (
    SafeCheckpointEngine,
    deepspeed_checkpoint_globals,
    load_without_code,
)
from bertforge.pretrain.step import train_step
from tests.factories import cpu_collator, pretrain_params, pretrain_paths


class RunsCode:
    """An object whose unpickling would create the folder `marker` (were it ever unpickled)."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.mkdir, (str(self.marker),))


def trained_engine(project: Path, device: torch.device, zero_stage: int, precision: str, seed: int):
    """A DeepSpeed engine of the fixture model after one optimizer step (weights ≠ initial)."""
    params = pretrain_params(zero_stage=zero_stage)
    inputs = check_inputs(params, pretrain_paths(project), world_size=1)
    # bf16 runs on GPUs only in the stage; DeepSpeed's CPU engine still writes bf16 files
    params = dataclasses.replace(params, precision=precision)
    torch.manual_seed(seed)
    model = BertForPreTraining(inputs.config)
    engine, optimizer = build_engine(model, params, inputs.accumulation, device)
    collate = cpu_collator(ExampleSplit.load(project / "data/examples/train"))
    batches = [collate(np.arange(0, 8)), collate(np.arange(8, 16))]
    train_step(engine, optimizer, batches, 1e-3, lambda batch: 0.0, "micro_batch")
    return engine, optimizer


def optimizer_tensors(optimizer: torch.optim.Optimizer) -> list[torch.Tensor]:
    return [
        value.float()
        for state in optimizer.state.values()
        for value in state.values()
        if torch.is_tensor(value)
    ]


CASES = [(stage, "fp32") for stage in (0, 1, 2, 3)] + [(stage, "bf16") for stage in (1, 2, 3)]


@pytest.mark.parametrize(("zero_stage", "precision"), CASES)
def test_every_zero_stage_resumes_through_the_weights_only_loader(
    single_process_job, project: Path, tmp_path: Path, zero_stage: int, precision: str
):
    device, store = single_process_job.device, CheckpointStore(tmp_path / "checkpoints")
    saved, saved_optimizer = trained_engine(project, device, zero_stage, precision, seed=0)
    store.save(saved, 1, {"step": 1}, single_process_job, keep=1)
    files = sorted(store.directory.glob("step-*/*.pt"))
    unsafe = {
        name
        for path in files
        for name in torch.serialization.get_unsafe_globals_in_checkpoint(path)
    }
    allowed = {f"{cls.__module__}.{cls.__qualname__}" for cls in deepspeed_checkpoint_globals()}
    numpy_state = {name for name in unsafe if name.startswith("numpy.")}  # rng_state_rank0.pt
    assert unsafe - numpy_state <= allowed
    if zero_stage > 0:
        assert unsafe - numpy_state, "ZeRO's optimizer files hold DeepSpeed classes"

    resumed, resumed_optimizer = trained_engine(project, device, zero_stage, precision, seed=1)
    assert store.load(resumed, store.tag(1), single_process_job) == {"step": 1}
    assert isinstance(resumed.checkpoint_engine, SafeCheckpointEngine)
    expected, restored = (
        consolidated_state_dict(saved.module),
        consolidated_state_dict(resumed.module),
    )
    assert all(torch.equal(expected[name], restored[name]) for name in expected)
    pairs = zip(
        optimizer_tensors(saved_optimizer), optimizer_tensors(resumed_optimizer), strict=True
    )
    assert all(torch.equal(a, b) for a, b in pairs)


def test_a_deepspeed_file_that_would_run_code_is_refused_naming_it(
    single_process_job, project: Path, tmp_path: Path
):
    store = CheckpointStore(tmp_path / "checkpoints")
    engine, _ = trained_engine(project, single_process_job.device, 2, "fp32", seed=0)
    store.save(engine, 1, {"step": 1}, single_process_job, keep=1)
    (optimizer_file,) = store.directory.glob("step-*/zero_pp_rank_0_*optim_states.pt")
    marker = tmp_path / "code-ran"
    torch.save({"optimizer_state_dict": RunsCode(marker)}, optimizer_file)
    with pytest.raises(BertforgeError) as raised:
        store.load(engine, store.tag(1), single_process_job)
    message = str(raised.value)
    assert message.startswith(f"{optimizer_file}: refused to load: it holds posix.mkdir"), message
    assert not marker.exists()


def test_an_rng_file_that_would_run_code_is_refused_naming_it(tmp_path: Path):
    from bertforge.pretrain.rng import load_rng_states

    marker = tmp_path / "code-ran"
    torch.save({"python": RunsCode(marker)}, tmp_path / "rng.pt")
    with pytest.raises(BertforgeError, match=r"rng.pt: refused to load: it holds posix.mkdir"):
        load_rng_states(tmp_path / "rng.pt")
    assert not marker.exists()


def test_a_truncated_checkpoint_file_is_one_line_naming_it(tmp_path: Path):
    path = tmp_path / "mp_rank_00_model_states.pt"
    torch.save({"module": {"weight": torch.ones(64)}}, path)
    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(
        BertforgeError, match=r"mp_rank_00_model_states.pt: not a readable checkpoint"
    ):
        load_without_code(path, deepspeed_checkpoint_globals())


def test_the_fp16_dynamic_loss_scaler_round_trips_through_the_allow_list(tmp_path: Path):
    """fp16 needs a GPU, so its optimizer files cannot be written here; their loss scaler can."""
    from deepspeed.runtime.fp16.loss_scaler import CreateLossScaler

    dynamic = {"init_scale": 2**16, "scale_window": 1000, "min_scale": 1, "delayed_shift": 2}
    scaler = CreateLossScaler(torch.half, 0, True, {**dynamic, "consecutive_hysteresis": False})
    assert type(scaler).__name__ == "DynamicLossScaler"
    torch.save({"loss_scaler": scaler}, tmp_path / "optim_states.pt")
    loaded = load_without_code(tmp_path / "optim_states.pt", deepspeed_checkpoint_globals())
    assert vars(loaded["loss_scaler"]) == vars(scaler)
