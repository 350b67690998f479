"""Helpers for the hostile cases: a project a plain user can run, a full disk, a dead process id.

Read-only folders mean nothing to root, so when the tests run as root the stage runs as the
unprivileged user `nobody` (uid 65534) in a project that user owns. A full disk is a small tmpfs
mounted over the output folder (needs the right to mount; the test is skipped without it).
"""

from __future__ import annotations

import contextlib
import gc
import json
import os
import runpy
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.factories import INGEST_STAGE

NOBODY = 65534


def dead_pid() -> int:
    """The id of a process that has exited (and been reaped), so it is not alive."""
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait(timeout=60)
    return process.pid


@contextmanager
def shared_temp_dir() -> Iterator[Path]:
    """A temporary folder outside pytest's root-only tree, so that `nobody` can reach it."""
    folder = Path(tempfile.mkdtemp(prefix="bertforge-robustness-"))
    folder.chmod(0o755)
    try:
        yield folder
    finally:
        subprocess.run(["chmod", "-R", "u+rwX", str(folder)], check=False)
        shutil.rmtree(folder, ignore_errors=True)


def hand_to_user(root: Path) -> None:
    """When running as root, give the project to `nobody` (the stage will run as that user)."""
    if os.geteuid() == 0:
        subprocess.run(["chown", "-R", f"{NOBODY}:{NOBODY}", str(root)], check=True)


@contextmanager
def as_user() -> Iterator[None]:
    """Run the block with the effective ids of `nobody` when the tests run as root.

    The stage runs in-process (a child process would need an interpreter `nobody` can execute,
    and the venv's may live under /root).
    """
    if os.geteuid() != 0:
        yield
        return
    os.setegid(NOBODY)
    os.seteuid(NOBODY)
    try:
        yield
    finally:
        os.seteuid(0)
        os.setegid(0)


def run_stage_in_process(root: Path, script: Path = INGEST_STAGE) -> int:
    """A stage script's `__main__` run in `root` as an unprivileged user; its exit code."""
    with contextlib.chdir(root), as_user():
        try:
            runpy.run_path(str(script), run_name="__main__")
        except SystemExit as exit_:
            return int(exit_.code or 0)
    return 0


def snapshot(root: Path) -> dict[str, bytes]:
    """Every file under data/ and metrics/ (hidden staging leftovers included), with its bytes."""
    return {
        path.relative_to(root).as_posix(): path.read_bytes()
        for folder in ("data", "metrics")
        if (root / folder).exists()
        for path in sorted((root / folder).rglob("*"))
        if path.is_file()
    }


def previous_ingest_outputs(root: Path) -> None:
    """A stand-in for an earlier run's data/ingested and metrics/ingest.json."""
    (root / "data" / "ingested" / "train").mkdir(parents=True)
    (root / "data" / "ingested" / "train" / "shard-00000.parquet").write_bytes(b"previous run")
    (root / "metrics").mkdir()
    (root / "metrics" / "ingest.json").write_text(json.dumps({"documents": "previous"}))


@contextmanager
def full_disk(folder: Path, size: str = "256k") -> Iterator[None]:
    """Mount a small tmpfs on `folder` for the block (skips the test where mounting is denied)."""
    folder.mkdir(parents=True, exist_ok=True)
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size},mode=0777", "tmpfs", str(folder)],
        capture_output=True,
        text=True,
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs to fill up: {mounted.stderr.strip()}")
    try:
        yield
    finally:
        gc.collect()  # a failed writer's file may still be open through a kept traceback
        if subprocess.run(["umount", str(folder)], capture_output=True).returncode != 0:
            subprocess.run(["umount", "--lazy", str(folder)], check=True)


def fill_up(folder: Path) -> None:
    """Write into `folder` until its file system has no space left."""
    with open(folder / "filler", "wb", buffering=0) as handle:
        try:
            while handle.write(b"\0" * 4096):
                pass
        except OSError:
            pass
