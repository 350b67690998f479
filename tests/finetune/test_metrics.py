"""The official metrics, in numpy, against scikit-learn and scipy on random predictions."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats
from sklearn import metrics as sk

from bertforge.finetune.metrics import (
    accuracy,
    average_ranks,
    compute_metrics,
    f1_score,
    macro_f1,
    matthews_corrcoef,
    pearson,
    spearman,
)
from bertforge.finetune.tasks import Example, TaskData

SEEDS = [0, 1, 2, 3, 4]


def random_labels(seed: int, classes: int, size: int = 200) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    gold = rng.integers(0, classes, size)
    # predictions agree with gold more often than chance, so the metrics are not all near 0
    predicted = np.where(rng.random(size) < 0.6, gold, rng.integers(0, classes, size))
    return gold.astype(str), predicted.astype(str)


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("classes", [2, 3, 7])
def test_accuracy_and_matthews_match_scikit_learn(seed, classes):
    gold, predicted = random_labels(seed, classes)
    assert accuracy(gold, predicted) == pytest.approx(sk.accuracy_score(gold, predicted))
    assert matthews_corrcoef(gold, predicted) == pytest.approx(
        sk.matthews_corrcoef(gold, predicted)
    )


def test_matthews_of_a_constant_prediction_is_zero_as_in_scikit_learn():
    gold = np.array(["a", "b", "a", "b"])
    predicted = np.array(["a", "a", "a", "a"])
    assert matthews_corrcoef(gold, predicted) == 0.0 == sk.matthews_corrcoef(gold, predicted)


@pytest.mark.parametrize("seed", SEEDS)
def test_binary_f1_of_the_positive_label_matches_scikit_learn(seed):
    gold, predicted = random_labels(seed, 2)
    for positive in ("0", "1"):
        expected = sk.f1_score(gold, predicted, pos_label=positive)
        assert f1_score(gold, predicted, positive) == pytest.approx(expected)


def test_f1_is_zero_when_the_positive_label_never_occurs():
    assert f1_score(np.array(["0", "0"]), np.array(["0", "0"]), "1") == 0.0


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("classes", [3, 7])
def test_macro_f1_matches_scikit_learn(seed, classes):
    gold, predicted = random_labels(seed, classes)
    assert macro_f1(gold, predicted) == pytest.approx(sk.f1_score(gold, predicted, average="macro"))


@pytest.mark.parametrize("seed", SEEDS)
def test_pearson_and_spearman_match_scipy(seed):
    rng = np.random.default_rng(seed)
    gold = rng.uniform(0, 5, 300)
    predicted = gold + rng.normal(0, 1.5, 300)
    assert pearson(gold, predicted) == pytest.approx(stats.pearsonr(gold, predicted)[0])
    assert spearman(gold, predicted) == pytest.approx(stats.spearmanr(gold, predicted)[0])


@pytest.mark.parametrize("seed", SEEDS)
def test_spearman_gives_ties_their_average_rank_as_scipy(seed):
    rng = np.random.default_rng(seed)
    gold = rng.integers(0, 6, 300).astype(float)  # STS-B-like: many ties
    predicted = np.round(gold + rng.normal(0, 1.0, 300))
    np.testing.assert_allclose(average_ranks(predicted), stats.rankdata(predicted))
    assert spearman(gold, predicted) == pytest.approx(stats.spearmanr(gold, predicted)[0])


def test_correlation_with_a_constant_prediction_is_zero_not_nan():
    assert pearson(np.array([1.0, 2.0, 3.0]), np.array([2.0, 2.0, 2.0])) == 0.0
    assert spearman(np.array([1.0, 2.0, 3.0]), np.array([2.0, 2.0, 2.0])) == 0.0


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


def test_sts_b_score_is_the_mean_of_pearson_and_spearman():
    rng = np.random.default_rng(0)
    gold = rng.uniform(0, 5, 50)
    predicted = gold + rng.normal(0, 1, 50)
    metrics = compute_metrics(
        make_task("regression", (), "pearson"), examples(list(gold)), list(predicted)
    )
    assert set(metrics) == {"pearson", "spearman", "mse", "score"}
    assert metrics["score"] == pytest.approx((metrics["pearson"] + metrics["spearman"]) / 2)
    assert metrics["mse"] == pytest.approx(sk.mean_squared_error(gold, predicted))


def test_mrpc_score_is_the_mean_of_f1_and_accuracy_and_cola_score_is_matthews():
    gold, predicted = random_labels(0, 2)
    names = ("0", "1")
    mrpc = compute_metrics(
        make_task("classification", names, "f1"), examples(list(gold)), list(predicted)
    )
    assert mrpc["score"] == pytest.approx((mrpc["f1"] + mrpc["accuracy"]) / 2)
    cola = compute_metrics(
        make_task("classification", names, "matthews"), examples(list(gold)), list(predicted)
    )
    assert cola["score"] == cola["matthews"]


def test_mnli_reports_matched_and_mismatched_accuracy_and_scores_their_mean():
    gold, predicted = random_labels(1, 3)
    subsets = ["matched"] * 120 + ["mismatched"] * 80
    task = make_task("classification", ("0", "1", "2"), "accuracy")
    metrics = compute_metrics(task, examples(list(gold), subsets), list(predicted))
    matched = sk.accuracy_score(gold[:120], predicted[:120])
    mismatched = sk.accuracy_score(gold[120:], predicted[120:])
    assert metrics["accuracy_matched"] == pytest.approx(matched)
    assert metrics["accuracy_mismatched"] == pytest.approx(mismatched)
    assert metrics["score"] == pytest.approx((matched + mismatched) / 2)
