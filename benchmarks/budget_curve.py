"""Downstream average against pretraining minutes: where does pretraining pay off?

Usage:
    python benchmarks/budget_curve.py                    # 5, 10, 20 and 40 minutes
    python benchmarks/budget_curve.py --minutes 5 10 20 40 80
    python benchmarks/budget_curve.py --rerun 5          # measure a kept budget again
    python benchmarks/budget_curve.py --minutes 5 10     # kept rows only: prints, redraws the PNG
    python benchmarks/budget_curve.py --smoke --minutes 0.2 0.4   # checks the script runs

In a temp copy of the project, for each budget: a 30-step calibration run measures the default
model's seconds per step on this machine, `pretrain.max_steps` is set to fill the budget (warmup
stays `warmup_steps`, at most a tenth of the steps), and `dvc repro evaluate` pretrains,
fine-tunes every task and evaluates. Writes reports/budget_curve.tsv in this checkout (the DVC
plot `budget-curve` in dvc.yaml: `dvc plots show`; and docs/img/budget_curve.png) with the test
average of pretrained, scratch and bag-of-words (mean and seed std), and prints the smallest
budget at which pretrained crosses bag-of-words. Scratch and bag-of-words do not depend on the
pretraining budget: they are fit once (the first budget measured) and repeated on every row.

Each budget's row is written as soon as it is measured, and a later run skips the budgets
already in the file (`--rerun` to measure one again), so the curve fills over several
sittings. Wall clock on 2 quiet cores: about the sum of the budgets plus ~6 min per budget
(calibration, fine-tuning, evaluation): ~1.7 hours for 5, 10, 20, 40.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from pipeline_runs import (
    ROOT,
    average,
    project_copy,
    read_params,
    read_tsv,
    repro,
    results,
    seconds_per_step,
    setting,
    smoke_base,
    steps_for_budget,
    write_params,
    write_tsv,
)

OUTPUT = ROOT / "reports/budget_curve.tsv"
FIGURE = ROOT / "docs/img/budget_curve.png"
MODELS = ("pretrained", "scratch", "bag_of_words")
HEADER = ["minutes", "steps"] + [f"{m}{suffix}" for m in MODELS for suffix in ("", "_std")]
# fit once: neither depends on the pretraining budget (same shape, seeds, data and recipe)
FIXED_MODELS = ("scratch", "bag_of_words")


def read_rows(path: Path) -> dict[float, dict[str, str]]:
    """The budgets measured so far, by minutes (none when the file does not exist)."""
    return {float(row["minutes"]): row for row in read_tsv(path, HEADER, "a budget curve")}


def write_rows(path: Path, rows: dict[float, dict[str, str]]) -> None:
    """All rows by minutes, written atomically."""
    write_tsv(path, HEADER, (rows[minutes] for minutes in sorted(rows)))


def crossing(rows: dict[float, dict[str, str]]) -> float | None:
    """The smallest budget at which pretrained reaches bag-of-words (None: none does)."""
    for minutes in sorted(rows):
        if float(rows[minutes]["pretrained"]) >= float(rows[minutes]["bag_of_words"]):
            return minutes
    return None


def plot(rows: dict[float, dict[str, str]], path: Path) -> None:
    """The curve as a PNG for the docs (matplotlib comes with mlflow): mean ± seed std."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    minutes = sorted(rows)
    figure, axes = plt.subplots(figsize=(6, 3.6), dpi=100)
    for model, style in zip(MODELS, ("o-", "s--", ":"), strict=True):
        means = [float(rows[m][model]) for m in minutes]
        stds = [float(rows[m][f"{model}_std"]) for m in minutes]
        axes.errorbar(minutes, means, yerr=stds, fmt=style, capsize=3, label=model)
    axes.set_xscale("log", base=2)
    axes.set_xticks(minutes, [f"{m:g}" for m in minutes])
    axes.set_xlabel("pretraining minutes on 2 CPU cores")
    axes.set_ylabel("test average score")
    axes.legend()
    axes.grid(alpha=0.3)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, metadata={"Software": None})
    plt.close(figure)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, nargs="+", default=[5, 10, 20, 40])
    parser.add_argument(
        "--rerun", type=float, nargs="+", default=[], help="budgets to measure again if kept"
    )
    parser.add_argument(
        "--smoke", action="store_true", help="a tiny pipeline: checks the script runs"
    )
    parser.add_argument("--keep", action="store_true", help="keep the temp project copy")
    parser.add_argument("--output", type=str, default=None, help=f"default: {OUTPUT}")
    parser.add_argument(
        "--figure", type=Path, default=None, help=f"the curve as a PNG (default: {FIGURE})"
    )
    args = parser.parse_args()
    # a smoke run's numbers mean nothing: they go to the terminal unless --output says where
    output = Path(args.output) if args.output else (None if args.smoke else OUTPUT)
    rows = read_rows(output) if output else {}
    todo = [m for m in sorted(args.minutes) if m not in rows or m in args.rerun]
    for minutes in sorted(set(args.minutes) - set(todo)):
        print(f"{minutes:g} min: kept (--rerun {minutes:g} to measure again)", file=sys.stderr)
    fixed_values = next(iter(rows.values()), None)
    if todo:
        with project_copy(args.keep) as project:
            base = read_params(project)
            fixed = smoke_base(base) if args.smoke else {}
            fixed.pop("pretrain.max_steps", None)
            rate = seconds_per_step(project, base, fixed)
            warmup = int(setting(base, fixed, "pretrain.warmup_steps"))
            for minutes in todo:
                steps = steps_for_budget(rate, minutes)
                overrides = fixed | {
                    "pretrain.max_steps": steps,
                    "pretrain.warmup_steps": min(warmup, steps // 10 or 1),
                    "pretrain.checkpoint_every": steps,
                }
                if fixed_values is not None:
                    overrides["finetune.inits"] = ["pretrained"]
                write_params(project, base, overrides)
                repro(project, "evaluate")
                evaluation = results(project)["eval"]
                row = {"minutes": f"{minutes:g}", "steps": str(steps)}
                for model in MODELS:
                    if model in FIXED_MODELS and fixed_values is not None:
                        row |= {m: fixed_values[m] for m in (model, f"{model}_std")}
                        continue
                    mean, std = average(evaluation, model)
                    row |= {model: f"{mean:.4f}", f"{model}_std": f"{std:.4f}"}
                fixed_values = fixed_values or row
                rows[minutes] = row
                print("\t".join(row[h] for h in HEADER), file=sys.stderr, flush=True)
                if output is not None:
                    write_rows(output, rows)
    print("\t".join(HEADER))
    for minutes in sorted(rows):
        print("\t".join(rows[minutes][h] for h in HEADER))
    figure = args.figure or (None if args.smoke else FIGURE)
    if figure is not None and rows:
        plot(rows, figure)
    found = crossing(rows)
    if found is None:
        print(f"pretrained does not reach bag-of-words within {max(rows, default=0):g} minutes")
    else:
        print(f"pretrained reaches bag-of-words at {found:g} minutes of pretraining")


if __name__ == "__main__":
    main()
