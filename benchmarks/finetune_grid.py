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

In a temp copy of the project, `dvc repro pretrain` makes the default encoder once; each setting
then fine-tunes every task of params.yaml (both inits, every seed) through the library
(`bertforge.finetune.train.train_seed`: the stage's recipe, without writing models, so that
``pooling: mean`` — refused at export — can be measured too). The pick is the setting with the
best **pretrained dev** average; test is reported beside it. Expect ~5 min per setting on 2 quiet
cores (12 settings: ~1 hour, plus ~8 min of pretraining).
"""

from __future__ import annotations

import argparse
import contextlib
import platform
import shutil
import sys
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np
import torch
from pipeline_runs import (
    ROOT,
    project_copy,
    read_params,
    replace_section,
    repro,
    smoke_base,
    write_params,
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


def measure(section: dict[str, Any], changes: dict[str, Any]) -> dict[str, Any]:
    """Every task × init × seed of the finetune section with `changes`; averages per init."""
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
    return averages


def row(label: dict[str, Any], averages: dict, inits: list[str]) -> list[str]:
    cells = [
        str(label.get("learning_rate", "")),
        str(label.get("batch_size", "")),
        label.get("change", ""),
    ]
    for init, split in [(i, s) for i in inits for s in ("dev", "test")]:
        mean, std = averages[(init, split)]
        cells.append(f"{mean:.3f} ± {std:.3f}")
    return cells


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
    args = parser.parse_args()
    if args.smoke and args.model:
        parser.error("--model is the default encoder; --smoke pretrains a tiny one of its own")
    rows = []
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
        section = read_params(project)["finetune"]
        inits = section.get("inits", ["pretrained", "scratch"])
        grid = [(lr, batch) for lr in LEARNING_RATES for batch in BATCH_SIZES]
        if args.smoke:
            grid = grid[:2]
        if args.cell:
            grid = [(args.cell[0], int(args.cell[1]))] if "none" in args.changes else []
        results = {}
        with contextlib.chdir(project):
            for lr, batch in grid:
                changes = {"learning_rate": lr, "batch_size": batch}
                results[(lr, batch)] = measure(section, changes)
                rows.append(row(changes, results[(lr, batch)], inits))
                print(" | ".join(rows[-1]), file=sys.stderr, flush=True)
            if args.cell:
                best = (args.cell[0], int(args.cell[1]))
            else:
                best = max(results, key=lambda cell: results[cell][("pretrained", "dev")][0])
            lr, batch = best
            for change in [c for c in args.changes if c != "none"]:
                values = SINGLE_CHANGES[change]
                changes = {"learning_rate": lr, "batch_size": batch, **values}
                averages = measure(section, changes)
                rows.append(row({**changes, "change": change}, averages, inits))
                print(" | ".join(rows[-1]), file=sys.stderr, flush=True)
    columns = ["lr", "batch", "change"] + [f"{i} {s}" for i in inits for s in ("dev", "test")]
    machine = f"{platform.node()} ({platform.processor() or platform.machine()})"
    smoke = " (SMOKE: meaningless)" if args.smoke else ""
    table = "\n".join(
        [
            f"Measured {date.today()} on {machine}{smoke}; `python benchmarks/finetune_grid.py "
            f"{' '.join(sys.argv[1:])}`. Average score over the tasks, mean ± std over seeds; "
            + ("cell given" if args.cell else "best cell on pretrained dev")
            + f": lr {best[0]:g}, batch {best[1]}.",
            "",
            "| " + " | ".join(columns) + " |",
            "| " + " | ".join("---" for _ in columns) + " |",
            *("| " + " | ".join(r) + " |" for r in rows),
        ]
    )
    print(table)
    if args.write_docs:
        replace_section(ROOT / "docs/finetune.md", "finetune_grid", table)


if __name__ == "__main__":
    main()
