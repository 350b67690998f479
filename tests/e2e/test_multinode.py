"""Several machines, rehearsed on one: two torchrun launchers on 127.0.0.1 as two "nodes" of one
CPU process each (c10d rendezvous, gloo) train the same weights, byte for byte, as one launcher
with two processes; a rank whose peers never come stops within pretrain.rendezvous_timeout_s.

The fixture project is tests.factories' pretrain project (hidden size 32, 2 layers), 4 steps.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bertforge.pretrain.launch import free_port
from tests.e2e.test_pretrain_stage import (
    STAGE,
    assert_succeeded,
    run_pretrain,
    stage_environment,
)
from tests.factories import make_pretrain_project, stage_error_lines, write_pretrain_params

pytestmark = pytest.mark.slow

SHORT_RUN = {"processes": 2, "max_steps": 4, "checkpoint_every": 4, "log_every": 2}
TORCHRUN = Path(sys.executable).with_name("torchrun")
WEIGHTS = Path("data/pretrained/model/model.safetensors")
WAITING = re.compile(r"pretrain: rank (?P<rank>\d) waiting up to 300 s for 2 ranks at [\w.-]+:\d+")


def torchrun_node(root: Path, store: Path, endpoint: str) -> subprocess.Popen:
    """One "machine": torchrun with one CPU process, joining a two-node job at `endpoint`."""
    return subprocess.Popen(
        [
            str(TORCHRUN),
            "--nnodes=2",
            "--nproc-per-node=1",
            "--rdzv-backend=c10d",
            f"--rdzv-endpoint={endpoint}",
            "--rdzv-id=bertforge-test",
            str(STAGE),
        ],
        cwd=root,
        env=stage_environment(store),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_two_torchrun_nodes_train_the_weights_of_one_two_process_launcher(
    tmp_path: Path,
) -> None:
    store = tmp_path / "mlflow.db"
    single = make_pretrain_project(tmp_path / "single", **SHORT_RUN)
    nodes = tmp_path / "nodes"
    shutil.copytree(single, nodes)
    assert_succeeded(run_pretrain(single, store))

    endpoint = f"127.0.0.1:{free_port()}"
    launchers = [torchrun_node(nodes, store, endpoint) for _ in range(2)]
    outputs = []
    for launcher in launchers:
        try:
            outputs.append(launcher.communicate(timeout=180))
        finally:
            if launcher.poll() is None:
                launcher.kill()
    for launcher, (_, stderr) in zip(launchers, outputs, strict=True):
        assert launcher.returncode == 0, stderr[-4000:]
    # each node said what it waits for and where (c10d, not the order of starting, sets ranks)
    waits = [WAITING.fullmatch(line) for _, err in outputs for line in err.splitlines()]
    assert sorted(match["rank"] for match in waits if match) == ["0", "1"]
    assert (nodes / WEIGHTS).read_bytes() == (single / WEIGHTS).read_bytes()


def test_a_rank_whose_peers_never_join_stops_within_the_rendezvous_timeout(
    tmp_path: Path,
) -> None:
    root = make_pretrain_project(tmp_path / "alone", **SHORT_RUN)
    write_pretrain_params(root, **SHORT_RUN, rendezvous_timeout_s=2)
    env = stage_environment(tmp_path / "mlflow.db")
    # rank 1 of 2 on a "second machine": rank 0, which would host the store, never starts
    env.update(RANK="1", LOCAL_RANK="0", WORLD_SIZE="2", LOCAL_WORLD_SIZE="1")
    env.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(free_port()))
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, str(STAGE)], cwd=root, env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 2, result.stderr[-4000:]
    [line] = stage_error_lines(result)
    assert line.startswith(
        f"error: pretrain: rank 1 could not join the 2 ranks of the job at "
        f"127.0.0.1:{env['MASTER_PORT']} within 2 s (pretrain.rendezvous_timeout_s): "
    )
    assert time.monotonic() - started < 60
    assert not (root / WEIGHTS).exists()
