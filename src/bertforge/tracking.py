"""MLflow tracking shared by every stage: where runs go, how they are grouped, what they carry.

* The store is ``sqlite:///<repo root>/mlflow.db`` unless ``MLFLOW_TRACKING_URI`` says otherwise.
  The repo root is found from the working directory; inside a ``dvc exp run`` temporary copy
  (``<repo>/.dvc/tmp/exps/<tmp>``) it is the outer repo, so experiments log to the same store.
* One pipeline run groups the stage runs of one (git commit, params.yaml) pair: stages start
  as children of a parent run tagged ``bertforge.pipeline_id``, which is created on first use.
* Every stage run carries its flattened params, the git commit and dirty flag, the DVC
  experiment name if any, and a content hash of each input as tags (its lineage).
* Only rank 0 of a multi-process job logs; other ranks get a run object that does nothing.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from bertforge.io import hash_path
from bertforge.params import PARAMS_FILE, flatten

EXPERIMENT_NAME = "bertforge"
TAG_PREFIX = "bertforge."


def repo_root(start: Path | None = None) -> Path:
    """The project root: the nearest ancestor with a ``.dvc`` directory, outside any exp copy."""
    path = Path(start or Path.cwd()).resolve()
    parts = path.parts
    for index in range(len(parts) - 3):
        if parts[index : index + 3] == (".dvc", "tmp", "exps"):
            return Path(*parts[:index])
    for candidate in (path, *path.parents):
        if (candidate / ".dvc").is_dir():
            return candidate
    return path


def tracking_uri() -> str:
    """``MLFLOW_TRACKING_URI`` if set, else an absolute sqlite store at the repo root."""
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{repo_root() / 'mlflow.db'}"


def is_rank_zero() -> bool:
    return int(os.environ.get("RANK", "0")) == 0


def git_state(root: Path | None = None) -> dict[str, str]:
    """The checked-out commit and whether tracked files differ from it."""
    root = root or Path.cwd()

    def git(*args: str) -> str:
        result = subprocess.run(
            ["git", *args], cwd=root, capture_output=True, text=True, check=False
        )
        return result.stdout.strip() if result.returncode == 0 else ""

    commit = git("rev-parse", "HEAD") or "unknown"
    dirty = bool(git("status", "--porcelain", "--untracked-files=no"))
    return {"git_commit": commit, "git_dirty": str(dirty).lower()}


def params_digest(path: Path = PARAMS_FILE) -> str:
    """Short sha256 of the params file's bytes: same params, same digest."""
    data = Path(path).read_bytes() if Path(path).exists() else b""
    return hashlib.sha256(data).hexdigest()[:16]


def lineage_tags(inputs: Mapping[str, Path]) -> dict[str, str]:
    """Tags that say what a run was made from: code version, params, and input content."""
    tags = {f"{TAG_PREFIX}{key}": value for key, value in git_state().items()}
    tags[f"{TAG_PREFIX}params_digest"] = params_digest()
    exp_name = os.environ.get("DVC_EXP_NAME")
    if exp_name:
        tags[f"{TAG_PREFIX}dvc_exp_name"] = exp_name
    for name, path in sorted(inputs.items()):
        tags[f"{TAG_PREFIX}input.{name}"] = hash_path(Path(path)) if Path(path).exists() else "missing"
    return tags


class StageRun:
    """A thin handle on the active MLflow run; every method is a no-op off rank 0."""

    def __init__(self, run_id: str | None) -> None:
        self.run_id = run_id

    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        if self.run_id is None:
            return
        import mlflow

        numeric = {k: float(v) for k, v in metrics.items() if isinstance(v, int | float)}
        mlflow.log_metrics(numeric, step=step)

    def log_artifact(self, path: Path, artifact_path: str | None = None) -> None:
        if self.run_id is None:
            return
        import mlflow

        if Path(path).is_dir():
            mlflow.log_artifacts(str(path), artifact_path=artifact_path)
        else:
            mlflow.log_artifact(str(path), artifact_path=artifact_path)

    def set_tags(self, tags: Mapping[str, str]) -> None:
        if self.run_id is None:
            return
        import mlflow

        mlflow.set_tags(dict(tags))


def _pipeline_parent_run(client: Any, experiment_id: str, pipeline_id: str) -> str:
    """The id of the parent run that groups this pipeline's stage runs, created on first use."""
    found = client.search_runs(
        [experiment_id],
        filter_string=f"tags.`{TAG_PREFIX}pipeline_id` = '{pipeline_id}' "
        f"and tags.`{TAG_PREFIX}kind` = 'pipeline'",
        max_results=1,
    )
    if found:
        return found[0].info.run_id
    tags = {f"{TAG_PREFIX}pipeline_id": pipeline_id, f"{TAG_PREFIX}kind": "pipeline"}
    run = client.create_run(experiment_id, tags=tags, run_name=f"pipeline-{pipeline_id[:8]}")
    client.set_terminated(run.info.run_id)
    return run.info.run_id


@contextmanager
def stage_run(
    stage: str,
    params: Any,
    inputs: Mapping[str, Path] | None = None,
    *,
    run_name: str | None = None,
    tags: Mapping[str, str] | None = None,
) -> Iterator[StageRun]:
    """Track one stage execution as an MLflow run, nested under its pipeline run."""
    if not is_rank_zero():
        yield StageRun(None)
        return
    import mlflow

    mlflow.set_tracking_uri(tracking_uri())
    experiment = mlflow.set_experiment(EXPERIMENT_NAME)
    all_tags = lineage_tags(inputs or {})
    pipeline_id = hashlib.sha256(
        (all_tags[f"{TAG_PREFIX}git_commit"] + all_tags[f"{TAG_PREFIX}params_digest"]).encode()
    ).hexdigest()[:16]
    all_tags[f"{TAG_PREFIX}pipeline_id"] = pipeline_id
    all_tags[f"{TAG_PREFIX}stage"] = stage
    all_tags[f"{TAG_PREFIX}kind"] = "stage"
    all_tags.update(tags or {})
    client = mlflow.MlflowClient()
    parent_id = _pipeline_parent_run(client, experiment.experiment_id, pipeline_id)
    with mlflow.start_run(
        run_name=run_name or stage,
        tags=all_tags,
        parent_run_id=parent_id,
        log_system_metrics=False,
    ) as run:
        flat = {f"{stage}.{key}": value for key, value in flatten(params).items()}
        if flat:
            mlflow.log_params({key: str(value)[:6000] for key, value in flat.items()})
        yield StageRun(run.info.run_id)
