"""The evaluation: every task, pretrained vs from scratch, and the GLUE-style average.

`collect_results` reads what the ``finetune@<task>`` stages wrote, `evaluate_results` makes the
table (metrics/eval.json) and `render_report` writes it as reports/eval.md. Nothing here is
imported by fine-tuning, so editing the report re-runs only this stage.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from bertforge.errors import BertforgeError
from bertforge.finetune.summary import mean_std, read_seed_metrics, summarize_seeds
from bertforge.io import read_json


@dataclass(frozen=True)
class EvaluateParams:
    """The ``evaluate`` section: which split the report leads with."""

    headline_split: Literal["test", "dev"] = "test"


def collect_results(
    output_root: Path, task_names: Sequence[str], inits: Sequence[str], seeds: Sequence[int]
) -> dict[str, tuple[dict[str, Any], list[dict[str, Any]]]]:
    """Each task's task.json and seed metrics; every (init, seed) of params must be there."""
    results = {}
    for name in task_names:
        task_dir = Path(output_root) / name
        info_path = task_dir / "task.json"
        if not info_path.is_file():
            raise BertforgeError(f"{info_path}: not found; run finetune@{name} first")
        seed_metrics = read_seed_metrics(task_dir)
        for init in inits:
            found = [m["seed"] for m in seed_metrics if m["init"] == init]
            if sorted(found) != sorted(seeds):
                raise BertforgeError(
                    f"{task_dir}: init {init!r} has seeds {sorted(found)}, params.yaml "
                    f"finetune.seeds is {sorted(seeds)}; re-run finetune@{name}"
                )
        seed_metrics = [m for m in seed_metrics if m["init"] in inits and m["seed"] in seeds]
        results[name] = (read_json(info_path), seed_metrics)
    return results


def evaluate_results(
    results: Mapping[str, tuple[Mapping[str, Any], Sequence[Mapping[str, Any]]]],
    inits: Sequence[str],
    seeds: Sequence[int],
    headline_split: str,
) -> dict[str, Any]:
    """The evaluation table (metrics/eval.json): per task and init, mean ± std of every metric
    on dev and test, and the GLUE-style average — per seed, the mean of the tasks' scores —
    as mean ± std over seeds, with the pretrained − scratch difference."""
    tasks = {}
    for name, (info, seed_metrics) in results.items():
        summary = summarize_seeds(info, seed_metrics)
        tasks[name] = {
            "primary_metric": info["metric"],
            "test_is_dev": info["test_is_dev"],
            **{split: {init: summary[init][split] for init in inits} for split in ("test", "dev")},
        }
    average: dict[str, Any] = {}
    for split in ("test", "dev"):
        average[split] = {}
        for init in inits:
            # per seed, the mean of the tasks' scores; then mean ± std over seeds
            per_seed = [
                np.mean(
                    [
                        next(m for m in metrics if m["init"] == init and m["seed"] == seed)[split][
                            "score"
                        ]
                        for _, metrics in results.values()
                    ]
                )
                for seed in seeds
            ]
            average[split][init] = mean_std(per_seed)
        if {"pretrained", "scratch"} <= set(inits):
            pretrained, scratch = average[split]["pretrained"], average[split]["scratch"]
            average[split]["delta"] = pretrained["mean"] - scratch["mean"]
    return {
        "headline_split": headline_split,
        "inits": list(inits),
        "seeds": list(seeds),
        "average": average,
        "tasks": tasks,
    }


def _cell(stats: Mapping[str, float]) -> str:
    return f"{stats['mean']:.3f} ± {stats['std']:.3f}"


def render_report(evaluation: Mapping[str, Any]) -> str:
    """reports/eval.md: the headline table, then every metric on test and dev."""
    headline = evaluation["headline_split"]
    inits = evaluation["inits"]
    compare = {"pretrained", "scratch"} <= set(inits)
    seeds = ", ".join(str(seed) for seed in evaluation["seeds"])
    lines = [
        "# Evaluation: pretrained vs from scratch",
        "",
        f"Headline split: **{headline}**. Each cell is the mean ± sample standard deviation over "
        f"seeds {seeds}. The dev split chose each run's best epoch, so dev numbers are "
        "optimistic; test numbers are the ones to quote.",
        "",
        "| task | metric | " + " | ".join(inits) + (" | Δ |" if compare else " |"),
        "| --- | --- | " + " | ".join("---:" for _ in inits) + (" | ---: |" if compare else " |"),
    ]
    daggers = False
    for name, task in evaluation["tasks"].items():
        metric = task["primary_metric"]
        stats = task[headline]
        mark = " †" if task["test_is_dev"] and headline == "test" else ""
        daggers = daggers or bool(mark)
        cells = [_cell(stats[init][metric]) for init in inits]
        if compare:
            cells.append(
                f"{stats['pretrained'][metric]['mean'] - stats['scratch'][metric]['mean']:+.3f}"
            )
        lines.append(f"| {name}{mark} | {metric} | " + " | ".join(cells) + " |")
    average = evaluation["average"][headline]
    cells = [_cell(average[init]) for init in inits] + (
        [f"{average['delta']:+.3f}"] if compare else []
    )
    lines.append("| **average** | score | " + " | ".join(f"**{c}**" for c in cells) + " |")
    lines += [
        "",
        "A task's *score* is its primary metric, averaged with its GLUE partner (F1 with accuracy, "
        "Pearson with Spearman) and over MNLI's matched and mismatched sets, as GLUE does; the "
        "average is the mean of the task scores, computed per seed.",
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
    for split in (headline, "dev" if headline == "test" else "test"):
        lines += ["", f"## All metrics, {split}", ""]
        lines.append("| task | metric | " + " | ".join(inits) + " |")
        lines.append("| --- | --- | " + " | ".join("---:" for _ in inits) + " |")
        for name, task in evaluation["tasks"].items():
            for metric in task[split][inits[0]]:
                cells = [_cell(task[split][init][metric]) for init in inits]
                lines.append(f"| {name} | {metric} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"
