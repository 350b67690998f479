"""The official metrics, in plain numpy (no scipy at runtime), and a task's score.

Accuracy, Matthews correlation (the multi-class form, as scikit-learn), F1 of the positive class
(binary tasks), macro F1 (multi-class), Pearson and Spearman (average ranks for ties), MSE. Every
task names its primary metric; its *score* — what model selection maximizes and the GLUE-style
average uses — is the primary metric, averaged with its GLUE partner (F1 with accuracy, Pearson
with Spearman) and over the subsets of a split (MNLI matched and mismatched), as the GLUE
leaderboard does.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from bertforge.finetune.tasks import Example, TaskData

# Metrics that GLUE reports as a pair; a task's score is the mean of the pair.
GLUE_METRIC_PAIRS: dict[str, tuple[str, ...]] = {
    "f1": ("f1", "accuracy"),
    "pearson": ("pearson", "spearman"),
    "spearman": ("pearson", "spearman"),
}


def accuracy(gold: np.ndarray, predicted: np.ndarray) -> float:
    return float(np.mean(np.asarray(gold) == np.asarray(predicted)))


def _confusion(gold: np.ndarray, predicted: np.ndarray) -> np.ndarray:
    classes, encoded = np.unique(np.concatenate([gold, predicted]), return_inverse=True)
    gold_index, predicted_index = encoded[: len(gold)], encoded[len(gold) :]
    matrix = np.zeros((len(classes), len(classes)), dtype=np.int64)
    np.add.at(matrix, (gold_index, predicted_index), 1)
    return matrix


def matthews_corrcoef(gold: np.ndarray, predicted: np.ndarray) -> float:
    """Matthews correlation in its multi-class form (Gorodkin 2004); 0 when undefined."""
    matrix = _confusion(np.asarray(gold), np.asarray(predicted)).astype(np.float64)
    true_counts, predicted_counts = matrix.sum(axis=1), matrix.sum(axis=0)
    samples, correct = matrix.sum(), np.trace(matrix)
    covariance = correct * samples - true_counts @ predicted_counts
    predicted_spread = samples**2 - predicted_counts @ predicted_counts
    true_spread = samples**2 - true_counts @ true_counts
    if predicted_spread * true_spread == 0:
        return 0.0
    return float(covariance / math.sqrt(true_spread * predicted_spread))


def f1_score(gold: np.ndarray, predicted: np.ndarray, positive: Any) -> float:
    """F1 of the `positive` class; 0 when it is neither predicted nor present."""
    gold_positive = np.asarray(gold) == positive
    predicted_positive = np.asarray(predicted) == positive
    true_positives = np.sum(gold_positive & predicted_positive)
    wrong = np.sum(gold_positive != predicted_positive)
    denominator = 2 * true_positives + wrong
    return float(2 * true_positives / denominator) if denominator else 0.0


def macro_f1(gold: np.ndarray, predicted: np.ndarray) -> float:
    """Unweighted mean of per-class F1 over the classes in gold or predictions."""
    gold, predicted = np.asarray(gold), np.asarray(predicted)
    classes = np.unique(np.concatenate([gold, predicted]))
    return float(np.mean([f1_score(gold, predicted, cls) for cls in classes]))


def pearson(x: np.ndarray, y: np.ndarray) -> float:
    """Pearson correlation; 0 when either side is constant (no association to measure)."""
    x = np.asarray(x, dtype=np.float64) - np.mean(x)
    y = np.asarray(y, dtype=np.float64) - np.mean(y)
    spread = math.sqrt(float(x @ x) * float(y @ y))
    return float(x @ y / spread) if spread > 0 else 0.0


def average_ranks(values: np.ndarray) -> np.ndarray:
    """1-based ranks, tied values sharing the mean of their ranks (as scipy's rankdata)."""
    values = np.asarray(values)
    order = np.argsort(values, kind="mergesort")
    ordered = values[order]
    starts_group = np.r_[True, ordered[1:] != ordered[:-1]]
    group = np.cumsum(starts_group) - 1
    starts = np.flatnonzero(starts_group)
    ends = np.r_[starts[1:], len(values)]
    ranks = np.empty(len(values), dtype=np.float64)
    ranks[order] = ((starts + ends - 1) / 2 + 1)[group]
    return ranks


def spearman(x: np.ndarray, y: np.ndarray) -> float:
    """Spearman correlation: Pearson of the average ranks."""
    return pearson(average_ranks(x), average_ranks(y))


def split_metrics(
    task: TaskData, gold: Sequence[Any], predicted: Sequence[Any]
) -> dict[str, float]:
    """Every metric of the task's kind on one split, without subsets."""
    gold_array, predicted_array = np.asarray(gold), np.asarray(predicted)
    if task.kind == "regression":
        gold_array, predicted_array = (
            gold_array.astype(np.float64),
            predicted_array.astype(np.float64),
        )
        return {
            "pearson": pearson(gold_array, predicted_array),
            "spearman": spearman(gold_array, predicted_array),
            "mse": float(np.mean((gold_array - predicted_array) ** 2)),
        }
    metrics = {
        "accuracy": accuracy(gold_array, predicted_array),
        "matthews": matthews_corrcoef(gold_array, predicted_array),
    }
    if len(task.labels) == 2:
        metrics["f1"] = f1_score(gold_array, predicted_array, task.positive_label)
    else:
        metrics["macro_f1"] = macro_f1(gold_array, predicted_array)
    return metrics


def compute_metrics(
    task: TaskData, examples: Sequence[Example], predicted: Sequence[Any]
) -> dict[str, float]:
    """All metrics of a split plus ``score``; a split with subsets gets ``<metric>_<subset>``."""
    subsets = sorted({example.subset for example in examples})
    gold = [example.label for example in examples]
    if subsets == [""]:
        metrics = split_metrics(task, gold, predicted)
        parts = [metrics]
    else:
        metrics, parts = {}, []
        for subset in subsets:
            chosen = [i for i, example in enumerate(examples) if example.subset == subset]
            part = split_metrics(task, [gold[i] for i in chosen], [predicted[i] for i in chosen])
            metrics.update({f"{name}_{subset}": value for name, value in part.items()})
            parts.append(part)
    # the score: the primary metric, averaged with its GLUE partner and over the subsets
    paired = GLUE_METRIC_PAIRS.get(task.metric, (task.metric,))
    metrics["score"] = float(np.mean([part[name] for part in parts for name in paired]))
    return metrics
