"""The fine-tuning search: learning rate × batch past the old grid's corner, then dropout, pooling
and epochs at the best cell; every setting tried goes into docs/finetune.md.

Usage:
    python benchmarks/finetune_grid.py               # pretrain the default once, then the grid
    python benchmarks/finetune_grid.py --write-docs  # and the table into docs/finetune.md
    python benchmarks/finetune_grid.py --smoke       # checks the script runs (minutes)
    python benchmarks/finetune_grid.py --model data/pretrained/model --inits pretrained
        # the committed default encoder instead of a new pretraining; pretrained init only
    python benchmarks/finetune_grid.py --cell 3e-4 8 --changes "epochs 6"
        # no lr x batch grid: the named single changes at this cell ("none": the cell itself)
    python benchmarks/finetune_grid.py --rerun       # measure kept settings again

In a temp copy of the project, `dvc repro pretrain` makes the default encoder once; each setting
then fine-tunes every task of params.yaml (both inits, every seed) through the library
(`bertforge.finetune.train.train_seed`: the stage's recipe, without writing models, so that
``pooling: mean`` — refused at export — can be measured too). The pick is the setting with the
best **pretrained dev** average; test is reported beside it. Expect ~5 min per setting on 2 quiet
cores (12 settings: ~1 hour, plus ~8 min of pretraining).

Each measured setting is written at once to reports/finetune_grid.tsv, under its full recipe
(learning rate, batch, epochs, dropout, pooling) and the digest of the encoder it fine-tuned, so
that a single change means the same whatever params.yaml said then; a later run skips the
settings found there for the same encoder (`--rerun` to measure them again), and the docs table
is every row of the file: it fills over several sittings.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import math
import shutil
import sys
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np
import torch
from machine import machine
from pipeline_runs import (
    ROOT,
    project_copy,
    read_params,
    read_tsv,
    replace_section,
    repro,
    smoke_base,
    write_params,
    write_tsv,
)

from bertforge.constants import TASK_SPLITS
from bertforge.finetune.data import encode_split
from bertforge.finetune.params import FinetuneParams
from bertforge.finetune.pretrained import check_pretrained_export, load_export_tokenizer
from bertforge.finetune.runs import parallelism
from bertforge.finetune.tasks import load_task
from bertforge.finetune.train import train_seed
from bertforge.parallel import ordered_parallel_map
from bertforge.params import parse

# the old grid's corner was lr 3e-4 (its largest), batch 16 (its smallest): go past both
LEARNING_RATES = (3e-4, 1e-3, 3e-3)
BATCH_SIZES = (8, 16, 32)
# then, one at a time at the best (lr, batch) cell
SINGLE_CHANGES: dict[str, dict[str, Any]] = {
    "dropout 0": {"hidden_dropout": 0.0, "attention_dropout": 0.0},
    "pooling mean": {"pooling": "mean"},
    "epochs 6": {"epochs": 6},
    "dropout 0, epochs 6": {"hidden_dropout": 0.0, "attention_dropout": 0.0, "epochs": 6},
    "epochs 10": {"epochs": 10},
    "dropout 0, epochs 10": {"hidden_dropout": 0.0, "attention_dropout": 0.0, "epochs": 10},
}
MODEL_DIR = Path("data/pretrained/model")

RESULTS = ROOT / "reports/finetune_grid.tsv"
RECIPE = ("learning_rate", "batch_size", "epochs", "hidden_dropout", "attention_dropout", "pooling")
INITS = ("pretrained", "scratch")
SCORES = tuple(f"{i}_{s}{std}" for i in INITS for s in ("dev", "test") for std in ("", "_std"))
FIELDS = (*RECIPE, "steps_per_run", "encoder", "date", "machine", *SCORES)

_SHARED: dict[str, Any] = {}


def _start(shared: dict[str, Any], threads: int) -> None:
    _SHARED.update(shared)
    torch.set_num_threads(threads)


def _train(run: tuple[str, str, int]) -> dict[str, float]:
    """One (task, init, seed): its dev and test scores."""
    name, init, seed = run
    task, encoded = _SHARED["tasks"][name]
    params, config = _SHARED["params"], _SHARED["config"]
    _, result = train_seed(task, encoded, init, seed, MODEL_DIR, config, params)
    return {split: result.metrics[split]["score"] for split in ("dev", "test")}


def recipe(section: dict[str, Any], changes: dict[str, Any]) -> dict[str, str]:
    """The settings a row is known by, as the results file writes them."""
    params = parse(FinetuneParams, section | changes, "params.yaml: finetune")
    return {
        name: f"{getattr(params, name):g}" if name != "pooling" else params.pooling
        for name in RECIPE
    }


def encoder_digest(model_dir: Path) -> str:
    """Short sha256 of the encoder's weights: the rows of one encoder share it."""
    return hashlib.sha256((model_dir / "model.safetensors").read_bytes()).hexdigest()[:12]


def measure(section: dict[str, Any], changes: dict[str, Any]) -> tuple[dict[str, Any], int]:
    """Every task × init × seed of the finetune section with `changes`: averages per init, and
    the optimizer steps of one run (the largest training subset's)."""
    params = parse(FinetuneParams, section | changes, "params.yaml: finetune")
    config = check_pretrained_export(MODEL_DIR, None, params.max_seq_length)
    tokenizer = load_export_tokenizer(MODEL_DIR)
    tasks = {}
    for name, spec in params.tasks.items():
        task = load_task(name, spec)
        encoded = {
            split: encode_split(tokenizer, task, task.split(split), params.max_seq_length)
            for split in TASK_SPLITS
        }
        tasks[name] = (task, encoded)
    runs = [(n, i, s) for n in tasks for i in params.inits for s in params.seeds]
    processes, threads = parallelism(params, len(runs))
    shared = {"tasks": tasks, "params": params, "config": config}
    scores = dict(
        zip(
            runs,
            ordered_parallel_map(
                _train, runs, processes, initializer=_start, initargs=(shared, threads)
            ),
            strict=True,
        )
    )
    averages = {}
    for init in params.inits:
        for split in ("dev", "test"):
            # per seed, the mean over tasks; then mean ± std over seeds
            per_seed = [np.mean([scores[(n, init, s)][split] for n in tasks]) for s in params.seeds]
            std = float(np.std(per_seed, ddof=1)) if len(per_seed) > 1 else 0.0
            averages[(init, split)] = (float(np.mean(per_seed)), std)
    largest = max(len(encoded["train"]) for _, encoded in tasks.values())
    return averages, math.ceil(largest / params.batch_size) * params.epochs


def make_row(settings: dict[str, str], averages: dict, steps: int, encoder: str) -> dict[str, str]:
    """A results row: the recipe, where and when, and each measured init's mean ± seed std."""
    row = {
        **settings,
        "steps_per_run": str(steps),
        "encoder": encoder,
        "date": str(date.today()),
        "machine": machine(),
    }
    for (init, split), (mean, std) in averages.items():
        row |= {f"{init}_{split}": f"{mean:.4f}", f"{init}_{split}_std": f"{std:.4f}"}
    return {field: row.get(field, "") for field in FIELDS}


def key(row: dict[str, str]) -> tuple[str, ...]:
    return (*(row[name] for name in RECIPE), row["encoder"])


def read_rows(path: Path) -> dict[tuple[str, ...], dict[str, str]]:
    return {key(row): row for row in read_tsv(path, FIELDS, "a fine-tuning grid results file")}


def _order(row: dict[str, str]) -> tuple:
    # the lr x batch grid first, then by epochs, dropout (0.1 before 0), pooling, lr, batch
    return (
        float(row["epochs"]),
        -float(row["hidden_dropout"]),
        row["pooling"],
        float(row["learning_rate"]),
        float(row["batch_size"]),
        row["encoder"],
    )


def write_rows(path: Path, rows: dict[tuple[str, ...], dict[str, str]]) -> None:
    write_tsv(path, FIELDS, sorted(rows.values(), key=_order))


def table(rows: dict[tuple[str, ...], dict[str, str]], default: dict[str, str]) -> str:
    """Every row of the results, the `default` recipe's rows in bold."""
    measured = sorted(rows.values(), key=_order)
    inits = [i for i in INITS if any(row[f"{i}_dev"] for row in measured)]
    several = len({row["encoder"] for row in measured}) > 1  # then each row names its encoder
    columns = ["lr", "batch", "epochs", "dropout", "pooling", "steps/run"] + [
        f"{i} {s}" for i in inits for s in ("dev", "test")
    ]
    if several:
        columns.append("encoder")
    lines = [
        f"Measured {', '.join(sorted({r['date'] for r in measured})) or 'never'} on "
        f"{', '.join(sorted({r['machine'] for r in measured})) or '-'}; encoder "
        f"{', '.join(sorted({r['encoder'] for r in measured})) or '-'} (sha256 of its weights); "
        "average score over the tasks, mean ± std over seeds; bold: the default in params.yaml. "
        "`python benchmarks/finetune_grid.py --write-docs`, rows in reports/finetune_grid.tsv.",
        "",
        "| " + " | ".join(columns) + " |",
        "| " + " | ".join("---" for _ in columns) + " |",
    ]
    for row in measured:
        dropout = row["hidden_dropout"]
        if row["attention_dropout"] != dropout:
            dropout = f"{dropout} / {row['attention_dropout']}"
        cells = [
            row["learning_rate"],
            row["batch_size"],
            row["epochs"],
            dropout,
            row["pooling"],
            f"{int(row['steps_per_run']):,}",
        ]
        for init in inits:
            for split in ("dev", "test"):
                mean = row[f"{init}_{split}"]
                cells.append(
                    f"{float(mean):.3f} ± {float(row[f'{init}_{split}_std']):.3f}" if mean else "–"
                )
        if several:
            cells.append(row["encoder"])
        if all(row[name] == default[name] for name in RECIPE):
            cells = [f"**{cell}**" for cell in cells]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--smoke", action="store_true", help="a tiny pipeline: checks the script runs"
    )
    parser.add_argument(
        "--write-docs", action="store_true", help="put the table in docs/finetune.md"
    )
    parser.add_argument("--keep", action="store_true", help="keep the temp project copy")
    parser.add_argument(
        "--model", type=Path, help="an export of the default pretraining to use (skips it)"
    )
    parser.add_argument(
        "--inits", nargs="+", choices=["pretrained", "scratch"], help="default: finetune.inits"
    )
    parser.add_argument(
        "--cell",
        nargs=2,
        type=float,
        metavar=("LR", "BATCH"),
        help="skip the lr x batch grid; the single changes at this cell",
    )
    parser.add_argument(
        "--changes",
        nargs="+",
        choices=["none", *SINGLE_CHANGES],
        default=list(SINGLE_CHANGES),
        help="single changes to measure at the best cell (none: the cell unchanged)",
    )
    parser.add_argument(
        "--rerun", action="store_true", help="measure settings again that the results keep"
    )
    parser.add_argument("--output", type=Path, default=None, help=f"default: {RESULTS}")
    args = parser.parse_args()
    # refused before any run, in one line
    if args.smoke and args.model:
        sys.exit("error: --model is the default encoder; --smoke pretrains a tiny one of its own")
    if args.smoke and args.write_docs:
        sys.exit("error: --write-docs with --smoke: a smoke run's numbers mean nothing")
    # a smoke run's numbers mean nothing: they stay out of the results unless --output says so
    output = args.output or (None if args.smoke else RESULTS)
    rows = read_rows(output) if output else {}
    with project_copy(args.keep) as project:
        base = read_params(project)
        overrides = smoke_base(base) if args.smoke else {}
        if args.inits:
            overrides["finetune.inits"] = args.inits
        write_params(project, base, overrides)
        if args.model:  # the encoder params.yaml's pretrain section made, already exported
            shutil.copytree(args.model.resolve(), project / MODEL_DIR)
        else:
            repro(project, "pretrain")
        encoder = encoder_digest(project / MODEL_DIR)
        section = read_params(project)["finetune"]
        inits = section.get("inits", list(INITS))

        def run(changes: dict[str, Any]) -> dict[str, str]:
            """The row of `changes`: kept from the results if it has every init, else measured."""
            settings = recipe(section, changes)
            kept = rows.get(key(settings | {"encoder": encoder}))
            if kept and all(kept[f"{i}_dev"] for i in inits) and not args.rerun:
                shown = ", ".join(f"{name} {value}" for name, value in settings.items())
                print(f"{shown}: kept from {kept['date']} (--rerun to measure again)",
                      file=sys.stderr)  # fmt: skip
                return kept
            averages, steps = measure(section, changes)
            row = make_row(settings, averages, steps, encoder)
            rows[key(row)] = row
            if output:
                write_rows(output, rows)
            print(" | ".join(row[name] for name in (*RECIPE, *SCORES) if row[name]),
                  file=sys.stderr, flush=True)  # fmt: skip
            return row

        grid = [(lr, batch) for lr in LEARNING_RATES for batch in BATCH_SIZES]
        if args.smoke:
            grid = grid[:2]
        if args.cell:
            grid = [(args.cell[0], int(args.cell[1]))] if "none" in args.changes else []
        with contextlib.chdir(project):
            cells = {(lr, b): run({"learning_rate": lr, "batch_size": b}) for lr, b in grid}
            if args.cell:
                lr, batch = args.cell[0], int(args.cell[1])
            else:
                lr, batch = max(cells, key=lambda cell: float(cells[cell]["pretrained_dev"]))
            for change in [c for c in args.changes if c != "none"]:
                run({"learning_rate": lr, "batch_size": batch, **SINGLE_CHANGES[change]})
    text = table(rows, recipe(section, {}))
    print(text)
    if args.write_docs:
        replace_section(ROOT / "docs/finetune.md", "finetune_grid", text)


if __name__ == "__main__":
    main()
