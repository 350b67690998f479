"""Wall time of `dvc repro vocab` (ingest + vocab) on the embedded default, in a temp git copy.

Usage: python benchmarks/bench_repro_vocab.py    (prints a one-row table; target: < 2 minutes)
"""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def copy_tracked_project(destination: Path) -> None:
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
        cwd=ROOT,
        capture_output=True,
        check=True,
    ).stdout.decode()
    for name in filter(None, listed.split("\0")):
        if (ROOT / name).is_file():
            (destination / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, destination / name)
    git = ["git", "-c", "user.name=bench", "-c", "user.email=bench@example.com"]
    subprocess.run([*git, "init", "-q"], cwd=destination, check=True)
    subprocess.run([*git, "add", "-A"], cwd=destination, check=True)
    subprocess.run([*git, "commit", "-qm", "bench"], cwd=destination, check=True)


def main() -> None:
    with tempfile.TemporaryDirectory() as temp:
        project = Path(temp) / "project"
        copy_tracked_project(project)
        env = dict(os.environ, PATH=f"{Path(sys.executable).parent}:{os.environ['PATH']}")
        env["MLFLOW_TRACKING_URI"] = f"sqlite:///{Path(temp) / 'mlflow.db'}"
        start = time.perf_counter()
        subprocess.run(
            ["dvc", "repro", "vocab"], cwd=project, env=env, check=True, stdout=subprocess.DEVNULL
        )
        seconds = time.perf_counter() - start
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} cores; date: {date.today()}; "
        f"load average at the end: {os.getloadavg()[0]:.1f}"
    )
    print("| command | wall time (s) | target |")
    print("| --- | --- | --- |")
    print(f"| dvc repro vocab (ingest + vocab, embedded default) | {seconds:.0f} | < 120 |")


if __name__ == "__main__":
    main()
