"""reports/eval.md: the evaluation table as a reader meets it — headline first, then every metric.

The report, not the task cards, is the source of truth for how each model does: the baselines
here are fit on the same training subset as the fine-tuning, and every score carries its
standard error, so a reader sees which differences are noise and which tasks no model learns.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from bertforge.finetune.metrics import GLUE_METRIC_PAIRS

MODEL_TITLES = {"bag_of_words": "bag-of-words", "majority": "majority"}


def _cell(stats: Mapping[str, float], error: float | None = None) -> str:
    if error is None:
        return f"{stats['mean']:.3f} ± {stats['std']:.3f}"
    return f"{stats['mean']:.3f} ± {error:.3f}"


def _models(evaluation: Mapping[str, Any]) -> list[str]:
    return [*evaluation["inits"], *evaluation.get("baselines", [])]


def render_report(evaluation: Mapping[str, Any]) -> str:
    """reports/eval.md: the headline table, then every metric on test and dev."""
    headline = evaluation["headline_split"]
    inits, models = evaluation["inits"], _models(evaluation)
    compare = {"pretrained", "scratch"} <= set(inits)
    with_errors = "standard_error" in evaluation["average"]
    floor_column = any("at_floor" in task for task in evaluation["tasks"].values())
    seeds = ", ".join(str(seed) for seed in evaluation["seeds"])
    titles = [MODEL_TITLES.get(model, model) for model in models]
    if with_errors:
        how = (
            f"Each cell is the mean over seeds {seeds} ± its standard error: the test-set "
            "bootstrap error of the score and, for fine-tuned models, the seed-to-seed spread "
            "of the mean (seed standard deviations are in the tables below). The baselines are "
            "fit on the same training subset as the fine-tuning; they are deterministic."
        )
    else:
        how = f"Each cell is the mean ± sample standard deviation over seeds {seeds}."
    lines = [
        "# Evaluation: pretrained vs from scratch vs baselines"
        if len(models) > len(inits)
        else "# Evaluation: pretrained vs from scratch",
        "",
        f"Headline split: **{headline}**. {how} The dev split chose each run's best epoch and "
        "each baseline's regularisation, so dev numbers are optimistic; test numbers are the "
        "ones to quote.",
        "",
        "| task | metric | "
        + " | ".join(titles)
        + (" | Δ" if compare else "")
        + (" | at floor" if floor_column else "")
        + " |",
        "| --- | --- | "
        + " | ".join("---:" for _ in models)
        + (" | ---:" if compare else "")
        + (" | :---:" if floor_column else "")
        + " |",
    ]
    daggers, floors = False, []
    for name, task in evaluation["tasks"].items():
        metric = task["primary_metric"]
        stats = task[headline]
        errors = task.get("standard_error", {})
        mark = " †" if task["test_is_dev"] and headline == "test" else ""
        daggers = daggers or bool(mark)
        # the headline cell is the score (the primary metric, with its GLUE partner)
        cells = [_cell(stats[model]["score"], errors.get(model)) for model in models]
        if compare:
            cells.append(
                f"{stats['pretrained']['score']['mean'] - stats['scratch']['score']['mean']:+.3f}"
            )
        if floor_column:
            cells.append("**yes**" if task.get("at_floor") else "no")
            if task.get("at_floor"):
                floors.append(name)
        scored = " + ".join(GLUE_METRIC_PAIRS.get(metric, (metric,)))
        lines.append(f"| {name}{mark} | {scored} | " + " | ".join(cells) + " |")
    average = evaluation["average"][headline]
    average_errors = evaluation["average"].get("standard_error", {})
    cells = [_cell(average[model], average_errors.get(model)) for model in models]
    cells += [f"{average['delta']:+.3f}"] if compare else []
    cells += [""] if floor_column else []
    lines.append(
        "| **average** | score | " + " | ".join(f"**{c}**" if c else c for c in cells) + " |"
    )
    lines += [
        "",
        "Each task's cell is its *score*: its primary metric, averaged with its GLUE partner "
        "(F1 with accuracy, Pearson with Spearman) and over MNLI's matched and mismatched sets, "
        "as GLUE does; the average is the mean of the task scores, computed per seed.",
    ]
    if floor_column:
        lines += [
            "",
            "*At floor*: no model — pretrained, scratch or bag-of-words — beats the majority "
            "baseline by more than two standard errors of the difference. "
            + (
                f"At floor here: {', '.join(floors)}. Nothing in this pipeline learns "
                + ("these tasks" if len(floors) > 1 else "this task")
                + " at this training budget: differences between models on "
                + ("them" if len(floors) > 1 else "it")
                + " are noise."
                if floors
                else "No task is at floor."
            ),
        ]
    if daggers:
        lines += [
            "",
            "† No labelled test split (GLUE): the test column repeats dev, which also chose the "
            "best epoch.",
        ]
    if compare:
        spread = max(average["pretrained"]["std"], average["scratch"]["std"])
        verdict = "more" if average["delta"] > spread else "no more"
        lines += [
            "",
            f"Pretrained − scratch on the average: {average['delta']:+.3f}, {verdict} than the "
            f"seed-to-seed standard deviation ({spread:.3f}).",
        ]
    if "bag_of_words" in models and "pretrained" in models:
        gap = average["pretrained"]["mean"] - average["bag_of_words"]["mean"]
        lines += [
            "",
            f"Pretrained − bag-of-words on the average: {gap:+.3f}.",
        ]
    for split in (headline, "dev" if headline == "test" else "test"):
        lines += ["", f"## All metrics, {split} (mean ± seed standard deviation)", ""]
        lines.append("| task | metric | " + " | ".join(titles) + " |")
        lines.append("| --- | --- | " + " | ".join("---:" for _ in models) + " |")
        for name, task in evaluation["tasks"].items():
            for metric in task[split][inits[0]]:
                cells = [_cell(task[split][model][metric]) for model in models]
                lines.append(f"| {name} | {metric} | " + " | ".join(cells) + " |")
    settings = {
        name: task["settings"] for name, task in evaluation["tasks"].items() if "settings" in task
    }
    if settings:
        lines += ["", "## Baseline settings (chosen on dev)", ""]
        for name, by_model in settings.items():
            chosen = ", ".join(
                f"{MODEL_TITLES.get(model, model)} {key}={value:g}"
                for model, values in by_model.items()
                for key, value in values.items()
            )
            lines.append(f"- {name}: {chosen or 'nothing to choose'}")
    rates = {
        name: task["learning_rate"]
        for name, task in evaluation["tasks"].items()
        if "learning_rate" in task
    }
    if rates:
        lines += [
            "",
            "## Fine-tuning learning rates",
            "",
            "Given as `finetune.learning_rate`; given a list, each task and init keeps the rate "
            "with the best mean dev score (data/finetuned/<task>/learning_rates.json).",
            "",
        ]
        for name, by_init in rates.items():
            kept = ", ".join(f"{MODEL_TITLES.get(i, i)} {rate:g}" for i, rate in by_init.items())
            lines.append(f"- {name}: {kept}")
    return "\n".join(lines) + "\n"
