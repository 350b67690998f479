"""The baselines every task is judged against: the majority class and TF-IDF bag-of-words.

Both are fit on exactly the examples fine-tuning trains on — `load_task` draws the training
subset (`max_train_examples`, seeded) once, for the finetune and evaluate stages alike — so the
report compares models that saw the same data. Each baseline is deterministic: one run, no seeds.

* ``majority``: the most frequent training label (ties: the first in the task's label order), or
  the training mean for regression. A model that does not beat it has learned nothing the
  label distribution does not say.
* ``bag_of_words``: TF-IDF of word unigrams (vocabulary and IDF from the training texts); a pair
  task gets each text's vector and their element-wise product (the words both texts share).
  Logistic regression for classification, ridge for regression; the regularisation strength is
  the value of a small grid with the best dev score (the first of equal ones).

A word is a run of word characters (letters, digits, underscores; `WORD`), as scikit-learn
finds them with one-letter words kept; in scripts written without spaces (Chinese, Japanese)
such a run is a whole clause, seen once in a corpus, so its characters of those scripts become
character unigrams and bigrams instead (`bag_of_words_tokens`). Text without them keeps exactly
the words it had, and the English tasks' baselines their numbers.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import pairwise
from typing import Any

import numpy as np
import scipy.sparse as sparse
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression, Ridge

from bertforge.finetune.metrics import compute_metrics
from bertforge.finetune.tasks import Example, TaskData

BASELINES = ("majority", "bag_of_words")
# inverse regularisation strength of logistic regression, tried on dev
LOGISTIC_C_GRID = (0.01, 0.1, 1.0, 10.0, 100.0)
# ridge penalty, tried on dev
RIDGE_ALPHA_GRID = (0.1, 1.0, 10.0, 100.0, 1000.0)

WORD = re.compile(r"(?u)\b\w+\b")
UNSEGMENTED = re.compile(
    "([\u3040-\u30ff"  # hiragana, katakana
    "\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"  # CJK ideographs, compatibility ideographs
    "\U00020000-\U0003134f]+)"  # CJK ideographs, extensions B-H
)
"""A run of letters of a script written without spaces between words (Hangul is not one)."""


@dataclass(frozen=True)
class BaselineRun:
    """One baseline fit on a task: its chosen setting, dev/test predictions and metrics."""

    name: str
    settings: dict[str, float]
    predictions: dict[str, list[str | float]]
    metrics: dict[str, dict[str, float]]


def _result(
    name: str, task: TaskData, settings: dict[str, float], predictions: dict[str, list[Any]]
) -> BaselineRun:
    metrics = {
        split: compute_metrics(task, task.split(split), predictions[split]) for split in predictions
    }
    return BaselineRun(name, settings, predictions, metrics)


def fit_majority(task: TaskData) -> BaselineRun:
    """The most frequent training label (or the training mean) predicted for every example."""
    if task.kind == "regression":
        # regression: the training mean
        constant: str | float = float(np.mean([float(e.label) for e in task.train]))
    else:
        counts = Counter(str(e.label) for e in task.train)
        # the most frequent training label; ties go to the first in the task's label order
        constant = max(task.labels, key=lambda label: (counts[label], -task.labels.index(label)))
    predictions = {split: [constant] * len(task.split(split)) for split in ("dev", "test")}
    return _result("majority", task, {}, predictions)


def bag_of_words_tokens(text: str) -> list[str]:
    """The words of lowercased `text`; within a word, each run of a script written without
    spaces gives its characters and each pair of adjacent characters instead."""
    tokens: list[str] = []
    for word in WORD.findall(text.lower()):
        # split() with a capturing group: the odd pieces are unsegmented runs, the rest words
        for index, piece in enumerate(UNSEGMENTED.split(word)):
            if index % 2 == 0:
                tokens += [piece] if piece else []
            else:
                # no spaces to find words by: character unigrams and bigrams
                tokens += [*piece, *(a + b for a, b in pairwise(piece))]
    return tokens


def _texts(examples: Sequence[Example], column: int) -> list[str]:
    return [example.texts[column] for example in examples]


def _features(vectorizer: TfidfVectorizer, examples: Sequence[Example]) -> sparse.csr_matrix:
    """One TF-IDF vector per text; a pair: both vectors and their element-wise product."""
    columns = [vectorizer.transform(_texts(examples, i)) for i in range(len(examples[0].texts))]
    if len(columns) == 2:
        # the product keeps the words the two texts share, weighted by both
        columns.append(columns[0].multiply(columns[1]))
    return sparse.hstack(columns, format="csr")


def fit_bag_of_words(task: TaskData) -> BaselineRun:
    """TF-IDF features, then logistic regression or ridge with the best-on-dev regularisation."""
    # word unigrams (single letters too; characters and their pairs in Chinese or Japanese),
    # lowercased; vocabulary and IDF from training texts only
    vectorizer = TfidfVectorizer(
        lowercase=False, tokenizer=bag_of_words_tokens, token_pattern=None, sublinear_tf=True
    )
    vectorizer.fit([text for example in task.train for text in example.texts])
    features = {
        split: _features(vectorizer, task.split(split)) for split in ("train", "dev", "test")
    }
    if task.kind == "regression":
        targets: np.ndarray = np.array([float(e.label) for e in task.train])
        grid = [("alpha", value, Ridge(alpha=value)) for value in RIDGE_ALPHA_GRID]
    else:
        targets = np.array([str(e.label) for e in task.train])
        grid = [
            ("C", value, LogisticRegression(C=value, max_iter=2000, solver="lbfgs"))
            for value in LOGISTIC_C_GRID
        ]
    best: BaselineRun | None = None
    for key, value, model in grid:
        model.fit(features["train"], targets)
        predictions = {
            split: [_plain(p) for p in model.predict(features[split])] for split in ("dev", "test")
        }
        run = _result("bag_of_words", task, {key: value}, predictions)
        # keep the setting with the best dev score (the first of equal ones)
        if best is None or run.metrics["dev"]["score"] > best.metrics["dev"]["score"]:
            best = run
    assert best is not None
    return best


def _plain(value: Any) -> str | float:
    return float(value) if isinstance(value, np.floating) else str(value)


def fit_baselines(task: TaskData) -> dict[str, BaselineRun]:
    """Every baseline of `BASELINES` fit on the task's training subset."""
    return {"majority": fit_majority(task), "bag_of_words": fit_bag_of_words(task)}
