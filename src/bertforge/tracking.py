"""MLflow tracking shared by every stage: where runs go, how they are grouped, what they carry.

* The store is ``sqlite:///<repo root>/mlflow.db`` unless ``MLFLOW_TRACKING_URI`` says otherwise.
  The repo root is found from the working directory; inside a ``dvc exp run`` temporary copy
  (``<repo>/.dvc/tmp/exps/<tmp>``) it is the outer repo, so experiments log to the same store.
* Artifacts of a sqlite store go to ``mlartifacts`` next to its file (``<repo root>/mlartifacts``
  by default), set when the experiment is created, so a stage running inside a ``dvc exp run``
  copy never logs into the temporary copy.
* One pipeline run groups the stage runs of one (git commit, params.yaml) pair: stages start
  as children of a parent run tagged ``bertforge.pipeline_id``, which is created on first use
  with the whole flattened params.yaml as its params, so the MLflow UI can compare pipeline
  variants (e.g. ``dvc exp run -S ...``) side by side; stages add summary metrics to it with
  ``log_pipeline_metrics``.
* Several processes may log to one sqlite store at once (``dvc queue start -j 2``): the first
  opening of a store, which creates its tables, is serialized by a file lock
  (`store_creation_lock`, waited on for at most `STORE_LOCK_TIMEOUT_S`); after that MLflow's
  own sqlite busy timeout (20 s) queues writers, and a store still locked after it is one line.
* A stage run ends FINISHED, FAILED (an exception), or KILLED: SIGTERM and SIGINT end it as
  KILLED before the process exits, and a run left RUNNING by a process that is gone (SIGKILL,
  power loss) is marked KILLED when the next stage starts (`end_orphaned_runs`).
* Every stage run carries its flattened params, the git commit and dirty flag, the DVC
  experiment name if any, and a content hash of each input as tags (its lineage).
* Only rank 0 of a multi-process job logs; other ranks get a run object that does nothing.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import re
import signal
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from bertforge.errors import BertforgeError
from bertforge.io import hash_path
from bertforge.params import PARAMS_FILE, flatten, load_params

EXPERIMENT_NAME = "bertforge"
TAG_PREFIX = "bertforge."
INPUT_TAG_PREFIX = f"{TAG_PREFIX}input."
SYSTEM_METRICS_INTERVAL_S = 10
GIT_TIMEOUT_S = 30  # `git rev-parse` / `git status` answer in well under a second
STORE_LOCK_TIMEOUT_S = 300  # creating a store's tables takes seconds; minutes means it is stuck
PROCESS_TAG = f"{TAG_PREFIX}process"
PRETRAINED_WEIGHTS_TAG = f"{TAG_PREFIX}pretrained_weights_sha256"  # on the run that exported them
MLFLOW_KEY = re.compile(r"[\w\-/ ]+(\.[\w\-/ ]+)*")


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


def artifact_location(uri: str | None = None) -> str | None:
    """Where a new experiment keeps artifacts: ``mlartifacts`` next to a sqlite store's file.

    MLflow's default for a database store is ``./mlruns`` under the working directory, which
    inside a ``dvc exp run`` copy is deleted with the copy. Other stores (a tracking server, a
    file store) decide for themselves: None.
    """
    uri = uri or tracking_uri()
    if not uri.startswith("sqlite:///"):
        return None
    database = Path(uri.removeprefix("sqlite:///").split("?")[0])
    return (database.resolve().parent / "mlartifacts").as_uri()


def set_experiment() -> Any:
    """Point MLflow at the project's store and experiment, creating the experiment once.

    The first access to a new sqlite store creates its tables (MLflow's schema migrations);
    two processes doing that at once break each other ("table ... already exists", a
    half-migrated schema), so first access is serialized by `store_creation_lock`.
    """
    import mlflow
    from mlflow.exceptions import MlflowException

    uri = tracking_uri()
    mlflow.set_tracking_uri(uri)
    with store_creation_lock(uri):
        experiment = mlflow.get_experiment_by_name(EXPERIMENT_NAME)
    if experiment is None:
        try:
            mlflow.create_experiment(EXPERIMENT_NAME, artifact_location=artifact_location(uri))
        except MlflowException as error:
            if error.error_code != "RESOURCE_ALREADY_EXISTS":
                raise
    return mlflow.set_experiment(EXPERIMENT_NAME)


@contextmanager
def store_creation_lock(uri: str) -> Iterator[None]:
    """An exclusive lock per sqlite store file (in the temp dir), held while it is first opened.

    Other stores (a tracking server, another database) handle concurrency themselves.
    """
    if not uri.startswith("sqlite:///"):
        yield
        return
    database = Path(uri.removeprefix("sqlite:///").split("?")[0]).resolve()
    key = hashlib.sha256(str(database).encode()).hexdigest()[:16]
    lock_path = Path(tempfile.gettempdir()) / f"bertforge-mlflow-{key}.lock"
    with open(lock_path, "a") as handle:
        deadline = time.monotonic() + STORE_LOCK_TIMEOUT_S
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise BertforgeError(
                        f"{lock_path}: waited {STORE_LOCK_TIMEOUT_S} s for another process to "
                        f"finish creating the MLflow store {database}; stop it, or delete "
                        f"{database} if it was never used"
                    ) from None
                time.sleep(0.2)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


@contextmanager
def store_errors(uri: str) -> Iterator[None]:
    """A sqlite store still locked after MLflow's busy timeout (20 s) is one line, not a trace."""
    try:
        yield
    except Exception as error:
        if "database is locked" not in str(error):
            raise
        raise BertforgeError(
            f"{uri}: the MLflow store stayed locked by another process for MLflow's busy "
            "timeout (20 s); run the stages one at a time or use an MLflow server"
        ) from None


def process_identity(pid: int | None = None) -> str:
    """``host:pid:start`` of a process: its start time (Linux) tells a reused pid apart."""
    pid = os.getpid() if pid is None else pid
    try:
        start = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        start = "?"
    return f"{socket.gethostname()}:{pid}:{start}"


def process_is_gone(identity: str) -> bool:
    """True when the process `identity` names ran on this host and is no longer alive."""
    host, _, rest = identity.partition(":")
    pid, _, start = rest.partition(":")
    if host != socket.gethostname() or not pid.isdigit():
        return False  # another machine's process: it cannot be checked from here
    if start != "?":
        return process_identity(int(pid)) != identity
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


def end_orphaned_runs(client: Any, experiment_id: str) -> list[str]:
    """Mark KILLED the stage runs still RUNNING whose process on this host is gone."""
    found = client.search_runs(
        [experiment_id],
        filter_string=f"attributes.status = 'RUNNING' and tags.`{TAG_PREFIX}kind` = 'stage'",
        max_results=1000,
    )
    orphaned = [
        run.info.run_id for run in found if process_is_gone(run.data.tags.get(PROCESS_TAG, ""))
    ]
    for run_id in orphaned:
        client.set_terminated(run_id, status="KILLED")
    return orphaned


@contextmanager
def killed_on_signal() -> Iterator[None]:
    """End the active run as KILLED if SIGTERM or SIGINT stops the process, then exit as asked.

    The run is ended first; then SIGTERM exits with 128 + 15 and SIGINT raises
    KeyboardInterrupt, so that the stage's own clean-up (staging folders) still runs.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    import mlflow

    def on_signal(signum: int, _frame: Any) -> None:
        mlflow.end_run("KILLED")
        if signum == signal.SIGINT:
            raise KeyboardInterrupt
        raise SystemExit(128 + signum)

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def newest_run_tagged(key: str, value: str) -> str | None:
    """The newest FINISHED run of the project's experiment tagged `key` = `value`, or None.

    How content finds the run that made it (e.g. weights by their sha256), so that run ids
    never have to live in the DVC-tracked outputs themselves.
    """
    import mlflow

    experiment = set_experiment()
    found = mlflow.MlflowClient().search_runs(
        [experiment.experiment_id],
        filter_string=f"tags.`{key}` = '{value}' and attributes.status = 'FINISHED'",
        order_by=["attributes.start_time DESC"],
        max_results=1,
    )
    return found[0].info.run_id if found else None


def is_rank_zero() -> bool:
    return int(os.environ.get("RANK", "0")) == 0


def git_state(root: Path | None = None) -> dict[str, str]:
    """The checked-out commit and whether tracked files differ from it."""
    root = root or Path.cwd()

    def git(*args: str) -> str:
        # bounded: a git that hangs (a lock, a slow network file system) costs the tag, not the run
        try:
            result = subprocess.run(
                ["git", *args], cwd=root, capture_output=True, text=True, check=False,
                timeout=GIT_TIMEOUT_S,
            )  # fmt: skip
        except (OSError, subprocess.TimeoutExpired) as error:
            print(f"warning: git {' '.join(args)} gave no answer ({error}); tag left unknown")
            return ""
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
        tags[f"{INPUT_TAG_PREFIX}{name}"] = (
            hash_path(Path(path)) if Path(path).exists() else "missing"
        )
    return tags


class StageRun:
    """A thin handle on the active MLflow run; every method is a no-op off rank 0."""

    def __init__(self, run_id: str | None, pipeline_run_id: str | None = None) -> None:
        self.run_id = run_id
        self.pipeline_run_id = pipeline_run_id

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

    def log_pipeline_metrics(self, metrics: Mapping[str, float]) -> None:
        """Log summary metrics on the pipeline run too, where variants are compared."""
        if self.run_id is None or self.pipeline_run_id is None:
            return
        import mlflow
        from mlflow.entities import Metric

        timestamp = int(time.time() * 1000)
        entries = [
            Metric(key, float(value), timestamp, 0)
            for key, value in sorted(metrics.items())
            if isinstance(value, int | float) and not isinstance(value, bool)
        ]
        client = mlflow.MlflowClient()
        for start in range(0, len(entries), 1000):
            client.log_batch(self.pipeline_run_id, metrics=entries[start : start + 1000])


def _pipeline_parent_run(
    client: Any, experiment_id: str, pipeline_id: str, lineage: Mapping[str, str]
) -> str:
    """The id of the parent run that groups this pipeline's stage runs, created on first use.

    It carries the lineage of the pipeline (commit, params digest, experiment name) and the whole
    flattened params.yaml, so that pipeline runs of different variants compare in the MLflow UI.
    """
    from mlflow.entities import Param

    found = client.search_runs(
        [experiment_id],
        filter_string=f"tags.`{TAG_PREFIX}pipeline_id` = '{pipeline_id}' "
        f"and tags.`{TAG_PREFIX}kind` = 'pipeline'",
        max_results=1,
    )
    if found:
        return found[0].info.run_id
    tags = {key: value for key, value in lineage.items() if not key.startswith(INPUT_TAG_PREFIX)}
    tags |= {f"{TAG_PREFIX}pipeline_id": pipeline_id, f"{TAG_PREFIX}kind": "pipeline"}
    exp_name = lineage.get(f"{TAG_PREFIX}dvc_exp_name")
    run = client.create_run(
        experiment_id, tags=tags, run_name=exp_name or f"pipeline-{pipeline_id[:8]}"
    )
    params = [Param(key, str(value)[:6000]) for key, value in sorted(_all_params().items())]
    for start in range(0, len(params), 100):
        client.log_batch(run.info.run_id, params=params[start : start + 100])
    client.set_terminated(run.info.run_id)
    return run.info.run_id


def _all_params() -> dict[str, Any]:
    """The whole params.yaml flattened to dotted keys; empty when there is none or it is bad.

    Keys MLflow would refuse (characters outside ``[A-Za-z0-9_ ./-]``, empty parts) are left
    out rather than failing the stage.
    """
    if not PARAMS_FILE.exists():
        return {}
    try:
        flat = flatten(load_params(PARAMS_FILE))
    except BertforgeError:
        return {}
    return {key: value for key, value in flat.items() if MLFLOW_KEY.fullmatch(str(key))}


@contextmanager
def stage_run(
    stage: str,
    params: Any,
    inputs: Mapping[str, Path] | None = None,
    *,
    run_name: str | None = None,
    tags: Mapping[str, str] | None = None,
    system_metrics: bool = False,
) -> Iterator[StageRun]:
    """Track one stage execution as an MLflow run, nested under its pipeline run.

    `system_metrics`: MLflow samples CPU, memory, disk, network (and GPU, where `pynvml` is
    installed) as ``system/*`` metrics every `SYSTEM_METRICS_INTERVAL_S` seconds (the
    ``MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL`` environment variable overrides it); for the
    long stages.
    """
    if not is_rank_zero():
        yield StageRun(None)
        return
    import mlflow

    with store_errors(tracking_uri()):
        experiment = set_experiment()
        client = mlflow.MlflowClient()
        end_orphaned_runs(client, experiment.experiment_id)
    all_tags = lineage_tags(inputs or {})
    pipeline_id = hashlib.sha256(
        (all_tags[f"{TAG_PREFIX}git_commit"] + all_tags[f"{TAG_PREFIX}params_digest"]).encode()
    ).hexdigest()[:16]
    with store_errors(tracking_uri()):
        parent_id = _pipeline_parent_run(client, experiment.experiment_id, pipeline_id, all_tags)
    all_tags[f"{TAG_PREFIX}pipeline_id"] = pipeline_id
    all_tags[f"{TAG_PREFIX}stage"] = stage
    all_tags[f"{TAG_PREFIX}kind"] = "stage"
    all_tags[PROCESS_TAG] = process_identity()
    all_tags.update(tags or {})
    if system_metrics and not os.environ.get("MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL"):
        mlflow.set_system_metrics_sampling_interval(SYSTEM_METRICS_INTERVAL_S)
        mlflow.set_system_metrics_samples_before_logging(1)
    with (
        store_errors(tracking_uri()),
        mlflow.start_run(
            run_name=run_name or stage,
            tags=all_tags,
            parent_run_id=parent_id,
            log_system_metrics=system_metrics,
        ) as run,
        killed_on_signal(),
    ):
        flat = {f"{stage}.{key}": value for key, value in flatten(params).items()}
        if flat:
            mlflow.log_params({key: str(value)[:6000] for key, value in flat.items()})
        yield StageRun(run.info.run_id, parent_id)
