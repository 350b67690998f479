"""Fine-tuning results as `collect_results` returns them, made from scores alone, and an
evaluation (metrics/eval.json's content) made from them."""

from __future__ import annotations

from typing import Any

from bertforge.evaluate import BaselineRun, evaluate_results

MODELS = ("pretrained", "scratch", "majority", "bag_of_words")


def fake_results(scores: dict[str, dict[str, list[float]]]) -> dict:
    """Per task, its info and one metrics record per (init, seed): `scores[task][init][seed]` as
    the accuracy and score of dev and test. A task named ``glue`` has test as a copy of dev."""
    results = {}
    for task, by_init in scores.items():
        info = {"name": task, "metric": "accuracy", "test_is_dev": task == "glue"}
        metrics = [
            {
                "init": init,
                "seed": seed,
                "dev": {"accuracy": value, "score": value},
                "test": {"accuracy": value, "score": value},
            }
            for init, values in by_init.items()
            for seed, value in enumerate(values)
        ]
        results[task] = (info, metrics)
    return results


def fake_baseline(name: str, value: float) -> BaselineRun:
    """A baseline that scores `value` (accuracy and score) on dev and test."""
    metrics = {"accuracy": value, "score": value}
    return BaselineRun(name, {}, {}, {"dev": metrics, "test": metrics})


def fake_evaluation(bootstrap_error: float = 0.02) -> dict[str, Any]:
    """Two tasks, one learnable and one at floor, with both baselines: the evaluate stage's
    table (`evaluate_results`), every bootstrap error `bootstrap_error`."""
    results = fake_results(
        {
            "learnable": {"pretrained": [0.80, 0.81, 0.82], "scratch": [0.5, 0.5, 0.5]},
            "noise": {"pretrained": [0.52, 0.50, 0.51], "scratch": [0.5, 0.49, 0.5]},
        }
    )
    baselines = {
        name: {
            "majority": fake_baseline("majority", 0.5),
            "bag_of_words": fake_baseline("bag_of_words", 0.55),
        }
        for name in results
    }
    bootstrap = {name: dict.fromkeys(MODELS, bootstrap_error) for name in results}
    return evaluate_results(
        results, ["pretrained", "scratch"], [0, 1, 2], "test", baselines, bootstrap
    )
