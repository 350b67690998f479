"""Downstream average against pretraining minutes: where does pretraining pay off?

Usage:
    python benchmarks/budget_curve.py                    # 5, 10, 20 and 40 minutes
    python benchmarks/budget_curve.py --minutes 5 10 20 40 80
    python benchmarks/budget_curve.py --smoke --minutes 0.2 0.4   # checks the script runs

In a temp copy of the project, for each budget: a 30-step calibration run measures the default
model's seconds per step on this machine, `pretrain.max_steps` is set to fill the budget (warmup
stays `warmup_steps`, at most a tenth of the steps), and `dvc repro evaluate` pretrains,
fine-tunes every task and evaluates. Writes reports/budget_curve.tsv in this checkout (the DVC
plot `budget-curve` in dvc.yaml: `dvc plots show`) with the test average of pretrained, scratch
and bag-of-words (mean and seed std), and prints the smallest budget at which pretrained
crosses bag-of-words. Wall clock on 2 quiet cores: about the sum of the budgets plus ~9 min per
budget (calibration, fine-tuning, evaluation): ~2.4 hours for 5, 10, 20, 40.
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
    repro,
    results,
    seconds_per_step,
    smoke_base,
    steps_for_budget,
    write_params,
)

OUTPUT = ROOT / "reports/budget_curve.tsv"
MODELS = ("pretrained", "scratch", "bag_of_words")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, nargs="+", default=[5, 10, 20, 40])
    parser.add_argument(
        "--smoke", action="store_true", help="a tiny pipeline: checks the script runs"
    )
    parser.add_argument("--keep", action="store_true", help="keep the temp project copy")
    parser.add_argument("--output", type=str, default=None, help=f"default: {OUTPUT}")
    args = parser.parse_args()
    # a smoke run's numbers mean nothing: they go to the terminal unless --output says where
    output = Path(args.output) if args.output else (None if args.smoke else OUTPUT)
    header = ["minutes", "steps"] + [f"{m}{suffix}" for m in MODELS for suffix in ("", "_std")]
    lines = ["\t".join(header)]
    crossing = None
    with project_copy(args.keep) as project:
        base = read_params(project)
        fixed = smoke_base(base) if args.smoke else {}
        fixed.pop("pretrain.max_steps", None)
        rate = seconds_per_step(project, base, fixed)
        warmup = int(fixed.get("pretrain.warmup_steps", base["pretrain"]["warmup_steps"]))
        for minutes in sorted(args.minutes):
            steps = steps_for_budget(rate, minutes)
            write_params(
                project,
                base,
                fixed
                | {
                    "pretrain.max_steps": steps,
                    "pretrain.warmup_steps": min(warmup, steps // 10 or 1),
                    "pretrain.checkpoint_every": steps,
                },
            )
            repro(project, "evaluate")
            evaluation = results(project)["eval"]
            values = {model: average(evaluation, model) for model in MODELS}
            lines.append(
                "\t".join(
                    [f"{minutes:g}", str(steps)]
                    + [f"{value:.4f}" for model in MODELS for value in values[model]]
                )
            )
            print(lines[-1], file=sys.stderr, flush=True)
            if crossing is None and values["pretrained"][0] >= values["bag_of_words"][0]:
                crossing = minutes
    if output is not None:
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_text("\n".join(lines) + "\n", encoding="utf-8")
    print("\n".join(lines))
    if crossing is None:
        print(f"pretrained does not reach bag-of-words within {max(args.minutes):g} minutes")
    else:
        print(f"pretrained reaches bag-of-words at {crossing:g} minutes of pretraining")


if __name__ == "__main__":
    main()
