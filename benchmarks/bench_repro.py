"""Wall time of `dvc repro [target]` on the embedded default, per stage and in all.

Usage:
    python benchmarks/bench_repro.py             # the whole pipeline, in a fresh temp copy
    python benchmarks/bench_repro.py vocab       # ingest + vocab only (target: < 2 minutes)
    python benchmarks/bench_repro.py --in-place --force  # in this checkout, every stage run
                                                         # (writes data/, metrics/, dvc.lock)

Each stage's time runs from DVC's "Running stage" line to the next one (or to the end), so it
includes the stage's interpreter start-up and DVC's hashing of its outputs. Prints a table with
the machine, the date and the load average before and after; compare wall times only from a
quiet machine. The temp copy is what a fresh clone holds (`tests.support.copy_project`,
dvc.lock included): every stage runs, since none of their outputs is in its DVC cache; when
`dvc repro` fails, its last lines are printed. Targets (issues): ingest + vocab < 2 min,
pretrain <= 8 min, finetune + evaluate <= 6 min, the whole `make repro` <= 15 min on 2 cores.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from collections import deque
from collections.abc import Callable
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from machine import machine  # noqa: E402

from tests.support import copy_project, stage_env  # noqa: E402  (a fresh clone's files, as a git repo)

RUNNING = re.compile(r"Running stage '([^']+)'")
TAIL_LINES = 40  # of a command's output, shown when it fails


def run_streaming(
    command: list[str],
    cwd: Path,
    on_line: Callable[[str], None] = lambda line: None,
    env: dict[str, str] | None = None,
) -> tuple[int, str]:
    """Run `command`, its stdout and stderr merged, handing each line to `on_line` as it comes;
    its exit code and its last TAIL_LINES lines (for the account of a failure)."""
    tail: deque[str] = deque(maxlen=TAIL_LINES)
    with subprocess.Popen(
        command,
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        errors="replace",
    ) as process:
        assert process.stdout is not None
        for line in process.stdout:
            tail.append(line)
            on_line(line)
    return process.returncode, "".join(tail)


def timed_repro(project: Path, arguments: list[str], env: dict[str, str]) -> dict[str, float]:
    """Run `dvc repro` and time each stage it runs (in order), plus "total"."""
    times: dict[str, float] = {}
    start = current_start = time.perf_counter()
    current: str | None = None  # the stage running, since current_start

    def note_stage(line: str) -> None:
        nonlocal current, current_start
        found = RUNNING.search(line)
        if found:
            now = time.perf_counter()
            if current is not None:
                times[current] = now - current_start
            current, current_start = found.group(1), now
            print(f"[{now - start:7.1f} s] {current}", file=sys.stderr, flush=True)

    returncode, tail = run_streaming(["dvc", "repro", *arguments], project, note_stage, env)
    end = time.perf_counter()
    if returncode != 0:
        print(tail, end="", file=sys.stderr)  # DVC's own account of the failure
        sys.exit(f"dvc repro failed with exit code {returncode} (its last lines above)")
    if current is not None:
        times[current] = end - current_start
    times["total"] = end - start
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("target", nargs="*", help="dvc repro targets (default: all)")
    parser.add_argument("--in-place", action="store_true", help="run in this checkout")
    parser.add_argument("--force", action="store_true", help="dvc repro --force: run every stage")
    args = parser.parse_args()
    arguments = [*args.target, *(["--force"] if args.force else [])]
    load_before = os.getloadavg()[0]
    if args.in_place:
        times = timed_repro(ROOT, arguments, stage_env())
    else:
        with tempfile.TemporaryDirectory() as temp:
            project = Path(temp) / "project"
            copy_project(project)
            # the copy's own src/ (a fresh clone's code, whatever happens to this checkout)
            store = {"MLFLOW_TRACKING_URI": f"sqlite:///{Path(temp) / 'mlflow.db'}"}
            times = timed_repro(project, arguments, stage_env(project) | store)
    print(
        f"machine: {machine()}; "
        f"date: {date.today()}; "
        f"load average (1 min) before {load_before:.1f}, after {os.getloadavg()[0]:.1f}"
    )
    command = " ".join(["dvc", "repro", *arguments])
    print(f"| `{command}` | wall time (s) |")
    print("| --- | ---: |")
    for stage, seconds in times.items():
        print(f"| {'**total**' if stage == 'total' else stage} | {seconds:.0f} |")


if __name__ == "__main__":
    main()
