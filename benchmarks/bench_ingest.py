"""Ingest throughput and peak memory, with 1 and 2 processes, on the corpus and on 10× the corpus.

Each configuration runs `bertforge.ingest.pipeline.ingest` (the stage's work, without MLflow) in
a fresh subprocess, with the `ingest:` params of params.yaml except `sources` and `num_proc`.
Reported: seconds inside `ingest`, throughput in MB/s of uncompressed input text, CPU seconds of
the main process and of the workers (start-up included) — on a busy machine these say more than
the wall time — and the peak resident memory of the whole process tree (main process plus
workers, summed, polled every 20 ms).

"10×" is ten copies of the corpus in a temporary directory, each document of copy k prefixed
with "Copy k." so that no copy is a duplicate of another: the run really processes and writes
ten times the documents, and the dedup set holds ten times the digests.

Run: python benchmarks/bench_ingest.py [--corpus 'data/raw/corpus/*.txt.xz'] [--copies 10]
"""

from __future__ import annotations

import argparse
import dataclasses
import glob
import json
import lzma
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

import psutil
from machine import machine

from bertforge.ingest.params import IngestParams, SourceParams
from bertforge.ingest.pipeline import ingest
from bertforge.ingest.sources import resolve_sources
from bertforge.params import load_section


def measure_one(corpus: str, num_proc: int, output: Path) -> None:
    """In the subprocess: run ingest and print its metrics and duration as JSON."""
    params = load_section(IngestParams, "ingest")
    params = dataclasses.replace(params, sources=(SourceParams(path=corpus),), num_proc=num_proc)
    start, main_cpu = time.perf_counter(), time.process_time()
    metrics = ingest(params, resolve_sources(params), output, show_progress=False)
    seconds, main_cpu = time.perf_counter() - start, time.process_time() - main_cpu
    workers = resource.getrusage(resource.RUSAGE_CHILDREN)  # the pool is shut down and joined
    workers_cpu = workers.ru_utime + workers.ru_stime
    print(
        json.dumps(
            {
                "seconds": seconds,
                "main_cpu": main_cpu,
                "workers_cpu": workers_cpu,
                "metrics": metrics,
            }
        )
    )


def tree_rss(process: psutil.Process) -> int:
    """Resident bytes of a process and all its descendants."""
    total = 0
    for member in [process, *process.children(recursive=True)]:
        try:
            total += member.memory_info().rss
        except psutil.NoSuchProcess:
            continue
    return total


def run_measured(corpus: str, num_proc: int, scratch: Path) -> dict:
    output = scratch / f"out-{num_proc}-{time.monotonic_ns()}"
    command = [
        sys.executable,
        __file__,
        "--measure-one",
        "--corpus",
        corpus,
        "--num-proc",
        str(num_proc),
        "--output",
        str(output),
    ]
    child = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    process = psutil.Process(child.pid)
    peak = 0
    while child.poll() is None:
        try:
            peak = max(peak, tree_rss(process))
        except psutil.NoSuchProcess:
            break
        time.sleep(0.02)
    stdout, _ = child.communicate()
    if child.returncode != 0:
        raise SystemExit(f"ingest failed for {corpus} with num_proc={num_proc}")
    result = json.loads(stdout.strip().splitlines()[-1])
    result["peak_rss"] = peak
    return result


def write_copies(pattern: str, copies: int, directory: Path) -> str:
    """`copies` perturbed copies of the corpus files (xz preset 1), as a glob."""
    for path in sorted(glob.glob(pattern)):
        text = lzma.decompress(Path(path).read_bytes()).decode("utf-8")
        documents = text.strip("\n").split("\n\n")
        for copy in range(copies):
            name = Path(path).name.replace(".txt.xz", f".copy{copy}.txt.xz")
            perturbed = "\n\n".join(f"Copy {copy}. {document}" for document in documents)
            (directory / name).write_bytes(lzma.compress(perturbed.encode() + b"\n", preset=1))
    return str(directory / "*.txt.xz")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", default="data/raw/corpus/*.txt.xz")
    parser.add_argument("--copies", type=int, default=10)
    parser.add_argument("--measure-one", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--num-proc", type=int, default=1, help=argparse.SUPPRESS)
    parser.add_argument("--output", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure_one:
        measure_one(args.corpus, args.num_proc, args.output)
        return

    print(
        f"{machine()}, "
        f"{psutil.virtual_memory().total / 2**30:.0f} GiB RAM, Python "
        f"{platform.python_version()}, {date.today()}; load average at start "
        f"{os.getloadavg()[0]:.1f}"
    )
    print()
    print(
        "| corpus | num_proc | documents in | documents out | uncompressed MB | ingest s "
        "| MB/s | CPU s main | CPU s workers | peak RSS (tree) MiB |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory(prefix="bench-ingest-") as scratch_name:
        scratch = Path(scratch_name)
        copies_dir = scratch / "copies"
        copies_dir.mkdir()
        corpora = [
            ("corpus", args.corpus),
            (f"corpus ×{args.copies}", write_copies(args.corpus, args.copies, copies_dir)),
        ]
        for label, corpus in corpora:
            for num_proc in (1, 2):
                result = run_measured(corpus, num_proc, scratch)
                metrics = result["metrics"]
                megabytes = metrics["uncompressed_bytes"] / 1e6
                print(
                    f"| {label} | {num_proc} | {metrics['documents']['read']:,} | "
                    f"{metrics['documents']['total']:,} | {megabytes:.1f} | "
                    f"{result['seconds']:.1f} | {megabytes / result['seconds']:.2f} | "
                    f"{result['main_cpu']:.1f} | {result['workers_cpu']:.1f} | "
                    f"{result['peak_rss'] / 2**20:.0f} |",
                    flush=True,
                )


if __name__ == "__main__":
    main()
