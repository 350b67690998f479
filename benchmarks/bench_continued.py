"""Continued pretraining on the embedded corpus: does a general parent help a new domain?

The pipeline itself, in a temporary copy of the project, run stage script by stage script (the
commands dvc.yaml runs), with params.yaml edited between runs as `dvc exp run -S` would:

1. general: ingest the dictionaries (GCIDE, The Devil's Dictionary, the Jargon File), train a
   vocabulary, make examples, pretrain `--parent-steps` steps; the export is the parent
   (copied to parents/general/);
2. domain: ingest the King James Bible, then four variants, each pretrained `--steps` steps:

   scratch          a vocabulary trained on the Bible, random weights (the pipeline as it is)
   scratch, parent vocab   the parent's vocabulary (vocab.init_from), random weights
   continued        the parent's vocabulary and weights (vocab.init_from + pretrain.init_from)
   continued + ext  as continued, with vocab.extend_with `--extend-with` Bible pieces

For each: held-out MLM accuracy on the Bible (metrics/pretrain.json; the two parent-vocabulary
variants without extension predict the same masked tokens of the same examples, so they compare
directly; the others tokenize differently) and, unless --no-finetune, the average fine-tuned
score over the embedded tasks (metrics/eval.json, init=pretrained, headline split). Prints a
table with the machine and date; time it only on a quiet machine.

Usage:
    python benchmarks/bench_continued.py                     # the full run
    python benchmarks/bench_continued.py --documents 300 --parent-steps 4 --steps 4 \\
        --extend-with 20 --finetune-examples 32 --epochs 1   # a smoke run (a few minutes)
"""

from __future__ import annotations

import argparse
import json
import lzma
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
from bench_repro import copy_project  # noqa: E402  (the same copy bench_repro times)
from machine import machine  # noqa: E402

from tests.support import stage_env  # noqa: E402  (bench_repro put the root on sys.path)

GENERAL_SOURCES = ("gcide", "devil", "jargon")
DOMAIN_SOURCES = ("bible-kjv",)
PARENT = "parents/general"
VARIANTS = {
    "scratch": {"vocab_parent": False, "init": False, "extend": False},
    "scratch, parent vocab": {"vocab_parent": True, "init": False, "extend": False},
    "continued": {"vocab_parent": True, "init": True, "extend": False},
    "continued + ext": {"vocab_parent": True, "init": True, "extend": True},
}


def run_stage(project: Path, *command: str) -> float:
    """Run one stage script as DVC would (python stages/<stage>.py ...); its wall time."""
    env = stage_env(project) | {"MLFLOW_TRACKING_URI": f"sqlite:///{project / 'mlflow.db'}"}
    start = time.perf_counter()
    result = subprocess.run(
        [sys.executable, f"stages/{command[0]}.py", *command[1:]],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
    )
    if result.returncode != 0:
        sys.exit(f"stage {' '.join(command)} failed:\n{result.stderr[-3000:]}")
    return time.perf_counter() - start


def source_files(project: Path, names: tuple[str, ...], documents: int | None) -> list[dict]:
    """ingest.sources for these corpus files: whole, or their first `documents` documents."""
    if documents is None:
        return [{"path": f"data/raw/corpus/{name}.txt.xz"} for name in names]
    sources = []
    for name in names:
        text = lzma.decompress((project / f"data/raw/corpus/{name}.txt.xz").read_bytes()).decode()
        kept = "\n\n".join(text.split("\n\n")[:documents]) + "\n"
        path = project / f"data/raw/bench/{name}.txt"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(kept, encoding="utf-8")
        sources.append({"path": f"data/raw/bench/{name}.txt"})
    return sources


def set_params(project: Path, **sections: dict[str, Any]) -> None:
    """Update params.yaml sections key by key (as `dvc exp run -S section.key=value` does)."""
    path = project / "params.yaml"
    params = yaml.safe_load(path.read_text(encoding="utf-8"))
    for section, values in sections.items():
        params[section].update(values)
    path.write_text(yaml.safe_dump(params, sort_keys=False), encoding="utf-8")


def pretrain_variant(project: Path, variant: dict[str, bool], args: argparse.Namespace) -> dict:
    """vocab → examples → pretrain (→ finetune → evaluate) for one domain variant."""
    parent = {"path": PARENT}
    set_params(
        project,
        vocab={
            "init_from": parent if variant["vocab_parent"] else None,
            "extend_with": args.extend_with if variant["extend"] else 0,
        },
        pretrain={
            "init_from": parent if variant["init"] else None,
            "max_steps": args.steps,
            "lr": args.continued_lr if variant["init"] and args.continued_lr else args.lr,
        },
    )
    shutil.rmtree(project / "data/pretrained", ignore_errors=True)
    seconds = sum(run_stage(project, stage) for stage in ("vocab", "examples", "pretrain"))
    pretrain = json.loads((project / "metrics/pretrain.json").read_text())
    vocab = json.loads((project / "metrics/vocab.json").read_text())
    row = {
        "vocab_size": vocab["vocab_size"],
        "added_pieces": vocab.get("added_pieces", 0),
        "mlm_accuracy": pretrain["heldout"]["mlm_accuracy"],
        "masked_tokens": pretrain["heldout"]["masked_tokens"],
        "mlm_loss": pretrain["heldout"]["mlm_loss"],
        "pretrain_seconds": pretrain["train"]["seconds"],
    }
    if args.finetune:
        shutil.rmtree(project / "data/finetuned", ignore_errors=True)
        tasks = yaml.safe_load((project / "params.yaml").read_text())["finetune"]["tasks"]
        seconds += sum(run_stage(project, "finetune", task) for task in tasks)
        seconds += run_stage(project, "evaluate")
        evaluation = json.loads((project / "metrics/eval.json").read_text())
        split = evaluation["headline_split"]
        row["downstream_average"] = evaluation["average"][split]["pretrained"]["mean"]
        row["downstream_seed_std"] = evaluation["average"][split]["pretrained"]["std"]
        row["downstream_standard_error"] = evaluation["average"]["standard_error"]["pretrained"]
        row["downstream_split"] = split
    row["seconds"] = seconds
    return row


def benchmark(project: Path, args: argparse.Namespace) -> dict[str, Any]:
    """The general parent, then each domain variant; their rows."""
    common_vocab = {"max_unk_rate": 1.0} if args.documents else {}  # a small slice lacks chars
    finetune: dict[str, Any] = {"inits": ["pretrained"], "seeds": args.seeds}
    if args.epochs:
        finetune["epochs"] = args.epochs
    set_params(project, vocab=common_vocab, finetune=finetune)
    if args.finetune_examples:
        params = yaml.safe_load((project / "params.yaml").read_text())
        for spec in params["finetune"]["tasks"].values():
            spec["max_train_examples"] = args.finetune_examples
        (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    set_params(
        project,
        ingest={"sources": source_files(project, GENERAL_SOURCES, args.documents)},
        pretrain={"max_steps": args.parent_steps, "lr": args.lr},
    )
    for stage in ("ingest", "vocab", "examples", "pretrain"):
        run_stage(project, stage)
    shutil.copytree(project / "data/pretrained/model", project / PARENT)
    general = json.loads((project / "metrics/pretrain.json").read_text())["heldout"]
    set_params(project, ingest={"sources": source_files(project, DOMAIN_SOURCES, args.documents)})
    run_stage(project, "ingest")
    rows = {name: pretrain_variant(project, variant, args) for name, variant in VARIANTS.items()}
    return {"parent_general_mlm_accuracy": general["mlm_accuracy"], "variants": rows}


def table(result: dict[str, Any], args: argparse.Namespace) -> str:
    downstream = args.finetune
    header = "| variant | vocabulary | Bible held-out MLM accuracy | MLM loss |"
    header += " downstream average |" if downstream else ""
    lines = [header, "|" + " --- |" * (5 if downstream else 4)]
    for name, row in result["variants"].items():
        vocabulary = f"{row['vocab_size']:,}" + (
            f" (+{row['added_pieces']})" if row["added_pieces"] else ""
        )
        # binomial standard error of an accuracy over the held-out masked tokens
        accuracy, masked = row["mlm_accuracy"], row["masked_tokens"]
        error = (accuracy * (1 - accuracy) / masked) ** 0.5
        line = f"| {name} | {vocabulary} | {accuracy:.4f} ± {error:.4f} | {row['mlm_loss']:.3f} |"
        if downstream:
            line += (
                f" {row['downstream_average']:.4f} ± {row['downstream_standard_error']:.4f}"
                f" (seed std {row['downstream_seed_std']:.4f}) |"
            )
        lines.append(line)
    lines += [
        "",
        f"Parent: {args.parent_steps} steps on the dictionaries (held-out MLM accuracy there "
        f"{result['parent_general_mlm_accuracy']:.4f}); each variant {args.steps} steps on the "
        f"Bible; documents per source: {args.documents or 'all'}"
        + (f"; fine-tuning seeds {args.seeds}" if downstream else "")
        + f". {machine()}, "
        f"{date.today().isoformat()}, {result['seconds']:.0f} s in all.",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--parent-steps", type=int, default=1400, help="general pretraining")
    parser.add_argument("--steps", type=int, default=700, help="domain pretraining, per variant")
    parser.add_argument("--lr", type=float, default=1e-3, help="peak lr (params.yaml's default)")
    parser.add_argument(
        "--continued-lr", type=float, default=None, help="peak lr of continued runs (default: --lr)"
    )
    parser.add_argument("--extend-with", type=int, default=500, help="vocab.extend_with")
    parser.add_argument("--documents", type=int, default=None, help="per source (default: all)")
    parser.add_argument("--no-finetune", dest="finetune", action="store_false")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--epochs", type=int, default=None, help="fine-tuning epochs")
    parser.add_argument("--finetune-examples", type=int, default=None, help="max_train_examples")
    parser.add_argument("--workdir", type=Path, default=None, help="kept when given")
    parser.add_argument("--json", type=Path, default=None, help="also write the rows here")
    args = parser.parse_args()
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="bench-continued-"))
    project = workdir / "project"
    project.mkdir(parents=True)
    copy_project(project)
    start = time.perf_counter()
    try:
        result = benchmark(project, args)
    finally:
        if args.workdir is None:
            shutil.rmtree(workdir, ignore_errors=True)
    result["seconds"] = time.perf_counter() - start
    print(table(result, args))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
