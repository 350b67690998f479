"""The baselines: fit on fine-tuning's training subset, regularisation chosen on dev."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest

from bertforge.evaluate import bootstrap_errors, fit_baselines, render_report
from bertforge.evaluate.baselines import LOGISTIC_C_GRID, RIDGE_ALPHA_GRID, bag_of_words_tokens
from bertforge.finetune.tasks import Example, TaskData
from tests.evaluate.fakes import fake_evaluation
from tests.support import REPO_ROOT


def make_task(kind: str, train, dev, test, labels=()) -> TaskData:
    def examples(rows, split):
        return [
            Example(texts, label, f"{split}.jsonl", i + 1) for i, (texts, label) in enumerate(rows)
        ]

    return TaskData(
        "t",
        kind,
        tuple(labels),
        "accuracy" if kind == "classification" else "pearson",
        labels[-1] if len(labels) == 2 else None,
        examples(train, "train"),
        examples(dev, "dev"),
        examples(test, "test"),
        False,
    )


def sentiment_rows(count: int, seed: int) -> list:
    rng = np.random.default_rng(seed)
    filler = ["the", "film", "was", "a", "story", "of", "people"]
    rows = []
    for _ in range(count):
        label = "good" if rng.random() < 0.4 else "bad"
        word = {"good": ["great", "fine"], "bad": ["awful", "dull"]}[label][rng.integers(2)]
        words = [*rng.choice(filler, 5), word]
        rows.append(((" ".join(rng.permutation(words)),), label))
    return rows


def test_majority_predicts_the_most_frequent_training_label_and_bag_of_words_learns_words():
    task = make_task(
        "classification",
        sentiment_rows(200, 0),
        sentiment_rows(60, 1),
        sentiment_rows(60, 2),
        ("bad", "good"),
    )
    runs = fit_baselines(task)
    assert set(runs["majority"].predictions["test"]) == {"bad"}
    majority_accuracy = np.mean([e.label == "bad" for e in task.test])
    assert runs["majority"].metrics["test"]["accuracy"] == pytest.approx(majority_accuracy)
    # the label is one word of the text: bag-of-words gets it all right
    assert runs["bag_of_words"].metrics["test"]["accuracy"] == 1.0
    assert runs["bag_of_words"].settings["C"] in LOGISTIC_C_GRID


def test_regression_baselines_predict_the_training_mean_and_fit_word_weights():
    rng = np.random.default_rng(0)

    def rows(count):
        out = []
        for _ in range(count):
            hot = int(rng.integers(0, 4))
            out.append((("warm " * hot + "day", "a day"), float(hot)))
        return out

    task = make_task("regression", rows(100), rows(30), rows(30))
    runs = fit_baselines(task)
    mean = np.mean([e.label for e in task.train])
    assert runs["majority"].predictions["test"] == [pytest.approx(mean)] * 30
    assert runs["majority"].metrics["test"]["pearson"] == 0.0
    assert runs["bag_of_words"].metrics["test"]["pearson"] > 0.9
    assert runs["bag_of_words"].settings["alpha"] in RIDGE_ALPHA_GRID


def test_bootstrap_errors_repeat_and_shrink_with_more_test_examples():
    rows = sentiment_rows(400, 3)
    small = make_task("classification", rows[:100], rows[:50], rows[100:150], ("bad", "good"))
    large = make_task("classification", rows[:100], rows[:50], rows[100:400], ("bad", "good"))
    errors = {}
    for name, task in (("small", small), ("large", large)):
        predicted = ["good"] * len(task.test)
        first = bootstrap_errors(task, "test", {"m": [predicted]}, 200, 0)
        assert first == bootstrap_errors(task, "test", {"m": [predicted]}, 200, 0)
        errors[name] = first["m"]
    # a binomial proportion's error falls as 1/sqrt(n)
    assert errors["large"] < errors["small"]
    p = np.mean([e.label == "good" for e in large.test])
    assert errors["large"] == pytest.approx(np.sqrt(p * (1 - p) / 300), rel=0.25)


def test_a_task_is_at_floor_when_no_model_beats_majority_by_two_standard_errors():
    evaluation = fake_evaluation(bootstrap_error=0.02)
    assert evaluation["tasks"]["learnable"]["at_floor"] is False
    assert evaluation["tasks"]["noise"]["at_floor"] is True
    assert evaluation["average"]["test"]["majority"] == {"mean": 0.5, "std": 0.0}
    # a fine-tuned model's error adds the seed spread of its mean to the bootstrap error
    error = evaluation["tasks"]["learnable"]["standard_error"]["pretrained"]
    assert error == pytest.approx(np.sqrt(0.02**2 + 0.01**2 / 3))
    report = render_report(evaluation)
    assert "| learnable | accuracy | 0.810 ± " in report
    assert "| pretrained | scratch | majority | bag-of-words | Δ | at floor |" in report
    assert "At floor here: noise." in report


def english_task_texts() -> list[str]:
    rows = []
    for path in sorted((REPO_ROOT / "data/raw/tasks").glob("*/*.jsonl")):
        rows += [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    return [
        row[key] for row in rows for key in ("sentence", "sentence1", "sentence2") if key in row
    ]


def test_english_texts_keep_the_words_of_scikit_learns_pattern_so_their_numbers_stay():
    texts = english_task_texts()
    assert len(texts) > 20000
    word_pattern = re.compile(r"(?u)\b\w+\b")  # the pattern the baseline had before Chinese
    for text in texts:
        assert bag_of_words_tokens(text) == word_pattern.findall(text.lower()), text


def test_chinese_runs_become_characters_and_adjacent_pairs_latin_words_stay_whole():
    assert bag_of_words_tokens("天下有道，Debian软件") == [
        *"天下有道",
        "天下",
        "下有",
        "有道",
        "debian",
        *"软件",
        "软件",
    ]
    assert bag_of_words_tokens("한국어 단어") == ["한국어", "단어"]  # Korean has spaces


def chinese_rows(count: int, seed: int) -> list:
    """Sentences without spaces whose label is a two-character word among random characters:
    one token per sentence to a whitespace/word pattern, learnable from character pairs."""
    rng = np.random.default_rng(seed)
    filler = list("我们的了是在有这个人他们说到也就")
    rows = []
    for _ in range(count):
        label = "good" if rng.random() < 0.4 else "bad"
        word = {"good": ["好吃", "美味"], "bad": ["难吃", "太咸"]}[label][rng.integers(2)]
        characters = [*rng.choice(filler, 6)]
        characters.insert(int(rng.integers(0, 7)), word)
        rows.append((("".join(characters) + "。",), label))
    return rows


def test_bag_of_words_learns_a_chinese_task_that_a_word_pattern_cannot_split():
    task = make_task(
        "classification",
        chinese_rows(200, 0),
        chinese_rows(60, 1),
        chinese_rows(60, 2),
        ("bad", "good"),
    )
    runs = fit_baselines(task)
    # each sentence is one run of characters: as one word, no test sentence is seen in train
    assert not {e.texts[0][:-1] for e in task.test} & {e.texts[0][:-1] for e in task.train}
    assert runs["majority"].metrics["test"]["accuracy"] < 0.7
    assert runs["bag_of_words"].metrics["test"]["accuracy"] == 1.0
