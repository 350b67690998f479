"""The evaluation table: every model of every task, its standard errors, and the average.

`collect_results` reads what the ``finetune@<task>`` stages wrote, `bootstrap_errors` measures
how much each score would move on another test set of the same size, and `evaluate_results`
makes the table (metrics/eval.json): per task and model — the fine-tuned inits and the
`baselines` — mean ± seed std of every metric, the score's standard error, whether the task is
*at floor*, and the GLUE-style average.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import sklearn

from bertforge.errors import BertforgeError
from bertforge.evaluate.baselines import BaselineRun
from bertforge.finetune.metrics import labels_array, metrics_with_score
from bertforge.finetune.summary import mean_std, read_seed_metrics, summarize_seeds
from bertforge.finetune.tasks import TaskData
from bertforge.io import read_json
from bertforge.params import require


@dataclass(frozen=True)
class EvaluateParams:
    """The ``evaluate`` section: the split the report leads with, and the bootstrap."""

    headline_split: Literal["test", "dev"] = "test"
    bootstrap_resamples: int = 500
    bootstrap_seed: int = 0

    def __post_init__(self) -> None:
        require(
            self.bootstrap_resamples >= 10,
            "bootstrap_resamples",
            "must be at least 10",
            self.bootstrap_resamples,
        )
        require(
            self.bootstrap_seed >= 0, "bootstrap_seed", "must be non-negative", self.bootstrap_seed
        )


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


def read_predictions(task_dir: Path, init: str, seed: int, split: str) -> list[str | float]:
    """One seed's predictions of a split, in the split's order (predictions/<split>.jsonl)."""
    path = Path(task_dir) / init / f"seed-{seed}" / "predictions" / f"{split}.jsonl"
    if not path.is_file():
        raise BertforgeError(f"{path}: not found; re-run finetune@{Path(task_dir).name}")
    with open(path, encoding="utf-8") as handle:
        return [json.loads(line)["prediction"] for line in handle if line.strip()]


def bootstrap_errors(
    task: TaskData,
    split: str,
    predictions: Mapping[str, Sequence[Sequence[Any]]],
    resamples: int,
    seed: int,
) -> dict[str, float]:
    """Per model, the bootstrap standard error of its score on `split`.

    `predictions[model]` holds one prediction list per seed (one for a baseline). Every model is
    scored on the same `resamples` draws of the split's rows with replacement (a numpy
    generator seeded with `seed`), so the errors are comparable and repeat to the byte. A
    model's error is the root of its per-seed bootstrap variances' mean.
    """
    examples = task.split(split)
    gold = labels_array(task, [example.label for example in examples])
    subsets = np.asarray([example.subset for example in examples])
    # the same resampled rows for every model and seed
    draws = np.random.default_rng(seed).integers(0, len(examples), (resamples, len(examples)))
    errors = {}
    # scikit-learn's checks of argument types skipped in the resample loop (the arrays are made
    # here); its checks of the data itself stay
    with sklearn.config_context(skip_parameter_validation=True):
        for model, runs in predictions.items():
            variances = []
            for predicted in runs:
                if len(predicted) != len(examples):
                    raise BertforgeError(
                        f"task {task.name!r}: {model} has {len(predicted)} {split} predictions "
                        f"for {len(examples)} examples; re-run finetune@{task.name}"
                    )
                predicted = labels_array(task, predicted)
                scores = [
                    metrics_with_score(
                        task, gold[rows], predicted[rows], subsets[rows], score_only=True
                    )["score"]
                    for rows in draws
                ]
                variances.append(np.var(scores, ddof=1))
            errors[model] = float(np.sqrt(np.mean(variances)))
    return errors


def headline_errors(
    task: TaskData,
    params: EvaluateParams,
    predictions: Mapping[str, Sequence[Sequence[Any]]],
    baselines: Mapping[str, BaselineRun],
) -> dict[str, float]:
    """Every model's bootstrap error on `params.headline_split`: the fine-tuned inits'
    `predictions` (one list per seed) beside each baseline's one run, on the same draws."""
    split = params.headline_split
    runs = dict(predictions) | {model: [run.predictions[split]] for model, run in baselines.items()}
    return bootstrap_errors(task, split, runs, params.bootstrap_resamples, params.bootstrap_seed)


def _combined_error(bootstrap: float, seed_std: float, seeds: int) -> float:
    # test-set sampling error and the seed-to-seed spread of a mean over `seeds` runs
    return float(np.sqrt(bootstrap**2 + seed_std**2 / seeds))


def _baseline_summary(run: BaselineRun) -> dict[str, dict[str, dict[str, float]]]:
    return {
        split: {name: {"mean": value, "std": 0.0} for name, value in metrics.items()}
        for split, metrics in run.metrics.items()
    }


def at_floor(scores: Mapping[str, Mapping[str, float]], errors: Mapping[str, float]) -> bool:
    """True when no model beats ``majority`` by more than two standard errors of the difference
    (the two errors combined as independent)."""
    floor = scores["majority"]["mean"]
    return not any(
        scores[model]["mean"] - floor > 2 * np.hypot(errors[model], errors["majority"])
        for model in scores
        if model != "majority"
    )


def evaluate_results(
    results: Mapping[str, tuple[Mapping[str, Any], Sequence[Mapping[str, Any]]]],
    inits: Sequence[str],
    seeds: Sequence[int],
    headline_split: str,
    baselines: Mapping[str, Mapping[str, BaselineRun]] | None = None,
    bootstrap: Mapping[str, Mapping[str, float]] | None = None,
) -> dict[str, Any]:
    """The evaluation table (metrics/eval.json).

    Per task and model (the inits, then the `baselines` of each task), mean ± seed std of every
    metric on dev and test (a baseline is one deterministic run: std 0); with `bootstrap`
    (per task and model, the bootstrap error of the headline split's score), each model's
    standard error of its mean score and whether the task is at floor. The GLUE-style average
    — per seed, the mean of the tasks' scores — as mean ± std over seeds, its standard error
    (tasks independent), and the pretrained − scratch difference.
    """
    baselines = baselines or {}
    baseline_names = list(next(iter(baselines.values()), {}))
    models = [*inits, *baseline_names]
    tasks = {}
    for name, (info, seed_metrics) in results.items():
        summary = summarize_seeds(info, seed_metrics)
        for model, run in baselines.get(name, {}).items():
            summary[model] = _baseline_summary(run)
        tasks[name] = {
            "primary_metric": info["metric"],
            "test_is_dev": info["test_is_dev"],
            **{
                split: {model: summary[model][split] for model in models}
                for split in ("test", "dev")
            },
        }
        rates = {init: summary[init]["learning_rate"] for init in inits}
        if None not in rates.values():
            tasks[name]["learning_rate"] = rates  # the fine-tuning rate each init was kept at
        if name in baselines:
            tasks[name]["settings"] = {
                model: run.settings for model, run in baselines[name].items()
            }
        if bootstrap is not None:
            scores = {model: tasks[name][headline_split][model]["score"] for model in models}
            errors = {
                model: _combined_error(bootstrap[name][model], scores[model]["std"], len(seeds))
                if model in inits
                else bootstrap[name][model]
                for model in models
            }
            tasks[name]["standard_error"] = errors
            if "majority" in models:
                tasks[name]["at_floor"] = at_floor(scores, errors)
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
        for model in baseline_names:
            average[split][model] = {
                "mean": float(
                    np.mean([tasks[name][split][model]["score"]["mean"] for name in tasks])
                ),
                "std": 0.0,
            }
        if {"pretrained", "scratch"} <= set(inits):
            pretrained, scratch = average[split]["pretrained"], average[split]["scratch"]
            average[split]["delta"] = pretrained["mean"] - scratch["mean"]
    if bootstrap is not None:
        # the average's error: the tasks' bootstrap errors as independent, and the seed spread
        average["standard_error"] = {
            model: _combined_error(
                float(np.sqrt(sum(bootstrap[name][model] ** 2 for name in tasks))) / len(tasks),
                average[headline_split][model]["std"],
                len(seeds) if model in inits else 1,
            )
            for model in models
        }
    evaluation = {
        "headline_split": headline_split,
        "inits": list(inits),
        "seeds": list(seeds),
        "average": average,
        "tasks": tasks,
    }
    if baseline_names:
        evaluation["baselines"] = baseline_names
    return evaluation
