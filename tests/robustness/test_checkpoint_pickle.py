"""A checkpoint file holding an object whose unpickling would run code: the pretrain stage's
resume refuses it in one line naming the file (exit 2), runs nothing, and leaves the
checkpoints, the export and the metrics as they were."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tests.factories import make_pretrain_project
from tests.robustness.support import snapshot
from tests.support import REPO_ROOT, stage_env

STAGE = REPO_ROOT / "stages/pretrain.py"

pytestmark = pytest.mark.slow  # two pretrain runs of a tiny model (about 30 s)


class RunsCode:
    """Unpickling this creates the folder `marker`: the proof that code in the file ran."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.mkdir, (str(self.marker),))


def run_pretrain(root: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(STAGE)],
        cwd=root,
        env=stage_env() | {"OMP_NUM_THREADS": "1"},
        capture_output=True,
        text=True,
        timeout=600,
    )


def test_resume_refuses_a_checkpoint_file_that_would_run_code(tmp_path: Path):
    root = make_pretrain_project(tmp_path / "project")
    first = run_pretrain(root)
    assert first.returncode == 0, first.stderr[-4000:]
    checkpoints = root / "data/pretrained/checkpoints"
    latest = checkpoints / (checkpoints / "latest").read_text(encoding="utf-8")
    (optimizer_file,) = latest.glob("zero_pp_rank_0_*optim_states.pt")
    marker = tmp_path / "code-ran"
    torch.save({"optimizer_state_dict": RunsCode(marker)}, optimizer_file)
    before = snapshot(root)

    result = run_pretrain(root)  # a re-run resumes the finished run's last checkpoint
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert result.returncode == 2, result.stderr[-4000:]
    assert errors == [
        f"error: {optimizer_file.relative_to(root)}: refused to load: it holds posix.mkdir, "
        "which no checkpoint of this project holds (unpickling it could run code); delete the "
        "checkpoint folder, or restore it from a copy you trust"
    ]
    assert not marker.exists()
    assert snapshot(root) == before  # checkpoints, export and metrics untouched
