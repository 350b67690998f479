"""Shared fixtures: the repo root, an isolated MLflow store, and a temp copy of the project."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def migrated_mlflow_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An empty MLflow sqlite store with its schema migrations applied, made once per session.

    Creating a store runs MLflow's database migrations (many seconds); copying a migrated empty
    one gives every test a fresh store in milliseconds.
    """
    import mlflow

    store = tmp_path_factory.mktemp("mlflow-template") / "mlflow.db"
    mlflow.MlflowClient(tracking_uri=f"sqlite:///{store}").search_experiments()
    return store


@pytest.fixture(autouse=True)
def isolated_mlflow(
    migrated_mlflow_store: Path,
    tmp_path_factory: pytest.TempPathFactory,
    monkeypatch: pytest.MonkeyPatch,
) -> Path:
    """Every test logs to its own sqlite store, never to the repo's mlflow.db."""
    store = tmp_path_factory.mktemp("mlflow") / "mlflow.db"
    shutil.copy(migrated_mlflow_store, store)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{store}")
    monkeypatch.setenv("GIT_PYTHON_REFRESH", "quiet")
    return store


def tracked_files() -> list[str]:
    """The files a clone of the project would have: tracked plus untracked-but-not-ignored."""
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
        cwd=REPO_ROOT,
        capture_output=True,
        check=True,
    ).stdout.decode()
    return [name for name in listed.split("\0") if name and (REPO_ROOT / name).is_file()]


def copy_project(destination: Path) -> Path:
    """Copy the project as a fresh clone would see it, then make it a git repo of its own."""
    for name in tracked_files():
        target = destination / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO_ROOT / name, target)
    git = ["git", "-c", "user.name=test", "-c", "user.email=test@example.com"]
    subprocess.run([*git, "init", "-q"], cwd=destination, check=True)
    subprocess.run([*git, "add", "-A"], cwd=destination, check=True)
    subprocess.run([*git, "commit", "-q", "-m", "copy"], cwd=destination, check=True)
    return destination


def stage_env() -> dict[str, str]:
    """Environment for running stage scripts and dvc as subprocesses with this interpreter."""
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env["PYTHONUNBUFFERED"] = "1"
    return env
