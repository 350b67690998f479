"""Kill and resume on a CUDA device: a bf16 run killed after its first checkpoint and started
again resumes from it and ends where an uninterrupted run ends.

The GPU counterpart of tests/e2e/test_pretrain_stage.py's
test_resume_after_kill_gives_identical_weights, and the check of what only a GPU run must
restore: the CUDA generator (dropout) and DeepSpeed's bf16 optimizer (fp32 master weights beside
the bf16 ones). Skipped where there is no CUDA device (`pytest -m gpu` selects it on a GPU
machine). Each run is a subprocess, since a kill takes a whole process:
tests/gpu/resume_runner.py, the stage's own `pretrain` in a DeepSpeed job of one rank (NCCL),
not stages/pretrain.py, which logs to MLflow (the GPU machine has none). The fixture project and
model (dropout 0.1), bf16, ZeRO-2, 24 steps, a checkpoint every 8, a log row every 4.

Tolerances, stated once. CUDA promises no bitwise repeat: the model's gather backward and its
NLLLoss are among the operations torch.use_deterministic_algorithms lists as nondeterministic
on CUDA, and bf16 turns a last-bit difference into one of 1 in 256 that later steps compound.
So step, learning rate and skipped-step count must be equal; the log's losses, gradient norms
and accuracies after step 8 within 2% relative, as in tests/gpu/test_pretrain_cuda.py
(accuracies also 2 points absolute: one NSP answer of the 64 in a row is 1.6); the exported
fp32 weights within 2% relative plus 2e-3 absolute, the learning rate, about the most Adam
moves a weight in one step. Measured on an H200 (torch 2.11, DeepSpeed 0.19.8): a second
uninterrupted run and the resumed run were bitwise equal to the first; resumes made to skip
restoring the CUDA generator, the optimizer's moments or the data position left 626, 7339 and
942 of the 24739 weights outside this tolerance, with their losses within 0.3%: the weights are
the comparison that catches a resume that restores too little.

BERTFORGE_GPU_TESTS_ON_CPU=1 runs this module on a CPU machine, in fp32 over gloo (the stage
refuses bf16 on CPU), to rehearse its plumbing before a GPU session:
``BERTFORGE_GPU_TESTS_ON_CPU=1 pytest -m gpu tests/gpu/test_pretrain_resume_cuda.py`` (under a
minute on 2 cores). There the resume is bitwise that of the uninterrupted run, and is held to it.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from tests.factories import make_pretrain_project
from tests.support import REPO_ROOT, stage_env

CUDA = torch.cuda.is_available()
ON_CPU = os.environ.get("BERTFORGE_GPU_TESTS_ON_CPU") == "1"

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not (CUDA or ON_CPU), reason="needs a CUDA device"),
]

RUN = {  # the fixture's model keeps dropout: the resume must restore the CUDA generator too
    "precision": "bf16" if CUDA else "fp32",
    "zero_stage": 2,
    "max_steps": 24,
    "checkpoint_every": 8,
    "log_every": 4,
}
# the module docstring's tolerances; on CPU (the rehearsal) bitwise
LOG_RTOL, ACCURACY_ATOL, WEIGHTS_RTOL, WEIGHTS_ATOL = (2e-2, 2e-2, 2e-2, 2e-3) if CUDA else (0,) * 4
EXACT_COLUMNS = ("step", "lr", "nonfinite_steps")
TIMING_COLUMNS = ("tokens_per_s", "mfu")  # differ run to run
RUNNER = [sys.executable, "-m", "tests.gpu.resume_runner"]
RUN_TIMEOUT_S = 600
FIRST_CHECKPOINT_TIMEOUT_S = 300


def runner_env() -> dict[str, str]:
    """The stage's environment, with the repository root on PYTHONPATH (the runner is a test
    module) before what is there (on the GPU machine: bertforge's src and its wheels)."""
    env = stage_env() | {"OMP_NUM_THREADS": "1"}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
    return env


def run_to_end(root: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        RUNNER,
        cwd=root,
        env=runner_env(),
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT_S,
    )


def assert_succeeded(result: subprocess.CompletedProcess) -> None:
    assert result.returncode == 0, result.stderr[-4000:]


def tail(output: Path) -> str:
    return output.read_text(encoding="utf-8")[-4000:]


def kill_at_first_checkpoint(root: Path, output: Path) -> None:
    """Start a run and SIGKILL its whole process group once `latest` names a checkpoint."""
    latest = root / "data/pretrained/checkpoints/latest"
    with open(output, "w", encoding="utf-8") as sink:  # a file: a pipe nobody reads can block it
        job = subprocess.Popen(
            RUNNER,
            cwd=root,
            env=runner_env(),
            start_new_session=True,
            stdout=sink,
            stderr=subprocess.STDOUT,
        )
    deadline = time.monotonic() + FIRST_CHECKPOINT_TIMEOUT_S
    try:
        while not latest.exists():  # (an assert's message is read only when it fails)
            assert job.poll() is None, f"it ended before its first checkpoint:\n{tail(output)}"
            assert time.monotonic() < deadline, (
                f"no checkpoint within {FIRST_CHECKPOINT_TIMEOUT_S} s:\n{tail(output)}"
            )
            time.sleep(0.005)
    finally:
        with contextlib.suppress(ProcessLookupError):  # it ended by itself (asserted above)
            os.killpg(job.pid, signal.SIGKILL)
        job.wait(timeout=60)


def training_log(root: Path) -> dict[str, np.ndarray]:
    """metrics/pretrain_log.tsv by column, without the timing columns."""
    rows = [
        line.split("\t")
        for line in (root / "metrics/pretrain_log.tsv").read_text(encoding="utf-8").splitlines()
    ]
    values = np.array([[float(value) for value in row] for row in rows[1:]])
    return {name: values[:, i] for i, name in enumerate(rows[0]) if name not in TIMING_COLUMNS}


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A run of the 24 steps without a kill: the reference."""
    root = make_pretrain_project(tmp_path_factory.mktemp("uninterrupted"), **RUN)
    assert_succeeded(run_to_end(root))
    return root


def test_resume_after_kill_ends_where_an_uninterrupted_run_ends(uninterrupted, tmp_path: Path):
    root = make_pretrain_project(tmp_path / "project", **RUN)
    kill_at_first_checkpoint(root, tmp_path / "killed.log")
    checkpoints = root / "data/pretrained/checkpoints"
    assert (checkpoints / "latest").read_text(encoding="utf-8") == "step-00000008"
    assert not (root / "data/pretrained/model").exists()

    resumed = run_to_end(root)
    assert_succeeded(resumed)
    assert "pretrain: resuming from data/pretrained/checkpoints/step-00000008 (step 8)" in (
        resumed.stderr
    )

    log, reference_log = training_log(root), training_log(uninterrupted)
    assert list(log["step"]) == list(reference_log["step"]) == [4, 8, 12, 16, 20, 24]
    after = log["step"] > 8  # the rows of the resumed run
    for name, values in log.items():
        resumed_values, reference_values = values[after], reference_log[name][after]
        if name in EXACT_COLUMNS:
            np.testing.assert_array_equal(resumed_values, reference_values, err_msg=name)
        else:
            atol = ACCURACY_ATOL if name.endswith("accuracy") else 0
            np.testing.assert_allclose(
                resumed_values, reference_values, rtol=LOG_RTOL, atol=atol, err_msg=name
            )
    assert log["loss"][-1] < log["loss"][0]  # it trained

    weights = load_file(root / "data/pretrained/model/model.safetensors")
    reference = load_file(uninterrupted / "data/pretrained/model/model.safetensors")
    assert weights.keys() == reference.keys()
    for name, tensor in weights.items():
        torch.testing.assert_close(
            tensor, reference[name], rtol=WEIGHTS_RTOL, atol=WEIGHTS_ATOL, msg=name
        )
