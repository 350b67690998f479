"""Fine-tuning results as `collect_results` returns them, made from scores alone."""

from __future__ import annotations


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
