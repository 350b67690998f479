"""Leaving the job: after `stop_distributed` no process-group thread of the rank still runs.

A thread left running meets the interpreter's teardown, where it can abort a finished run
("terminate called without an active exception"; see `stop_distributed`). The job runs in a
subprocess: the test session's own one-rank job must stay up.
"""

from __future__ import annotations

import subprocess
import sys

from tests.support import stage_env

SCRIPT = """
import torch, deepspeed
from bertforge.pretrain.engine import process_group_threads, start_distributed, stop_distributed
start_distributed(30)
print("joined", process_group_threads())
model = torch.nn.Linear(4, 4)
engine = deepspeed.initialize(
    model=model,
    optimizer=torch.optim.AdamW(model.parameters()),
    config={"train_batch_size": 1, "zero_optimization": {"stage": 2},
            "zero_allow_untested_optimizer": True, "zero_force_ds_cpu_optimizer": False},
)[0]
engine.backward(engine(torch.ones(1, 4)).sum())
engine.step()
engine.destroy()
del engine, model
print("left", stop_distributed())
"""


def test_a_rank_that_ran_a_deepspeed_engine_leaves_no_process_group_thread_running():
    result = subprocess.run(
        [sys.executable, "-c", SCRIPT],
        # stage_env leaves out the session's job: this is a job of its own
        env=stage_env() | {"DS_ACCELERATOR": "cpu", "OMP_NUM_THREADS": "1"},
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    lines = result.stdout.splitlines()
    joined = next(line for line in lines if line.startswith("joined"))
    assert "pt_tcpstore_uv" in joined  # the probe sees the threads it is about
    # DeepSpeed's initialize imports torch.distributed.nn.functional, whose default arguments
    # hold the default group unless start_distributed imported it first
    assert "left []" in lines
