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
from collections.abc import Callable, Sequence
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


def _pearson(gold: np.ndarray, predicted: np.ndarray) -> float:
    if _constant(gold) or _constant(predicted):
        return 0.0
    return _correlation(stats.pearsonr(gold, predicted)[0])


def _spearman(gold: np.ndarray, predicted: np.ndarray) -> float:
    if _constant(gold) or _constant(predicted):
        return 0.0
    return _correlation(stats.spearmanr(gold, predicted)[0])


def _mse(gold: np.ndarray, predicted: np.ndarray) -> float:
    return float(sk.mean_squared_error(gold, predicted))


def _accuracy(gold: np.ndarray, predicted: np.ndarray) -> float:
    return float(sk.accuracy_score(gold, predicted))


def _matthews(gold: np.ndarray, predicted: np.ndarray) -> float:
    with warnings.catch_warnings():
        # one class in gold and predictions is a defined case here (Matthews 0), not a mistake
        warnings.simplefilter("ignore", UserWarning)
        return float(sk.matthews_corrcoef(gold, predicted))


def _macro_f1(gold: np.ndarray, predicted: np.ndarray) -> float:
    # unweighted mean of per-class F1 over the classes in gold or predictions
    return float(sk.f1_score(gold, predicted, average="macro", zero_division=0.0))


REGRESSION_METRICS = {"pearson": _pearson, "spearman": _spearman, "mse": _mse}


def metric_functions(task: TaskData) -> dict[str, Callable[[np.ndarray, np.ndarray], float]]:
    """Name -> function(gold, predicted) of every metric of the task's kind."""
    if task.kind == "regression":
        return dict(REGRESSION_METRICS)
    functions = {"accuracy": _accuracy, "matthews": _matthews}
    if len(task.labels) == 2:
        # F1 of the positive class; 0 when it is neither predicted nor present
        functions["f1"] = lambda gold, predicted: float(
            sk.f1_score(
                gold, predicted, pos_label=task.positive_label, average="binary", zero_division=0.0
            )
        )
    else:
        functions["macro_f1"] = _macro_f1
    return functions


def labels_array(task: TaskData, labels: Sequence[Any]) -> np.ndarray:
    """Gold labels or predictions as the metrics take them: floats (regression) or strings."""
    return np.asarray(labels, dtype=np.float64 if task.kind == "regression" else str)


def split_metrics(
    task: TaskData,
    gold: Sequence[Any],
    predicted: Sequence[Any],
    names: Sequence[str] | None = None,
) -> dict[str, float]:
    """Every metric of the task's kind on one split, without subsets (or only `names`)."""
    gold_array, predicted_array = labels_array(task, gold), labels_array(task, predicted)
    functions = metric_functions(task)
    return {
        name: function(gold_array, predicted_array)
        for name, function in functions.items()
        if names is None or name in names
    }


def compute_metrics(
    task: TaskData, examples: Sequence[Example], predicted: Sequence[Any]
) -> dict[str, float]:
    """All metrics of a split plus ``score``; a split with subsets gets ``<metric>_<subset>``."""
    subsets = [example.subset for example in examples]
    gold = [example.label for example in examples]
    return metrics_with_score(task, gold, predicted, subsets)


def metrics_with_score(
    task: TaskData,
    gold: Sequence[Any],
    predicted: Sequence[Any],
    subsets: Sequence[str],
    score_only: bool = False,
) -> dict[str, float]:
    """`compute_metrics` on plain sequences (gold labels, predictions, each row's subset);
    `score_only` computes only the metrics the score needs (for the bootstrap)."""
    paired = GLUE_METRIC_PAIRS.get(task.metric, (task.metric,))
    only = paired if score_only else None
    names = sorted(set(subsets))
    if names == [""]:
        metrics = split_metrics(task, gold, predicted, only)
        parts = [metrics]
    else:
        metrics, parts = {}, []
        for subset in names:
            chosen = [i for i, name in enumerate(subsets) if name == subset]
            part = split_metrics(
                task, [gold[i] for i in chosen], [predicted[i] for i in chosen], only
            )
            metrics.update({f"{name}_{subset}": value for name, value in part.items()})
            parts.append(part)
    # the score: the primary metric, averaged with its GLUE partner and over the subsets
    metrics["score"] = float(np.mean([part[name] for part in parts for name in paired]))
    return metrics
