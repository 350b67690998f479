"""Helpers shared by the tests: the repo root, a temp copy of the project, the stage environment."""

from __future__ import annotations

import contextlib
import importlib
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]


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


DISTRIBUTED_ENV = (
    "RANK",
    "LOCAL_RANK",
    "WORLD_SIZE",
    "LOCAL_WORLD_SIZE",
    "MASTER_ADDR",
    "MASTER_PORT",
    "BERTFORGE_PICKED_PORT",
)


def stage_env(project: Path | None = None) -> dict[str, str]:
    """Environment for running stage scripts and dvc as subprocesses with this interpreter.

    With `project` (a copy of the project), its stages import the copy's own `src/bertforge`:
    the editable install points at this checkout's `src/`, so without it an edit made here
    while a benchmark runs in a copy would change the code the copy's later stages run."""
    env = dict(os.environ)
    # a test that joined a job in-process (start_distributed sets RANK, MASTER_PORT, ...) must not
    # hand it on: the stage would take itself for a launched rank, or rendezvous at a port taken
    for name in DISTRIBUTED_ENV:
        env.pop(name, None)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env["PYTHONUNBUFFERED"] = "1"
    if project is not None:  # ahead of the editable install's path (a .pth in site-packages)
        paths = [str(Path(project).resolve() / "src"), env.get("PYTHONPATH")]
        env["PYTHONPATH"] = os.pathsep.join(filter(None, paths))
    return env


def without_a_compiler(tmp_path: Path) -> dict[str, str]:
    """`stage_env()` with no C++ compiler on PATH (only this interpreter's folder and git) and an
    empty extensions folder, `<tmp_path>/extensions`, for any op a run would build."""
    tools = tmp_path / "tools"
    tools.mkdir()
    (tools / "git").symlink_to(shutil.which("git"))
    env = stage_env() | {"PATH": f"{Path(sys.executable).parent}{os.pathsep}{tools}"}
    env |= {"OMP_NUM_THREADS": "1", "TORCH_EXTENSIONS_DIR": str(tmp_path / "extensions")}
    env.pop("CXX", None)
    assert shutil.which("c++", path=env["PATH"]) is None
    return env


@contextlib.contextmanager
def one_rank_job(**extra_env: str) -> Iterator[Any]:
    """This test process as a DeepSpeed job of one rank, torn down afterwards (`extra_env`: more
    variables for the job, e.g. DS_ACCELERATOR). Tests hold one per session: DeepSpeed keeps its
    communication backend in a global, so a second job after the first was destroyed would
    reuse a dead group."""
    import pytest

    from bertforge.pretrain.engine import start_distributed, stop_distributed
    from bertforge.pretrain.launch import free_port

    job = {
        "RANK": "0",
        "LOCAL_RANK": "0",
        "WORLD_SIZE": "1",
        "LOCAL_WORLD_SIZE": "1",
        "MASTER_ADDR": "127.0.0.1",
        "MASTER_PORT": str(free_port()),
    } | extra_env
    with pytest.MonkeyPatch.context() as patch:
        for name, value in job.items():
            patch.setenv(name, value)
        yield start_distributed()
        stop_distributed()  # as a rank leaves: DeepSpeed's references to the groups go too


def benchmark_module(name: str) -> Any:
    """benchmarks/<name>.py imported as a module (benchmarks/ on sys.path only while importing,
    for the scripts' imports of each other)."""
    sys.path.insert(0, str(REPO_ROOT / "benchmarks"))
    try:
        return importlib.import_module(name)
    finally:
        sys.path.remove(str(REPO_ROOT / "benchmarks"))


def run_benchmark(
    script: str, *args: str, timeout_s: float, returncode: int = 0
) -> subprocess.CompletedProcess:
    """benchmarks/<script> with `args` in the stage environment; it must exit with `returncode`
    within `timeout_s` (its stderr's end in the failure)."""
    result = subprocess.run(
        [sys.executable, str(REPO_ROOT / "benchmarks" / script), *args],
        capture_output=True,
        text=True,
        env=stage_env(),
        timeout=timeout_s,
    )
    assert result.returncode == returncode, result.stderr[-3000:]
    return result
