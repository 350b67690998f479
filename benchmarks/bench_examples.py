"""Benchmark the examples stage against the original create_pretraining_data.py.

Both sides start from the same ingested documents (sentences as text) and the same params and
end with written instances; each side tokenizes for itself (ours: data/tokenizer's tokenizer.json
through `SentenceTokenizer`; the baseline: the original pure-Python FullTokenizer on vocab.txt).
Every configuration runs in a fresh subprocess (ours on the 1x corpus `--runs` times, 1 and 2
processes interleaved, the fastest shown); the table reports the time measured inside it
(from reading the documents to the last shard written, interpreter start-up excluded), the CPU
time of the whole process tree (user + system), and the peak memory of the tree: the sum of the
proportional set sizes (PSS: pages shared by forked workers counted once) of the parent and its
workers, sampled every 200 ms, with the peaks of the parent and of the largest worker.

    python benchmarks/bench_examples.py                          # everything, all documents
    python benchmarks/bench_examples.py --baseline-documents 2000    # the baseline on a sample
    python benchmarks/bench_examples.py --baseline-documents 0 --repeats   # ours, 1x only

It needs data/ingested and data/tokenizer: run ``dvc repro vocab`` (or ``python stages/ingest.py
&& python stages/vocab.py``) first, or point --ingested/--tokenizer elsewhere.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, replace
from pathlib import Path

import psutil
import pyarrow as pa
import pyarrow.parquet as pq
import yaml

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT / "src"))

from machine import machine  # noqa: E402

from bertforge.examples.params import ExamplesParams  # noqa: E402
from bertforge.examples.write import check_inputs, write_examples  # noqa: E402
from bertforge.params import parse  # noqa: E402
from bertforge.shards import iter_batches, shard_files  # noqa: E402

BASELINE = REPO_ROOT / "benchmarks" / "original_create_pretraining_data.py"


def measure(command: list[str]) -> dict:
    """Run `command` (its last stdout line: JSON instances, seconds); add CPU time and memory."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    process = psutil.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    peak = peak_main = peak_worker = 0
    while process.poll() is None:
        try:
            main_pss = process.memory_full_info().pss
            workers = [child.memory_full_info().pss for child in process.children(recursive=True)]
        except psutil.Error:
            continue
        peak = max(peak, main_pss + sum(workers))
        peak_main = max(peak_main, main_pss)
        peak_worker = max(peak_worker, *workers, 0)
        time.sleep(0.2)
    stdout, stderr = process.communicate()
    if process.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed:\n{stderr}")
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    result = json.loads(stdout.strip().splitlines()[-1])
    result["cpu_seconds"] = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    result["peak_memory_mb"] = peak / 2**20
    result["peak_main_mb"] = peak_main / 2**20
    result["peak_worker_mb"] = peak_worker / 2**20
    return result


def run_ours(ingested: Path, tokenizer: Path, params: ExamplesParams) -> None:
    """Child mode: our library end to end into a temporary directory; print instances/seconds."""
    start = time.perf_counter()
    inputs = check_inputs(ingested, tokenizer, params)
    with tempfile.TemporaryDirectory() as output:
        metrics = write_examples(inputs, Path(output), params, progress=False)
        seconds = time.perf_counter() - start  # removing the output is not part of the work
    instances = sum(split["instances"] for split in metrics.values())
    print(json.dumps({"instances": instances, "seconds": seconds}))


def copy_documents(source: Path, target: Path, limit: int | None, repeat: int = 1) -> int:
    """Write the first `limit` documents of a split (the whole split `repeat` times) as shards."""
    target.mkdir(parents=True, exist_ok=True)
    if limit is None:
        shards = shard_files(source)
        for copy in range(repeat):
            for index, shard in enumerate(shards):
                shutil.copy(shard, target / f"part-{copy * len(shards) + index:05d}.parquet")
        return sum(pq.ParquetFile(path).metadata.num_rows for path in shard_files(target))
    batches, rows = [], 0
    for batch in iter_batches(source):
        batches.append(batch.slice(0, limit - rows))
        rows += len(batches[-1])
        if rows >= limit:
            break
    pq.write_table(pa.Table.from_batches(batches), target / "part-00000.parquet")
    return rows


def count_documents(split_dir: Path) -> int:
    return sum(pq.ParquetFile(path).metadata.num_rows for path in shard_files(split_dir))


def baseline(ingested: Path, tokenizer: Path, params: ExamplesParams, work: Path) -> dict:
    """The original on train (dupe_factor passes) then heldout (one pass), as our stage does."""
    total = dict.fromkeys(
        ("instances", "seconds", "cpu_seconds", "peak_memory_mb", "peak_main_mb", "peak_worker_mb"),
        0.0,
    )
    for split, dupe_factor in (("train", params.dupe_factor), ("heldout", 1)):
        command = [
            sys.executable,
            str(BASELINE),
            "--ingested", str(ingested / split),
            "--vocab", str(tokenizer / "vocab.txt"),
            "--output", str(work / f"baseline-{split}.parquet"),
            "--max-seq-length", str(params.max_seq_length),
            "--max-predictions-per-seq", str(params.max_predictions_per_seq),
            "--random-seed", str(params.random_seed),
            "--dupe-factor", str(dupe_factor),
            "--masked-lm-prob", str(params.masked_lm_prob),
            "--short-seq-prob", str(params.short_seq_prob),
        ] + (["--whole-word-mask"] if params.whole_word_mask else [])  # fmt: skip
        result = measure(command)
        for key in ("instances", "seconds", "cpu_seconds"):
            total[key] += result[key]
        for key in ("peak_memory_mb", "peak_main_mb", "peak_worker_mb"):
            total[key] = max(total[key], result[key])
    return total


def ours(ingested: Path, tokenizer: Path, params: ExamplesParams) -> dict:
    command = [
        sys.executable, str(Path(__file__).resolve()), "--child",
        "--ingested", str(ingested), "--tokenizer", str(tokenizer),
        "--params-json", json.dumps(asdict(params)),
    ]  # fmt: skip
    return measure(command)


def row(name: str, documents: int, result: dict) -> str:
    rate = result["instances"] / result["seconds"]
    worker = f"{result['peak_worker_mb']:,.0f}" if result["peak_worker_mb"] else "-"
    return (
        f"| {name} | {documents:,} | {result['instances']:,.0f} | {result['seconds']:.1f} | "
        f"{result['cpu_seconds']:.1f} | {rate:,.0f} | {result['peak_memory_mb']:,.0f} | "
        f"{result['peak_main_mb']:,.0f} | {worker} |"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ingested", type=Path, default=REPO_ROOT / "data/ingested")
    parser.add_argument("--tokenizer", type=Path, default=REPO_ROOT / "data/tokenizer")
    parser.add_argument("--params", type=Path, default=REPO_ROOT / "params.yaml")
    parser.add_argument("--dupe-factor", type=int, default=None, help="override params.yaml")
    parser.add_argument(
        "--baseline-documents",
        type=int,
        default=None,
        help="train documents for the baseline-vs-ours rows (default all; 0: skip them)",
    )
    parser.add_argument("--runs", type=int, default=5, help="runs of ours on 1x (fastest shown)")
    parser.add_argument(
        "--repeats",
        type=int,
        nargs="*",
        default=[3, 10],
        help="corpus copies for the memory rows (ours, 2 processes; 1 process too on the first)",
    )
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--params-json", help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.child:
        run_ours(args.ingested, args.tokenizer, ExamplesParams(**json.loads(args.params_json)))
        return
    train, heldout = args.ingested / "train", args.ingested / "heldout"
    for needed in (train, heldout, args.tokenizer / "vocab.txt"):
        if not needed.exists():
            raise SystemExit(
                f"{needed} not found: build the inputs first with `dvc repro vocab` "
                "(or `python stages/ingest.py && python stages/vocab.py`)"
            )
    section = (yaml.safe_load(args.params.read_text()) or {}).get("examples") or {}
    params = parse(ExamplesParams, section, f"{args.params}: examples")
    if args.dupe_factor is not None:
        params = replace(params, dupe_factor=args.dupe_factor)
    one, two = replace(params, num_proc=1), replace(params, num_proc=2)

    print(
        f"# examples benchmark: {machine()}, {time.strftime('%Y-%m-%d')}, "
        f"load average {os.getloadavg()[0]:.1f}",
        flush=True,
    )
    print(f"# params: {json.dumps(asdict(params))}", flush=True)
    header = [
        "| run | train docs | instances | time s | CPU s | instances/s "
        "| peak memory MB | main MB | each worker MB |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    lines: list[str] = []
    with tempfile.TemporaryDirectory() as scratch:
        work = Path(scratch)
        full = work / "full"
        documents = copy_documents(train, full / "train", None)
        copy_documents(heldout, full / "heldout", None)
        if args.baseline_documents != 0:
            sample = full
            if args.baseline_documents is not None:
                sample = work / "sample"
                documents = copy_documents(train, sample / "train", args.baseline_documents)
                copy_documents(heldout, sample / "heldout", None)
            original = baseline(sample, args.tokenizer, params, work)
            lines.append(row("original (pure Python), 1 process", documents, original))
            print(lines[-1], flush=True)
            if args.baseline_documents is not None:
                lines.append(row("ours, 1 process", documents, ours(sample, args.tokenizer, one)))
                print(lines[-1], flush=True)
            documents = count_documents(full / "train")
        results: dict[str, list[dict]] = {"ours, 1 process": [], "ours, 2 processes": []}
        for _ in range(args.runs):  # interleaved, so that both see the same machine
            for name, run_params in zip(results, (one, two), strict=True):
                results[name].append(ours(full, args.tokenizer, run_params))
        for name, runs in results.items():
            fastest = min(runs, key=lambda result: result["seconds"])
            for key in ("peak_memory_mb", "peak_main_mb", "peak_worker_mb"):
                fastest[key] = max(result[key] for result in runs)
            lines.append(row(f"{name}, best of {args.runs}", documents, fastest))
            print(lines[-1], flush=True)
        for repeat in args.repeats:
            repeated = work / f"repeated-{repeat}"
            documents = copy_documents(train, repeated / "train", None, repeat)
            copy_documents(heldout, repeated / "heldout", None)
            # 1 process too on the first (smaller) repeat: the speedup once start-up is amortized
            configs = ((1, one), (2, two)) if repeat == args.repeats[0] else ((2, two),)
            for processes, run_params in configs:
                name = f"ours, {processes} process{'es' * (processes > 1)}, corpus x{repeat}"
                lines.append(row(name, documents, ours(repeated, args.tokenizer, run_params)))
                print(lines[-1], flush=True)
            shutil.rmtree(repeated)
    print(f"# load average at the end {os.getloadavg()[0]:.1f}")
    print("\n".join(["", *header, *lines]))


if __name__ == "__main__":
    main()
