"""A task's per-seed metrics read back, and their mean ± std over seeds.

`finetune@<task>` writes the summary (metrics/finetune/<task>.json); the evaluate and register
stages read the same per-seed files. Only numpy and the files: nothing here trains.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from bertforge.io import read_json


def read_seed_metrics(task_dir: Path) -> list[dict[str, Any]]:
    """Every seed's metrics.json under a task's output directory, ordered by init and seed."""
    found = [read_json(path) for path in Path(task_dir).glob("*/seed-*/metrics.json")]
    return sorted(found, key=lambda m: (m["init"], m["seed"]))


def mean_std(values: Sequence[float]) -> dict[str, float]:
    """Mean and sample standard deviation (ddof 1; 0 for a single value) over seeds."""
    array = np.asarray(values, dtype=np.float64)
    std = float(np.std(array, ddof=1)) if len(array) > 1 else 0.0
    return {"mean": float(np.mean(array)), "std": std}


def summarize_seeds(
    task_info: Mapping[str, Any],
    seed_metrics: Sequence[Mapping[str, Any]],
    search: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Per init and split, mean and std over seeds of every metric: metrics/finetune/<task>.json.

    Each init's learning rate is its seeds'; `search` (learning_rates.json, when several rates
    were tried) goes in as ``learning_rate_search``.
    """
    summary: dict[str, Any] = {
        "task": task_info["name"],
        "primary_metric": task_info["metric"],
        "test_is_dev": task_info["test_is_dev"],
    }
    if search is not None:
        summary["learning_rate_search"] = dict(search)
    for init in dict.fromkeys(m["init"] for m in seed_metrics):
        runs = [m for m in seed_metrics if m["init"] == init]
        summary[init] = {"seeds": [m["seed"] for m in runs]}
        # None: seed metrics written before 2026-11-28, which lack it
        summary[init]["learning_rate"] = runs[0].get("learning_rate")
        for split in ("dev", "test"):
            names = runs[0][split].keys()
            summary[init][split] = {
                name: mean_std([m[split][name] for m in runs]) for name in names
            }
    return summary
