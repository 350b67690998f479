"""Wall time of the test suite in one process against pytest-xdist workers, side by side.

Usage:
    python benchmarks/bench_suite.py                  # the whole suite, one process then 2 workers
    python benchmarks/bench_suite.py --rounds 3       # alternating, medians of 3 runs of each
    python benchmarks/bench_suite.py --workers 2 3 -- tests/finetune   # other counts, a subset

Each run is `python -m pytest -q -p no:cacheprovider [-n N --dist loadfile] [paths]` from the
repository root, as `make test` runs it with 2 workers. Every round runs each mode once, in an
order reversed from round to round, so that a machine drifting slower or faster favours neither.
Prints the machine, the date and the load average before and after, then per mode the median
wall time, the median CPU time of its processes (user + system), the cores busy on average,
the wall time as a ratio of the one-process run's, and pytest's counts. A run that fails or
collects nothing (any pytest exit code but 0; 5 included) stops the benchmark with its last
lines. A round takes about twice the suite's time (35 minutes on a 2-core VM).
"""

from __future__ import annotations

import argparse
import os
import re
import resource
import statistics
import sys
import time
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_repro import run_streaming  # noqa: E402  (a failure's last lines)
from machine import machine  # noqa: E402

COUNTS = re.compile(r"(\d+) (passed|failed|skipped|errors?)")


def children_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run_suite(workers: int, paths: list[str]) -> tuple[float, float, str]:
    """One pytest run: (wall s, CPU s of all its processes, pytest's counts line)."""
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"]
    if workers > 0:
        command += ["-n", str(workers), "--dist", "loadfile"]
    cpu_before, started = children_cpu_s(), time.perf_counter()
    returncode, tail = run_streaming([*command, *paths], ROOT)
    wall, cpu = time.perf_counter() - started, children_cpu_s() - cpu_before
    if returncode != 0:
        print(tail, end="", file=sys.stderr)
        sys.exit(f"{' '.join(command[1:])}: pytest exit code {returncode} (lines above)")
    counts = ", ".join(f"{n} {word}" for n, word in COUNTS.findall(tail))
    return wall, cpu, counts


def mode_name(workers: int) -> str:
    return "one process" if workers == 0 else f"`-n {workers} --dist loadfile`"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, nargs="+", default=[2], help="xdist worker counts")
    parser.add_argument("--rounds", type=int, default=1, help="runs of each mode (medians)")
    parser.add_argument("paths", nargs="*", help="test paths (default: the whole suite)")
    args = parser.parse_args()
    if args.rounds < 1 or any(workers < 1 for workers in args.workers):
        parser.error("--rounds and every --workers count must be at least 1")
    modes = [0, *args.workers]
    load_before = os.getloadavg()[0]
    runs: dict[int, list[tuple[float, float, str]]] = {mode: [] for mode in modes}
    for round_number in range(args.rounds):
        # alternate the order from round to round: neither mode always runs first
        for workers in modes if round_number % 2 == 0 else modes[::-1]:
            runs[workers].append(run_suite(workers, args.paths))
            wall, _, counts = runs[workers][-1]
            print(f"{mode_name(workers)}: {wall:.0f} s ({counts})", file=sys.stderr, flush=True)
    print(
        f"machine: {machine()}; "
        f"date: {date.today()}; rounds: {args.rounds}; "
        f"load average (1 min) before {load_before:.1f}, after {os.getloadavg()[0]:.1f}"
    )
    serial = statistics.median(wall for wall, _, _ in runs[0])
    print("| pytest | wall (s, median) | CPU (s, median) | cores busy | × one process | tests |")
    print("| --- | ---: | ---: | ---: | ---: | --- |")
    for workers in modes:
        wall = statistics.median(run[0] for run in runs[workers])
        cpu = statistics.median(run[1] for run in runs[workers])
        print(
            f"| {mode_name(workers)} | {wall:.0f} | {cpu:.0f} | {cpu / wall:.2f} | "
            f"{wall / serial:.2f} | {runs[workers][-1][2]} |"
        )


if __name__ == "__main__":
    main()
