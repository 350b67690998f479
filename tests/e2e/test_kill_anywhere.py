"""Kill anywhere, recover: SIGKILL `dvc repro` at moments inside each stage, then repro again.

One uninterrupted `dvc repro pretrain` on the tiny params (two pretrain processes), run
meanwhile, is the reference. A second copy of the project is killed (the whole process group,
SIGKILL) at one moment after another — ingest writing its shards, vocab starting, examples
writing, pretrain starting up, its ranks initialising DeepSpeed, mid-training after a
checkpoint, and while it exports — each time by a fresh `dvc repro pretrain`. After every kill
no half-written output is visible (each output is absent or complete), and a last `dvc repro
pretrain` completes with outputs byte-identical to the reference, no staging debris, and no
MLflow run left RUNNING.
"""

from __future__ import annotations

import contextlib
import functools
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO

import mlflow
import psutil
import pytest
import yaml

from bertforge.io import hash_path
from tests.support import REPO_ROOT, copy_project, stage_env

pytestmark = pytest.mark.slow

TINY_PARAMS = REPO_ROOT / "tests/fixtures/params-tiny.yaml"
OUTPUTS = ("data/ingested", "data/tokenizer", "data/examples", "data/pretrained/model")
KILL_WAIT_S = 600  # the longest a moment may take to come


def make_project(root: Path) -> Path:
    project = copy_project(root)
    params = yaml.safe_load(TINY_PARAMS.read_text(encoding="utf-8"))
    params["pretrain"] |= {"processes": 2, "micro_batch_size": 8, "checkpoint_every": 4}
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    return project


def repro(project: Path, log: IO[str] | None = None) -> subprocess.Popen:
    """`dvc repro pretrain` in `project`, its output piped (or into `log`, for a run that
    nobody reads until it ends: a full pipe would stall it)."""
    env = stage_env() | {"DVC_NO_ANALYTICS": "1", "OMP_NUM_THREADS": "1"}
    env.pop("MLFLOW_TRACKING_URI", None)  # the project's own store, <copy>/mlflow.db
    return subprocess.Popen(
        ["dvc", "repro", "pretrain"],
        cwd=project,
        env=env,
        start_new_session=True,
        stdout=log or subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def finish(job: subprocess.Popen, log: Path | None = None) -> str:
    output, _ = job.communicate(timeout=KILL_WAIT_S)
    if log is not None:
        output = log.read_text(encoding="utf-8")
    assert job.returncode == 0, output[-4000:]
    return output


def staging(project: Path, name: str) -> bool:
    """A stage is writing `name` (its ``.<name>.tmp-<pid>`` staging folder exists; pretrain's
    exists from its start, and is exporting once files appear in it)."""
    try:
        return any(project.glob(f"data/**/.{name}.tmp-*"))
    except FileNotFoundError:  # a folder was renamed into place while being listed: look again
        return False


def stage_started(project: Path, job: subprocess.Popen, stage: str) -> bool:
    """`stage`'s own process is running (its script is on a command line)."""
    return any(f"stages/{stage}.py" in " ".join(p.cmdline()) for p in processes(job))


def ranks_started(project: Path, job: subprocess.Popen) -> bool:
    """pretrain's ranks exist: they are joining the job and initialising DeepSpeed."""
    return any("RANK" in p.environ() for p in processes(job) if "pretrain" in " ".join(p.cmdline()))


@functools.cache
def last_checkpoint(project: Path) -> str:
    """The name of the checkpoint of the last step (`make_project`'s params, read once)."""
    params = yaml.safe_load((project / "params.yaml").read_text(encoding="utf-8"))
    return f"step-{params['pretrain']['max_steps']:08d}"


def training_done(project: Path, job: subprocess.Popen) -> bool:
    """The last step's checkpoint is saved: the ranks evaluate on the held-out split and export.

    (Files appearing in the export's staging folder would be a window of milliseconds; this one
    spans the final evaluation and the export, so the kill lands in it on any machine.)
    """
    marker = project / "data/pretrained/checkpoints/latest"
    try:
        return marker.read_text().strip() == last_checkpoint(project)
    except FileNotFoundError:
        return False


def processes(job: subprocess.Popen) -> list[psutil.Process]:
    try:
        return psutil.Process(job.pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return []


MOMENTS: dict[str, Callable[[Path, subprocess.Popen], bool]] = {
    "ingest writing": lambda project, job: staging(project, "ingested"),
    "vocab starting": lambda project, job: stage_started(project, job, "vocab"),
    "examples writing": lambda project, job: staging(project, "examples"),
    "pretrain starting": lambda project, job: stage_started(project, job, "pretrain"),
    "DeepSpeed initialising": ranks_started,
    "mid-training": lambda project, job: (project / "data/pretrained/checkpoints/latest").exists(),
    "evaluating and exporting": training_done,
}
# seconds between looks: the staging folders of ingest and examples exist for a fraction of a
# second (0.24 and 0.15 s on a 2-core VM), the other moments for seconds; each look lists the
# process tree, so looking less often leaves the cores to the run it waits for
POLL_S = {"ingest writing": 0.01, "examples writing": 0.01}
DEFAULT_POLL_S = 0.05


def kill_at(project: Path, moment: str) -> None:
    """Start `dvc repro pretrain`, SIGKILL all of it the moment `moment` comes."""
    job = repro(project)
    deadline = time.monotonic() + KILL_WAIT_S
    try:
        while not MOMENTS[moment](project, job):
            assert job.poll() is None, f"the run ended before '{moment}'"
            assert time.monotonic() < deadline, f"'{moment}' never came"
            time.sleep(POLL_S.get(moment, DEFAULT_POLL_S))
    except psutil.Error:
        pass  # a process ended while being looked at: the moment is near enough
    finally:
        with contextlib.suppress(ProcessLookupError):  # it may have ended on its own by now
            os.killpg(job.pid, signal.SIGKILL)
        job.communicate()


def test_killed_at_any_moment_the_next_repro_completes_with_identical_outputs(tmp_path):
    # the uninterrupted reference runs beside the kills (it fills the cores they leave idle)
    reference = make_project(tmp_path / "reference")
    reference_log = tmp_path / "reference.log"
    with reference_log.open("w", encoding="utf-8") as log:  # the child keeps its own copy
        reference_run = repro(reference, log)

    project = make_project(tmp_path / "killed")
    after_kill = {}
    for moment in MOMENTS:
        kill_at(project, moment)
        after_kill[moment] = {
            output: hash_path(project / output) if (project / output).exists() else None
            for output in OUTPUTS
        }

    finish(reference_run, reference_log)
    expected = {output: hash_path(reference / output) for output in OUTPUTS}
    for moment, found in after_kill.items():  # absent or complete, never half-written
        for output, digest in found.items():
            assert digest in (None, expected[output]), (moment, output)
    finish(repro(project))
    assert {output: hash_path(project / output) for output in OUTPUTS} == expected
    debris = [p for p in (*project.glob("data/**/.*.tmp-*"), *project.glob("metrics/.*.tmp-*"))]
    assert debris == []
    client = mlflow.MlflowClient(f"sqlite:///{project / 'mlflow.db'}")
    runs = client.search_runs([client.get_experiment_by_name("bertforge").experiment_id])
    statuses = {run.info.status for run in runs}
    assert "RUNNING" not in statuses and "KILLED" in statuses
    shutil.rmtree(reference)
