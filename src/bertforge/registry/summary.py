"""What promotion compares: each metric's mean and std over fine-tuning seeds, from eval.json.

The evaluate stage writes metrics/eval.json; `task_summary` and `encoder_summary` read the
``init=pretrained`` results on the report's headline split from it. An `EvalSummary` travels on
a registered version as tags (``bertforge.primary_metric``, ``bertforge.num_seeds``,
``bertforge.metric.<m>.mean`` / ``.std``) and is read back from them by promote, lineage and
``bertforge versions``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bertforge.errors import BertforgeError
from bertforge.tracking import TAG_PREFIX

EVAL_METRICS = Path("metrics/eval.json")
INIT = "pretrained"

PRIMARY_METRIC_TAG = f"{TAG_PREFIX}primary_metric"
NUM_SEEDS_TAG = f"{TAG_PREFIX}num_seeds"
METRIC_TAG_PREFIX = f"{TAG_PREFIX}metric."


@dataclass(frozen=True)
class MetricStat:
    """One metric over fine-tuning seeds."""

    mean: float
    std: float


@dataclass(frozen=True)
class EvalSummary:
    """Every metric's mean and std over seeds, and which one decides promotion.

    All primary metrics of bertforge tasks (accuracy, F1, Matthews, Pearson, Spearman, and the
    average of task scores) are better when higher.
    """

    primary_metric: str
    metrics: Mapping[str, MetricStat]
    num_seeds: int

    def __post_init__(self) -> None:
        if self.primary_metric not in self.metrics:
            raise BertforgeError(
                f"primary metric {self.primary_metric!r} is not among the metrics "
                f"({', '.join(sorted(self.metrics))})"
            )

    @property
    def primary(self) -> MetricStat:
        return self.metrics[self.primary_metric]

    def to_tags(self) -> dict[str, str]:
        tags = {PRIMARY_METRIC_TAG: self.primary_metric, NUM_SEEDS_TAG: str(self.num_seeds)}
        for name, stat in sorted(self.metrics.items()):
            tags[f"{METRIC_TAG_PREFIX}{name}.mean"] = repr(float(stat.mean))
            tags[f"{METRIC_TAG_PREFIX}{name}.std"] = repr(float(stat.std))
        return tags

    @classmethod
    def from_tags(cls, tags: Mapping[str, str]) -> EvalSummary | None:
        """The summary stored on a version, or None when its primary metric is missing."""
        primary = tags.get(PRIMARY_METRIC_TAG)
        metrics: dict[str, MetricStat] = {}
        for key, value in tags.items():
            if key.startswith(METRIC_TAG_PREFIX) and key.endswith(".mean"):
                name = key[len(METRIC_TAG_PREFIX) : -len(".mean")]
                std = tags.get(f"{METRIC_TAG_PREFIX}{name}.std", "nan")
                try:
                    metrics[name] = MetricStat(float(value), float(std))
                except ValueError:
                    continue
        if not primary or primary not in metrics or not math.isfinite(metrics[primary].mean):
            return None
        seeds = tags.get(NUM_SEEDS_TAG, "0")
        return cls(primary, metrics, int(seeds) if seeds.isdigit() else 0)


def metric_stats(table: Mapping[str, Any], where: str) -> dict[str, MetricStat]:
    """``{metric: {mean, std}}`` from eval.json as MetricStats; any other shape is one line."""
    try:
        return {
            name: MetricStat(float(value["mean"]), float(value["std"]))
            for name, value in table.items()
        }
    except (KeyError, TypeError, ValueError, AttributeError):
        raise BertforgeError(f"{where}: expected {{metric: {{mean, std}}}}") from None


def task_summary(
    evaluation: Mapping[str, Any], task: str, where: Path = EVAL_METRICS
) -> EvalSummary:
    """A task's metrics for init=pretrained on the report's headline split, from eval.json."""
    try:
        split = evaluation["headline_split"]
        entry = evaluation["tasks"][task]
        table = entry[split][INIT]
        primary = entry["primary_metric"]
        seeds = len(evaluation["seeds"])
    except (KeyError, TypeError):
        raise BertforgeError(
            f"{where}: has no {INIT!r} results for task {task!r}; re-run the evaluate stage"
        ) from None
    metrics = metric_stats(table, f"{where}: tasks.{task}.{split}.{INIT}")
    if primary not in metrics:
        raise BertforgeError(f"{where}: task {task!r} has no primary metric {primary!r}")
    return EvalSummary(primary, metrics, seeds)


def encoder_summary(evaluation: Mapping[str, Any], where: Path = EVAL_METRICS) -> EvalSummary:
    """The encoder's metrics: the GLUE-style average score (primary) and each task's metrics."""
    try:
        split = evaluation["headline_split"]
        average = evaluation["average"][split][INIT]
        tasks = list(evaluation["tasks"])
    except (KeyError, TypeError):
        raise BertforgeError(
            f"{where}: has no {INIT!r} average; re-run the evaluate stage"
        ) from None
    metrics = metric_stats({"average_score": average}, f"{where}: average.{split}.{INIT}")
    for task in tasks:
        summary = task_summary(evaluation, task, where)
        for name in dict.fromkeys([summary.primary_metric, "score"]):
            if name in summary.metrics:
                metrics[f"{task}.{name}"] = summary.metrics[name]
    return EvalSummary("average_score", metrics, len(evaluation.get("seeds", [])))
