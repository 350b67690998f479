"""Instances per second of the examples stage on the Chinese corpus, with and without jieba word
segmentation (whole-word masking both ways), side by side.

The inputs are the Chinese pipeline's data/ingested and data/tokenizer (params-zh.yaml): made
here in a temporary git copy by `dvc repro vocab` unless --project points at a copy that has
them (e.g. one kept by bench_chinese_pipeline.py --keep). Each configuration writes the examples
into a fresh directory `--runs` times; the table gives the fastest run's wall time (reading the
documents to the last shard, jieba's dictionary loading included), instances and instances/s.

    python benchmarks/bench_chinese_examples.py                   # ~3 min on 2 cores
    python benchmarks/bench_chinese_examples.py --project /tmp/zh --runs 1 --num-proc 1
"""

from __future__ import annotations

import argparse
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from datetime import date
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench_chinese_pipeline import make_chinese_project  # noqa: E402
from machine import machine  # noqa: E402

from bertforge.examples.params import ExamplesParams  # noqa: E402
from bertforge.examples.write import check_inputs, write_examples  # noqa: E402
from bertforge.params import parse  # noqa: E402
from tests.support import stage_env  # noqa: E402


def prepare(project: Path, tiny: bool) -> None:
    """data/ingested and data/tokenizer of the Chinese pipeline in a new copy at `project`."""
    make_chinese_project(project, tiny)
    subprocess.run(["dvc", "repro", "vocab"], cwd=project, env=stage_env(project), check=True,
                   capture_output=True)  # fmt: skip


def time_examples(project: Path, params: ExamplesParams, runs: int) -> tuple[float, int]:
    """The fastest of `runs` writes of the examples, and the instances written."""
    best, instances = float("inf"), 0
    for _ in range(runs):
        output = Path(tempfile.mkdtemp(prefix="examples-", dir=project))
        start = time.perf_counter()
        inputs = check_inputs(project / "data/ingested", project / "data/tokenizer", params)
        metrics = write_examples(inputs, output, params, progress=False)
        best = min(best, time.perf_counter() - start)
        instances = sum(int(split["instances"]) for split in metrics.values())
        shutil.rmtree(output)
    return best, instances


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--project", type=Path, help="a copy with the Chinese ingest and vocab")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--num-proc", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--tiny", action="store_true", help="60 documents a file (a check)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bertforge-zh-examples-") as temporary:
        project = args.project
        if project is None:
            project = Path(temporary) / "project"
            prepare(project, args.tiny)
        section = yaml.safe_load((project / "params.yaml").read_text())["examples"]
        params = parse(ExamplesParams, section, "params.yaml: examples")
        print(
            f"{machine()}, Python "
            f"{platform.python_version()}, {date.today()}; data/ingested of {project} "
            f"(params-zh.yaml), dupe_factor {params.dupe_factor}, best of {args.runs}"
        )
        print()
        print("| word_segmenter | num_proc | seconds | instances | instances/s |")
        print("|---|---|---|---|---|")
        for num_proc in args.num_proc:
            for segmenter in ("none", "jieba"):
                config = replace(params, word_segmenter=segmenter, num_proc=num_proc)
                seconds, instances = time_examples(project, config, args.runs)
                print(f"| {segmenter} | {num_proc} | {seconds:.2f} | {instances:,} | "
                      f"{instances / seconds:,.0f} |")  # fmt: skip


if __name__ == "__main__":
    main()
