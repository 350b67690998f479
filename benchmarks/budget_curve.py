"""Downstream average against pretraining minutes: where does pretraining pay off?

Usage:
    python benchmarks/budget_curve.py                    # 5, 10, 20 and 40 minutes
    python benchmarks/budget_curve.py --minutes 5 10 20 40 80
    python benchmarks/budget_curve.py --rerun 5          # measure a kept budget again
    python benchmarks/budget_curve.py --minutes 5 10     # kept rows only: prints, redraws the PNG
    python benchmarks/budget_curve.py --fill-pretraining # kept rows without MLM figures: pretrain
    python benchmarks/budget_curve.py --write-docs       # and the table into docs/finetune.md
    python benchmarks/budget_curve.py --set pretrain.lr=0.002 --output other.tsv  # not the default
    python benchmarks/budget_curve.py --smoke --minutes 0.2 0.4   # checks the script runs
    python benchmarks/budget_curve.py --minutes 20 --steps-of reports/budget_curve.tsv \
        --set pretrain.seed=1 --output reports/budget_curve-pretrain_seed_1.tsv  # a replicate

In a temp copy of the project, for each budget: a 30-step calibration run measures the default
model's seconds per step on this machine, `pretrain.max_steps` is set to fill the budget (warmup
stays `warmup_steps`, at most a tenth of the steps), and `dvc repro evaluate` pretrains,
fine-tunes every task and evaluates. Writes reports/budget_curve.tsv in this checkout (the DVC
plots `budget-curve` and `budget-curve-mlm` in dvc.yaml: `dvc plots show`; and
docs/img/budget_curve.png) with the test average of pretrained, scratch and bag-of-words (mean and
seed std). Scratch and bag-of-words do not depend on the pretraining budget: they are fit once
(the first budget measured) and repeated on every row.
Each row also keeps the pretrained encoder's held-out MLM accuracy, its ratio to the unigram
baseline's and NSP accuracy (metrics/pretrain.json), and the script prints, for each target
set for the default run, the smallest budget that meets it: pretrained − scratch at least 3× the
larger seed std, pretrained at least bag-of-words, MLM accuracy at least 3× the unigram's.

`--set KEY=VALUE` (dotted params key, YAML value; repeatable) measures something other than
params.yaml's default; each row records its settings (`settings` column), and a file's rows must
share them (one line and exit 1 otherwise: use another `--output`). `--steps-of FILE` takes each
budget's steps from a kept curve instead of calibrating: the same runs on another machine or
under another setting (`--set pretrain.seed=1`: another draw of the pretraining, which the
fine-tuning seeds' spread does not cover); a budget FILE lacks is one line and exit 1.
`--fill-pretraining` pretrains, for each kept row without MLM figures, the row's own steps under
its own settings — the encoder its downstream scores came from, as the pipeline is deterministic
— and fills them in, without fine-tuning again (about the sum of those rows' budgets).

Each budget's row is written as soon as it is measured, and a later run skips the budgets
already in the file (`--rerun` to measure one again), so the curve fills over several
sittings. Wall clock on 2 quiet cores: about the sum of the budgets plus ~6 min per budget
(calibration, fine-tuning, evaluation): ~1.7 hours for 5, 10, 20, 40.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml
from pipeline_runs import (
    ROOT,
    average,
    pretrain_metrics,
    project_copy,
    read_params,
    read_tsv,
    replace_section,
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
DOCS = ROOT / "docs/finetune.md"  # the table goes between its budget_curve markers
MODELS = ("pretrained", "scratch", "bag_of_words")
# the pretrained encoder's held-out figures (metrics/pretrain.json)
PRETRAINING = ("mlm_accuracy", "mlm_over_unigram", "nsp_accuracy")
HEADER = (
    ["minutes", "steps"]
    + [f"{m}{suffix}" for m in MODELS for suffix in ("", "_std")]
    + [*PRETRAINING, "settings"]
)
TARGETS = {  # issue #11's targets for the default run, as `targets` checks them
    "beats_scratch": "pretrained − scratch ≥ 3 seed std",
    "reaches_bag_of_words": "pretrained ≥ bag-of-words",
    "mlm_3x_unigram": "MLM accuracy ≥ 3× unigram",
}
# fit once: neither depends on the pretraining budget (same shape, seeds, data and recipe)
FIXED_MODELS = ("scratch", "bag_of_words")


def read_rows(path: Path) -> dict[float, dict[str, str]]:
    """The budgets measured so far, by minutes (none when the file does not exist); a row whose
    settings do not parse is one line naming the file and the row, and exit 1."""
    rows = {float(row["minutes"]): row for row in read_tsv(path, HEADER, "a budget curve")}
    for minutes, row in rows.items():
        row_settings(row, f"{path}: the {minutes:g}-minute row's settings")
    return rows


def write_rows(path: Path, rows: dict[float, dict[str, str]]) -> None:
    """All rows by minutes, written atomically."""
    write_tsv(path, HEADER, (rows[minutes] for minutes in sorted(rows)))


def parse_settings(items: Sequence[str], where: str = "--set") -> dict[str, Any]:
    """`KEY=VALUE` items (`--set`'s, or a row's `settings` cell: `where` says which) as params
    overrides (VALUE read as YAML: 0.002, true, [1, 2]); a malformed item is one line and exit 1."""
    settings: dict[str, Any] = {}
    for item in items:
        key, equals, value = item.partition("=")
        if not equals or not key.strip():
            sys.exit(f"error: {where} {item!r}: expected KEY=VALUE, e.g. pretrain.lr=0.002")
        try:
            settings[key.strip()] = yaml.safe_load(value)
        except yaml.YAMLError:
            sys.exit(f"error: {where} {item!r}: the VALUE is not YAML (e.g. 0.002, true, [1, 2])")
    return settings


def settings_cell(settings: Mapping[str, Any]) -> str:
    """How a row records the settings it was measured under: ``KEY=VALUE; ...`` sorted, values
    in YAML flow style ("" = params.yaml's default)."""

    def flow(value: Any) -> str:
        return yaml.safe_dump(value, default_flow_style=True, width=10**6).removesuffix("...\n")

    return "; ".join(f"{key}={flow(value).strip()}" for key, value in sorted(settings.items()))


def described(cell: str) -> str:
    """A settings cell in words."""
    return f"settings {cell}" if cell else "the default settings (no --set)"


def row_settings(row: Mapping[str, str], where: str = "a row's settings") -> dict[str, Any]:
    """The settings a row records, as params overrides (`where`: the row, for an error)."""
    return parse_settings(row["settings"].split("; "), where) if row["settings"] else {}


def pretraining_cells(heldout: Mapping[str, Any]) -> dict[str, str]:
    """A row's held-out pretraining figures (NSP accuracy empty when NSP is off)."""
    nsp = heldout.get("nsp_accuracy")
    return {
        "mlm_accuracy": f"{heldout['mlm_accuracy']:.4f}",
        "mlm_over_unigram": f"{heldout['mlm_accuracy_over_unigram']:.3f}",
        "nsp_accuracy": "" if nsp is None else f"{nsp:.4f}",
    }


def targets(row: Mapping[str, str]) -> dict[str, bool | None]:
    """Which of the default run's targets a budget meets (None: its figure is not measured).

    pretrained − scratch at least 3× the larger of their seed stds; pretrained at least
    bag-of-words; held-out MLM accuracy at least 3× the unigram baseline's.
    """
    pretrained, scratch = float(row["pretrained"]), float(row["scratch"])
    spread = max(float(row["pretrained_std"]), float(row["scratch_std"]))
    ratio = row["mlm_over_unigram"]
    return {
        "beats_scratch": pretrained - scratch >= 3 * spread,
        "reaches_bag_of_words": pretrained >= float(row["bag_of_words"]),
        "mlm_3x_unigram": float(ratio) >= 3 if ratio else None,
    }


def first_meeting(rows: Mapping[float, Mapping[str, str]], target: str) -> float | None:
    """The smallest budget that meets `target` (a key of `TARGETS`); None: none does."""
    return next((minutes for minutes in sorted(rows) if targets(rows[minutes])[target]), None)


def plot(rows: dict[float, dict[str, str]], path: Path) -> None:
    """The curve as a PNG for the docs (matplotlib comes with mlflow): the test average, mean ±
    seed std, and beside it the MLM accuracy over unigram against the 3× target."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    minutes = sorted(rows)
    figure, (scores, mlm) = plt.subplots(1, 2, figsize=(10, 3.6), dpi=100)
    for model, style in zip(MODELS, ("o-", "s--", ":"), strict=True):
        means = [float(rows[m][model]) for m in minutes]
        stds = [float(rows[m][f"{model}_std"]) for m in minutes]
        scores.errorbar(minutes, means, yerr=stds, fmt=style, capsize=3, label=model)
    scores.set_ylabel("test average score")
    scores.legend()
    measured = [m for m in minutes if rows[m]["mlm_over_unigram"]]
    mlm.plot(measured, [float(rows[m]["mlm_over_unigram"]) for m in measured], "o-")
    mlm.axhline(3.0, linestyle="--", color="grey", label="target: 3× unigram")
    mlm.set_ylabel("held-out MLM accuracy / unigram's")
    mlm.legend()
    for axes in (scores, mlm):
        axes.set_xscale("log", base=2)
        axes.set_xlim(minutes[0] / 1.25, minutes[-1] * 1.25)
        axes.set_xticks(minutes, [f"{m:g}" for m in minutes])
        axes.set_xlabel("pretraining minutes on 2 CPU cores")
        axes.grid(alpha=0.3)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, metadata={"Software": None})
    plt.close(figure)


def pretraining_overrides(base: Mapping[str, Any], fixed: Mapping[str, Any], steps: int) -> dict:
    """`fixed` with pretraining set to `steps` steps (warmup at most a tenth of them)."""
    warmup = int(setting(base, fixed, "pretrain.warmup_steps"))
    return dict(fixed) | {
        "pretrain.max_steps": steps,
        "pretrain.warmup_steps": min(warmup, steps // 10 or 1),
        "pretrain.checkpoint_every": steps,
    }


def row_overrides(
    base: Mapping[str, Any], fixed: Mapping[str, Any], row: Mapping[str, str]
) -> dict[str, Any]:
    """The params overrides that pretrain a kept row's encoder again: its steps, its settings."""
    return pretraining_overrides(base, dict(fixed) | row_settings(row), int(row["steps"]))


def budget_steps(
    minutes: float, rate: float | None, steps_of: Mapping[float, Mapping[str, str]] | None
) -> int:
    """A budget's pretraining steps: the kept curve's (`steps_of`, its rows by minutes) when
    given, else what fills `minutes` at the calibrated `rate` (seconds per step)."""
    if steps_of is not None:
        return int(steps_of[minutes]["steps"])
    assert rate is not None, "no calibration and no kept curve to take the steps from"
    return steps_for_budget(rate, minutes)


def measure(
    project: Path,
    todo: Sequence[float],
    rows: dict[float, dict[str, str]],
    fixed: Mapping[str, Any],
    settings: Mapping[str, Any],
    output: Path | None,
    steps_of: Mapping[float, Mapping[str, str]] | None = None,
) -> None:
    """Pretrain, fine-tune and evaluate each budget of `todo`; each row into `rows` (and
    `output`) as soon as it is measured. Each budget's steps come from a calibration run on this
    machine, or from the kept curve `steps_of` (its rows by minutes)."""
    base = read_params(project)
    rate = None if steps_of is not None else seconds_per_step(project, base, fixed)
    fixed_values = next(iter(rows.values()), None)
    for minutes in todo:
        steps = budget_steps(minutes, rate, steps_of)
        overrides = pretraining_overrides(base, fixed, steps)
        if fixed_values is not None:
            overrides["finetune.inits"] = ["pretrained"]
        write_params(project, base, overrides)
        repro(project, "evaluate")
        found = results(project)
        row = {"minutes": f"{minutes:g}", "steps": str(steps)}
        for model in MODELS:
            if model in FIXED_MODELS and fixed_values is not None:
                row |= {m: fixed_values[m] for m in (model, f"{model}_std")}
                continue
            mean, std = average(found["eval"], model)
            row |= {model: f"{mean:.4f}", f"{model}_std": f"{std:.4f}"}
        row |= pretraining_cells(found["pretrain"]["heldout"])
        row["settings"] = settings_cell(settings)
        fixed_values = fixed_values or row
        rows[minutes] = row
        print("\t".join(row[h] for h in HEADER), file=sys.stderr, flush=True)
        if output is not None:
            write_rows(output, rows)


def fill_pretraining(
    project: Path,
    rows: dict[float, dict[str, str]],
    fixed: Mapping[str, Any],
    output: Path | None,
) -> None:
    """For each kept row without MLM figures: pretrain its steps under its settings and fill
    them in (the encoder its downstream scores came from; nothing is fine-tuned)."""
    base = read_params(project)
    for minutes in sorted(rows):
        row = rows[minutes]
        if row["mlm_accuracy"]:
            continue
        write_params(project, base, row_overrides(base, fixed, row))
        repro(project, "pretrain")
        row |= pretraining_cells(pretrain_metrics(project)["heldout"])  # evaluate did not run
        print(
            f"{minutes:g} min, {row['steps']} steps: {row['mlm_accuracy']} MLM accuracy "
            f"({row['mlm_over_unigram']}x unigram)",
            file=sys.stderr,
            flush=True,
        )
        if output is not None:
            write_rows(output, rows)


def table(rows: Mapping[float, Mapping[str, str]]) -> str:
    """The curve as a markdown table: scores mean ± seed std (pretrained in bold where it
    reaches bag-of-words), MLM accuracy with its ratio to unigram's, and each target met."""

    def score(row: Mapping[str, str], model: str) -> str:
        return f"{float(row[model]):.3f} ± {float(row[f'{model}_std']):.3f}"

    lines = [
        "| pretraining | steps (× 32) | pretrained | scratch | bag-of-words | held-out MLM "
        "accuracy (× unigram) | " + " | ".join(TARGETS.values()) + " |",
        "| ---: | ---: | ---: | ---: | ---: | ---: | :---: | :---: | :---: |",
    ]
    for minutes in sorted(rows):
        row = rows[minutes]
        pretrained = score(row, "pretrained")
        if float(row["pretrained"]) >= float(row["bag_of_words"]):
            pretrained = f"**{pretrained}**"
        mlm = (
            row["mlm_accuracy"]
            and f"{float(row['mlm_accuracy']):.3f} ({float(row['mlm_over_unigram']):.2f}×)"
        )
        met = [
            "–" if value is None else "yes" if value else "no" for value in targets(row).values()
        ]
        cells = [
            f"{minutes:g} min",
            f"{int(row['steps']):,}",
            pretrained,
            score(row, "scratch"),
            f"{float(row['bag_of_words']):.3f}",
            mlm or "–",
            *met,
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def report(rows: Mapping[float, Mapping[str, str]]) -> None:
    """The table, then per target the smallest budget that meets it."""
    print("\t".join(HEADER))
    for minutes in sorted(rows):
        print("\t".join(rows[minutes][h] for h in HEADER))
    if not rows:
        return
    for target, label in TARGETS.items():
        found = first_meeting(rows, target)
        where = f"from {found:g} minutes" if found is not None else "at no budget measured"
        print(f"{label}: {where}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, nargs="+", default=[5, 10, 20, 40])
    parser.add_argument(
        "--rerun", type=float, nargs="+", default=[], help="budgets to measure again if kept"
    )
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a params override for every run (dotted key, YAML value); repeatable",
    )
    parser.add_argument(
        "--fill-pretraining",
        action="store_true",
        help="pretrain the kept rows without MLM figures (no fine-tuning) and fill them in",
    )
    parser.add_argument(
        "--write-docs", action="store_true", help=f"put the table in {DOCS.relative_to(ROOT)}"
    )
    parser.add_argument(
        "--smoke", action="store_true", help="a tiny pipeline: checks the script runs"
    )
    parser.add_argument(
        "--steps-of",
        type=Path,
        default=None,
        metavar="FILE",
        help="each budget's steps from this kept curve, not from a calibration run",
    )
    parser.add_argument("--keep", action="store_true", help="keep the temp project copy")
    parser.add_argument("--output", type=str, default=None, help=f"default: {OUTPUT}")
    parser.add_argument(
        "--figure",
        type=Path,
        default=None,
        help=f"the curve as a PNG (default: {FIGURE} when --output is the default)",
    )
    args = parser.parse_args()
    settings = parse_settings(args.set)
    # a smoke run's numbers mean nothing: they go to the terminal unless --output says where
    output = Path(args.output) if args.output else (None if args.smoke else OUTPUT)
    rows = read_rows(output) if output else {}
    kept = {row["settings"] for row in rows.values()} - {settings_cell(settings)}
    if args.fill_pretraining:
        todo = []
    else:
        todo = [m for m in sorted(args.minutes) if m not in rows or m in args.rerun]
        for minutes in sorted(set(args.minutes) - set(todo)):
            print(f"{minutes:g} min: kept (--rerun {minutes:g} to measure again)", file=sys.stderr)
        if todo and kept:
            sys.exit(
                f"error: {output}: its rows were measured with {described(sorted(kept)[0])}, "
                f"this run with {described(settings_cell(settings))}; use another --output"
            )
    steps_of = read_rows(args.steps_of) if args.steps_of else None
    missing = sorted(set(todo) - set(steps_of)) if steps_of is not None else []
    if missing:
        sys.exit(
            f"error: --steps-of {args.steps_of}: no {missing[0]:g}-minute row "
            f"(it has {', '.join(f'{m:g}' for m in sorted(steps_of)) or 'none'})"
        )
    unfilled = args.fill_pretraining and any(not row["mlm_accuracy"] for row in rows.values())
    if todo or unfilled:
        with project_copy(args.keep) as project:
            fixed = smoke_base(read_params(project)) if args.smoke else {}
            fixed.pop("pretrain.max_steps", None)
            if todo:
                measure(project, todo, rows, fixed | settings, settings, output, steps_of)
            else:
                fill_pretraining(project, rows, fixed, output)
    report(rows)
    if args.write_docs and rows:
        replace_section(DOCS, "budget_curve", table(rows))
    # the docs' figure draws the docs' curve only: another --output (or a smoke run) needs --figure
    figure = args.figure or (FIGURE if output == OUTPUT else None)
    if figure is not None and rows:
        plot(rows, figure)


if __name__ == "__main__":
    main()
