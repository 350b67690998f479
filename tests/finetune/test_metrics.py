"""The metrics against GLUE's published definitions, worked by hand on fixed vectors.

GLUE (Wang et al., 2019, and its evaluation code) scores with scikit-learn's accuracy, F1 of the
positive class and Matthews correlation, and scipy's Pearson and Spearman; the expected values
below are those definitions computed by hand (counts of true/false positives, the Gorodkin form
of Matthews, Pearson of average ranks), not by calling the libraries the module uses.
"""

from __future__ import annotations

import math

import pytest

from bertforge.finetune.metrics import compute_metrics, metrics_with_score
from bertforge.finetune.tasks import Example, TaskData


def make_task(kind: str, labels: tuple[str, ...], metric: str) -> TaskData:
    return TaskData(
        "t", kind, labels, metric, labels[-1] if len(labels) == 2 else None, [], [], [], False
    )


def examples(labels, subsets=None) -> list[Example]:
    subsets = subsets or [""] * len(labels)
    return [
        Example(("x",), label, "f.jsonl", i, s)
        for i, (label, s) in enumerate(zip(labels, subsets, strict=True))
    ]


BINARY = make_task("classification", ("0", "1"), "f1")
# TP 4 (rows 0, 1, 3, 8), FN 1 (row 2), FP 2 (rows 5, 9), TN 3 (rows 4, 6, 7)
BINARY_GOLD = list("1111000010")
BINARY_PREDICTED = list("1101010011")


def test_accuracy_is_the_fraction_correct():
    metrics = metrics_with_score(BINARY, BINARY_GOLD, BINARY_PREDICTED, [""] * 10)
    assert metrics["accuracy"] == pytest.approx(7 / 10)


def test_f1_is_that_of_the_positive_class_2tp_over_2tp_fp_fn():
    metrics = metrics_with_score(BINARY, BINARY_GOLD, BINARY_PREDICTED, [""] * 10)
    assert metrics["f1"] == pytest.approx(2 * 4 / (2 * 4 + 2 + 1))
    # MRPC and QQP: the score is the mean of F1 and accuracy
    assert metrics["score"] == pytest.approx((8 / 11 + 7 / 10) / 2)


def test_binary_matthews_is_tp_tn_minus_fp_fn_over_the_root_of_the_margins():
    metrics = metrics_with_score(BINARY, BINARY_GOLD, BINARY_PREDICTED, [""] * 10)
    expected = (4 * 3 - 2 * 1) / math.sqrt((4 + 2) * (4 + 1) * (3 + 2) * (3 + 1))
    assert metrics["matthews"] == pytest.approx(expected)


def test_f1_is_zero_when_the_positive_class_is_never_predicted_nor_present():
    metrics = metrics_with_score(BINARY, list("0000"), list("0000"), [""] * 4)
    assert metrics["f1"] == 0.0


def test_matthews_of_a_constant_prediction_is_zero():
    metrics = metrics_with_score(BINARY, list("0101"), list("0000"), [""] * 4)
    assert metrics["matthews"] == 0.0


THREE_CLASS = make_task("classification", ("a", "b", "c"), "macro_f1")


def test_macro_f1_is_the_unweighted_mean_of_per_class_f1():
    gold, predicted = list("aabbcc"), list("abbbca")
    metrics = metrics_with_score(THREE_CLASS, gold, predicted, [""] * 6)
    # a: TP 1 FP 1 FN 1; b: TP 2 FP 1 FN 0; c: TP 1 FP 0 FN 1
    assert metrics["macro_f1"] == pytest.approx((2 / 4 + 4 / 5 + 2 / 3) / 3)


def test_multiclass_matthews_is_gorodkins_rk():
    gold, predicted = list("aabbcc"), list("abbbca")
    metrics = metrics_with_score(THREE_CLASS, gold, predicted, [""] * 6)
    # correct c = 4, samples s = 6, true counts t = (2, 2, 2), predicted counts p = (2, 3, 1)
    expected = (4 * 6 - (2 * 2 + 2 * 3 + 2 * 1)) / math.sqrt((36 - 14) * (36 - 12))
    assert metrics["matthews"] == pytest.approx(expected)


REGRESSION = make_task("regression", (), "pearson")


def test_pearson_is_covariance_over_the_product_of_spreads():
    metrics = metrics_with_score(REGRESSION, [1, 2, 3, 4, 5], [2, 1, 4, 3, 5], [""] * 5)
    # deviations (-2, -1, 0, 1, 2) and (-1, -2, 1, 0, 2): covariance 8, variances 10 and 10
    assert metrics["pearson"] == pytest.approx(0.8)
    assert metrics["spearman"] == pytest.approx(0.8)  # no ties: ranks are the values
    assert metrics["mse"] == pytest.approx(4 / 5)


def test_spearman_gives_ties_their_average_rank():
    metrics = metrics_with_score(REGRESSION, [1, 2, 2, 3], [1, 1, 2, 3], [""] * 4)
    # ranks (1, 2.5, 2.5, 4) and (1.5, 1.5, 3, 4): Pearson of the ranks 3.75 / 4.5
    assert metrics["spearman"] == pytest.approx(3.75 / 4.5)
    # STS-B: the score is the mean of Pearson and Spearman
    assert metrics["score"] == pytest.approx((metrics["pearson"] + 3.75 / 4.5) / 2)


def test_correlation_with_a_constant_prediction_is_zero_not_nan():
    metrics = metrics_with_score(REGRESSION, [1.0, 2.0, 3.0], [2.0, 2.0, 2.0], [""] * 3)
    assert metrics["pearson"] == 0.0 and metrics["spearman"] == 0.0


def test_mnli_reports_matched_and_mismatched_accuracy_and_scores_their_mean():
    task = make_task("classification", ("0", "1", "2"), "accuracy")
    gold = list("012012") + list("0120")
    predicted = list("012000") + list("0000")
    subsets = ["matched"] * 6 + ["mismatched"] * 4
    metrics = compute_metrics(task, examples(gold, subsets), predicted)
    assert metrics["accuracy_matched"] == pytest.approx(4 / 6)
    assert metrics["accuracy_mismatched"] == pytest.approx(2 / 4)
    assert metrics["score"] == pytest.approx((4 / 6 + 2 / 4) / 2)


def test_cola_score_is_matthews():
    task = make_task("classification", ("0", "1"), "matthews")
    metrics = compute_metrics(task, examples(BINARY_GOLD), BINARY_PREDICTED)
    assert metrics["score"] == metrics["matthews"]
