import os
import time

import mlflow
import pytest

from bertforge.tracking import TAG_PREFIX, repo_root, stage_run, tracking_uri


def test_repo_root_inside_a_dvc_experiment_copy_is_the_outer_repo(tmp_path):
    (tmp_path / ".dvc").mkdir()
    inner = tmp_path / ".dvc" / "tmp" / "exps" / "tmpabc123" / "stages"
    inner.mkdir(parents=True)
    (inner.parent / ".dvc").mkdir()
    assert repo_root(inner) == tmp_path
    assert repo_root(tmp_path / ".dvc" / "tmp") == tmp_path


def test_default_store_is_an_absolute_sqlite_file_at_the_repo_root(tmp_path, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI")
    (tmp_path / ".dvc").mkdir()
    (tmp_path / "sub").mkdir()
    monkeypatch.chdir(tmp_path / "sub")
    assert tracking_uri() == f"sqlite:///{tmp_path.resolve()}/mlflow.db"


def test_stage_runs_of_one_pipeline_share_a_parent_and_carry_lineage(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "params.yaml").write_text("a: 1\n")
    (tmp_path / "input.txt").write_text("data")
    with stage_run("first", {"x": 1}, inputs={"corpus": tmp_path / "input.txt"}) as run:
        run.log_metrics({"documents": 3})
    with stage_run("second", {"y": [1, 2]}) as run:
        run.log_metrics({"tokens": 10})
    client = mlflow.MlflowClient()
    runs = client.search_runs(
        [mlflow.get_experiment_by_name("bertforge").experiment_id],
        filter_string=f"tags.`{TAG_PREFIX}kind` = 'stage'",
    )
    assert {r.data.tags[f"{TAG_PREFIX}stage"] for r in runs} == {"first", "second"}
    parents = {r.data.tags["mlflow.parentRunId"] for r in runs}
    assert len(parents) == 1
    first = next(r for r in runs if r.data.tags[f"{TAG_PREFIX}stage"] == "first")
    assert first.data.params["first.x"] == "1"
    assert first.data.metrics["documents"] == 3
    assert len(first.data.tags[f"{TAG_PREFIX}input.corpus"]) == 64
    assert f"{TAG_PREFIX}git_commit" in first.data.tags
    assert first.info.status == "FINISHED"


def test_other_ranks_do_not_log(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("RANK", "1")
    with stage_run("ranked", {"x": 1}) as run:
        assert run.run_id is None
        run.log_metrics({"loss": 1.0})


def test_system_metrics_are_sampled_when_a_stage_asks_and_only_then(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "params.yaml").write_text("a: 1\n")
    monkeypatch.setenv("MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL", "1")
    monkeypatch.setenv("MLFLOW_SYSTEM_METRICS_SAMPLES_BEFORE_LOGGING", "1")
    with stage_run("long", {"x": 1}, system_metrics=True) as run:
        time.sleep(3.5)
    with stage_run("short", {"x": 1}) as quiet:
        time.sleep(1.5)
    client = mlflow.MlflowClient()
    sampled = client.get_run(run.run_id).data.metrics
    assert "system/cpu_utilization_percentage" in sampled
    assert "system/system_memory_usage_megabytes" in sampled
    assert not any(key.startswith("system/") for key in client.get_run(quiet.run_id).data.metrics)


SLEEPING_STAGE = """
import sys, time
from bertforge.tracking import stage_run
with stage_run("sleepy", {"x": 1}):
    print("running", flush=True)
    time.sleep(120)
"""


def start_sleeping_stage(cwd):
    import subprocess
    import sys

    job = subprocess.Popen(
        [sys.executable, "-c", SLEEPING_STAGE], cwd=cwd, stdout=subprocess.PIPE, text=True
    )
    assert job.stdout.readline().strip() == "running"
    return job


def stage_run_statuses() -> dict[str, str]:
    mlflow.set_tracking_uri(tracking_uri())
    client = mlflow.MlflowClient()
    runs = client.search_runs(
        [mlflow.get_experiment_by_name("bertforge").experiment_id],
        filter_string=f"tags.`{TAG_PREFIX}kind` = 'stage'",
    )
    return {run.data.tags[f"{TAG_PREFIX}stage"]: run.info.status for run in runs}


@pytest.mark.slow
def test_a_stage_stopped_by_sigterm_ends_its_run_as_killed(tmp_path, monkeypatch):
    import signal

    monkeypatch.chdir(tmp_path)
    job = start_sleeping_stage(tmp_path)
    job.send_signal(signal.SIGTERM)
    assert job.wait(timeout=60) == 128 + signal.SIGTERM
    assert stage_run_statuses() == {"sleepy": "KILLED"}


@pytest.mark.slow
def test_a_run_left_running_by_a_killed_process_is_marked_killed_by_the_next_stage(
    tmp_path, monkeypatch
):
    import signal

    from bertforge.tracking import PROCESS_TAG, process_identity

    monkeypatch.chdir(tmp_path)
    job = start_sleeping_stage(tmp_path)
    job.send_signal(signal.SIGKILL)
    job.wait(timeout=60)
    assert stage_run_statuses() == {"sleepy": "RUNNING"}
    client = mlflow.MlflowClient()
    experiment_id = mlflow.get_experiment_by_name("bertforge").experiment_id
    alive = client.create_run(  # a stage of a live process (this one): left alone
        experiment_id,
        tags={f"{TAG_PREFIX}kind": "stage", f"{TAG_PREFIX}stage": "alive"},
    )
    client.set_tag(alive.info.run_id, PROCESS_TAG, process_identity())
    with stage_run("next", {"x": 2}):
        pass
    assert stage_run_statuses() == {"sleepy": "KILLED", "alive": "RUNNING", "next": "FINISHED"}


def test_waiting_for_another_process_creating_the_store_is_bounded(tmp_path, monkeypatch):
    import fcntl
    import hashlib
    import tempfile
    from pathlib import Path

    from bertforge import tracking
    from bertforge.errors import BertforgeError

    database = (tmp_path / "mlflow.db").resolve()
    uri = f"sqlite:///{database}"
    key = hashlib.sha256(str(database).encode()).hexdigest()[:16]
    lock_path = Path(tempfile.gettempdir()) / f"bertforge-mlflow-{key}.lock"
    monkeypatch.setattr(tracking, "STORE_LOCK_TIMEOUT_S", 0.5)
    with open(lock_path, "a") as holder:
        fcntl.flock(holder, fcntl.LOCK_EX)  # another process creating the store, stuck
        with (
            pytest.raises(BertforgeError, match=f"{lock_path}: waited 0.5 s .* {database}"),
            tracking.store_creation_lock(uri),
        ):
            pass


def test_a_git_that_hangs_costs_the_commit_tag_not_the_run(tmp_path, monkeypatch, capsys):
    """git_state waits at most GIT_TIMEOUT_S for git and says what it gave up on."""
    import bertforge.tracking as tracking

    hanging_git = tmp_path / "bin" / "git"
    hanging_git.parent.mkdir()
    hanging_git.write_text("#!/bin/sh\nsleep 30\n")
    hanging_git.chmod(0o755)
    monkeypatch.setenv("PATH", f"{hanging_git.parent}:{os.environ['PATH']}")
    monkeypatch.setattr(tracking, "GIT_TIMEOUT_S", 0.5)
    start = time.monotonic()
    state = tracking.git_state(tmp_path)
    assert time.monotonic() - start < 5
    assert state == {"git_commit": "unknown", "git_dirty": "false"}
    assert "git rev-parse HEAD gave no answer" in capsys.readouterr().out
