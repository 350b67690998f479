"""The official metrics, from scikit-learn and scipy, and a task's score.

Accuracy, Matthews correlation (multi-class form), F1 of the positive class (binary tasks),
macro F1 (multi-class), Pearson and Spearman, MSE — each the library function GLUE's own
evaluation uses (scikit-learn's ``accuracy_score``, ``f1_score``, ``matthews_corrcoef``; scipy's
``pearsonr`` and ``spearmanr``). Every task names its primary metric; its *score* — what model
selection maximizes and the GLUE-style average uses — is the primary metric, averaged with its
GLUE partner (F1 with accuracy, Pearson with Spearman) and over the subsets of a split (MNLI
matched and mismatched), as the GLUE leaderboard does.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
from scipy import stats
from sklearn import metrics as sk

from bertforge.finetune.tasks import Example, TaskData

# Metrics that GLUE reports as a pair; a task's score is the mean of the pair.
GLUE_METRIC_PAIRS: dict[str, tuple[str, ...]] = {
    "f1": ("f1", "accuracy"),
    "pearson": ("pearson", "spearman"),
    "spearman": ("pearson", "spearman"),
}


def _correlation(value: float) -> float:
    # a constant side has no association to measure: 0, where scipy says NaN
    return 0.0 if math.isnan(value) else float(value)


def _constant(values: np.ndarray) -> bool:
    return bool(np.all(values == values[0]))


def split_metrics(
    task: TaskData, gold: Sequence[Any], predicted: Sequence[Any]
) -> dict[str, float]:
    """Every metric of the task's kind on one split, without subsets."""
    if task.kind == "regression":
        gold_array = np.asarray(gold, dtype=np.float64)
        predicted_array = np.asarray(predicted, dtype=np.float64)
        flat = _constant(gold_array) or _constant(predicted_array)
        return {
            "pearson": 0.0
            if flat
            else _correlation(stats.pearsonr(gold_array, predicted_array)[0]),
            "spearman": 0.0
            if flat
            else _correlation(stats.spearmanr(gold_array, predicted_array)[0]),
            "mse": float(sk.mean_squared_error(gold_array, predicted_array)),
        }
    gold_array, predicted_array = np.asarray(gold, dtype=str), np.asarray(predicted, dtype=str)
    with warnings.catch_warnings():
        # one class in gold and predictions is a defined case here (Matthews 0), not a mistake
        warnings.simplefilter("ignore", UserWarning)
        return _classification_metrics(task, gold_array, predicted_array)


def _classification_metrics(
    task: TaskData, gold_array: np.ndarray, predicted_array: np.ndarray
) -> dict[str, float]:
    metrics = {
        "accuracy": float(sk.accuracy_score(gold_array, predicted_array)),
        "matthews": float(sk.matthews_corrcoef(gold_array, predicted_array)),
    }
    if len(task.labels) == 2:
        # F1 of the positive class; 0 when it is neither predicted nor present
        metrics["f1"] = float(
            sk.f1_score(
                gold_array,
                predicted_array,
                pos_label=task.positive_label,
                average="binary",
                zero_division=0.0,
            )
        )
    else:
        # unweighted mean of per-class F1 over the classes in gold or predictions
        metrics["macro_f1"] = float(
            sk.f1_score(gold_array, predicted_array, average="macro", zero_division=0.0)
        )
    return metrics


def compute_metrics(
    task: TaskData, examples: Sequence[Example], predicted: Sequence[Any]
) -> dict[str, float]:
    """All metrics of a split plus ``score``; a split with subsets gets ``<metric>_<subset>``."""
    subsets = [example.subset for example in examples]
    gold = [example.label for example in examples]
    return metrics_with_score(task, gold, predicted, subsets)


def metrics_with_score(
    task: TaskData, gold: Sequence[Any], predicted: Sequence[Any], subsets: Sequence[str]
) -> dict[str, float]:
    """`compute_metrics` on plain sequences (gold labels, predictions, each row's subset)."""
    names = sorted(set(subsets))
    if names == [""]:
        metrics = split_metrics(task, gold, predicted)
        parts = [metrics]
    else:
        metrics, parts = {}, []
        for subset in names:
            chosen = [i for i, name in enumerate(subsets) if name == subset]
            part = split_metrics(task, [gold[i] for i in chosen], [predicted[i] for i in chosen])
            metrics.update({f"{name}_{subset}": value for name, value in part.items()})
            parts.append(part)
    # the score: the primary metric, averaged with its GLUE partner and over the subsets
    paired = GLUE_METRIC_PAIRS.get(task.metric, (task.metric,))
    metrics["score"] = float(np.mean([part[name] for part in parts for name in paired]))
    return metrics
