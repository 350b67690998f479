"""Two queued DVC experiments run by two workers log to one sqlite store without failing.

A tiny DVC project (one stage that logs through `bertforge.tracking.stage_run`) in a temp git
repo, with no MLflow store yet: `dvc exp run --queue -S ...` twice, `dvc queue start -j 2`.
Both workers then open a new store at once, which without `store_creation_lock` fails with
"table ... already exists" / a half-migrated schema, and write runs concurrently (sqlite busy
timeout). The store is the default one at the repo root, reached from inside the experiments'
temporary copies under .dvc/tmp/exps.
"""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import mlflow
import pytest

from bertforge.tracking import TAG_PREFIX
from tests.support import stage_env

pytestmark = pytest.mark.slow

STEPS = 150

STAGE_SCRIPT = '''\
"""A stage that logs through bertforge.tracking: many small writes, an artifact, a summary."""
import json
from pathlib import Path

import yaml

from bertforge.tracking import stage_run

params = yaml.safe_load(Path("params.yaml").read_text())["train"]
final = 1.0 / (params["steps"] + params["lr"])
Path("metrics.json").write_text(json.dumps({"final_loss": final}))
with stage_run("train", params, inputs={"data": Path("data.txt")}) as run:
    for step in range(params["steps"]):
        run.log_metrics({"loss": 1.0 / (step + 1 + params["lr"])}, step=step)
    run.log_artifact(Path("metrics.json"))
    run.log_pipeline_metrics({"final_loss": final})
'''

DVC_YAML = """\
stages:
  train:
    cmd: python train.py
    deps: [train.py, data.txt]
    params: [train]
    metrics:
      - metrics.json:
          cache: false
"""


def run(project: Path, *command: str, timeout: float = 300) -> str:
    env = stage_env() | {"DVC_NO_ANALYTICS": "1"}
    env.pop("MLFLOW_TRACKING_URI", None)
    result = subprocess.run(
        command, cwd=project, env=env, capture_output=True, text=True, timeout=timeout
    )
    assert result.returncode == 0, f"{command}: {result.stdout}{result.stderr}"
    return result.stdout + result.stderr


def make_project(project: Path) -> Path:
    project.mkdir()
    (project / "train.py").write_text(STAGE_SCRIPT)
    (project / "params.yaml").write_text(f"train:\n  lr: 1\n  steps: {STEPS}\n")
    (project / "data.txt").write_text("data\n")
    (project / "dvc.yaml").write_text(DVC_YAML)
    (project / ".gitignore").write_text("/mlflow.db\n/mlartifacts/\n")
    git = ["git", "-c", "user.name=test", "-c", "user.email=test@example.com"]
    run(project, *git, "init", "-q")
    run(project, "dvc", "init", "-q")
    run(project, *git, "add", "-A")
    run(project, *git, "commit", "-q", "-m", "tiny project")
    return project


def queue_states(project: Path) -> dict[str, str]:
    """Experiment name → status, from `dvc queue status`."""
    lines = run(project, "dvc", "queue", "status").splitlines()
    states = {}
    for line in lines[1:]:
        fields = line.split()
        if len(fields) >= 4 and fields[-1] in {"Queued", "Running", "Success", "Failed"}:
            states[fields[1]] = fields[-1]
    return states


def test_two_queued_experiments_with_two_workers_log_to_one_sqlite_store(tmp_path):
    project = make_project(tmp_path / "project")
    run(project, "dvc", "exp", "run", "--queue", "-S", "train.lr=2")
    run(project, "dvc", "exp", "run", "--queue", "-S", "train.lr=3")
    try:
        run(project, "dvc", "queue", "start", "-j", "2")
        deadline = time.monotonic() + 600
        states = queue_states(project)
        while any(state in {"Queued", "Running"} for state in states.values()):
            assert time.monotonic() < deadline, states
            time.sleep(2)
            states = queue_states(project)
    finally:
        subprocess.run(
            ["dvc", "queue", "stop"], cwd=project, env=stage_env(), capture_output=True, timeout=120
        )
    logs = {name: run(project, "dvc", "queue", "logs", name) for name in states}
    assert len(states) == 2
    for name, state in states.items():
        assert state == "Success", logs[name][-3000:]
        assert "database is locked" not in logs[name]

    store = project / "mlflow.db"
    assert store.is_file()
    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{store}")
    experiment = client.get_experiment_by_name("bertforge")
    assert experiment.artifact_location == (project / "mlartifacts").as_uri()
    stage_runs = client.search_runs(
        [experiment.experiment_id], f"tags.`{TAG_PREFIX}kind` = 'stage'"
    )
    assert sorted(r.data.params["train.lr"] for r in stage_runs) == ["2", "3"]
    for stage in stage_runs:
        assert stage.info.status == "FINISHED"
        assert stage.data.tags[f"{TAG_PREFIX}dvc_exp_name"] in states
        assert len(client.get_metric_history(stage.info.run_id, "loss")) == STEPS
        artifact = Path(stage.info.artifact_uri.removeprefix("file://")) / "metrics.json"
        assert artifact.is_relative_to(project / "mlartifacts") and artifact.is_file()
        pipeline = client.get_run(stage.data.tags["mlflow.parentRunId"])
        assert pipeline.info.run_name == stage.data.tags[f"{TAG_PREFIX}dvc_exp_name"]
        assert pipeline.data.params["train.lr"] == stage.data.params["train.lr"]
        expected = json.loads(artifact.read_text())["final_loss"]
        assert pipeline.data.metrics["final_loss"] == pytest.approx(expected)
