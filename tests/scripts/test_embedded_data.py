"""The committed embedded data (data/raw/) keeps its contract.

These tests read the committed files; they never rebuild them (the Debian packages the builder,
scripts/build_embedded_data.py, reads are not installed on CI).
"""

from __future__ import annotations

import json
import lzma
import re
from pathlib import Path

import pytest

from bertforge.constants import TASK_SPLITS
from tests.support import REPO_ROOT

RAW = REPO_ROOT / "data" / "raw"
CORPUS_FILES = sorted((RAW / "corpus").glob("*.txt.xz"))
TASK_DIRS = sorted(path for path in (RAW / "tasks").iterdir() if path.is_dir())
MIN_SPLIT_SIZE = {"train": 2000, "dev": 500, "test": 500}
TEXT_KEYS = {
    "single_sentence_classification": ("sentence",),
    "sentence_pair_classification": ("sentence1", "sentence2"),
    "sentence_pair_regression": ("sentence1", "sentence2"),
}

# The builder's rule for "the same text": lower-case ASCII letters and digits, everything else a
# separator.
ALPHANUMERIC_OR_NEWLINE = set(b"abcdefghijklmnopqrstuvwxyz0123456789\n")
NORMALIZE_BYTES = bytes(c if c in ALPHANUMERIC_OR_NEWLINE else 32 for c in range(256))
SENTENCE_BOUNDARY = re.compile(r"(?<=[.!?;:])[\"')\]]*\s+")


def normalize(text: str) -> str:
    return " ".join(re.findall(r"[a-z0-9]+", text.lower()))


@pytest.fixture(scope="module")
def corpus_texts() -> dict[str, bytes]:
    return {path.name: lzma.decompress(path.read_bytes()) for path in CORPUS_FILES}


@pytest.fixture(scope="module")
def corpus_sentences(corpus_texts: dict[str, bytes]) -> set[bytes]:
    """Every normalized sentence-like piece of the corpus, byte-level for speed. (The builder
    also checks whole multi-sentence lines; a leak there shows up in its sentences too.)"""
    sentences: set[bytes] = set()
    for data in corpus_texts.values():
        pieces = re.sub(rb"(?<=[.!?;:])[\"')\]]*\s+", b"\n", data.lower())
        sentences.update(
            b" ".join(p.split()) for p in pieces.translate(NORMALIZE_BYTES).split(b"\n")
        )
    sentences.discard(b"")
    return sentences


def read_split(task_dir: Path, split: str) -> list[dict[str, object]]:
    lines = (task_dir / f"{split}.jsonl").read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines]


def read_card(task_dir: Path) -> dict[str, object]:
    return json.loads((task_dir / "card.json").read_text(encoding="utf-8"))


def test_corpus_has_several_sources() -> None:
    assert len(CORPUS_FILES) >= 3


def test_corpus_is_utf8_and_between_10_and_30_megabytes(corpus_texts: dict[str, bytes]) -> None:
    for name, data in corpus_texts.items():
        data.decode("utf-8")  # raises on invalid UTF-8
        assert data, name
    total = sum(len(data) for data in corpus_texts.values())
    assert 10_000_000 <= total <= 30_000_000


def test_documents_are_separated_by_one_blank_line_and_never_contain_one(
    corpus_texts: dict[str, bytes],
) -> None:
    for name, data in corpus_texts.items():
        text = data.decode("utf-8")
        assert text.endswith("\n") and not text.endswith("\n\n"), name
        assert "\n\n\n" not in text, name
        documents = text.rstrip("\n").split("\n\n")
        assert len(documents) > 100, name
        # no line starts or ends with a space, so the only blank-looking lines are separators
        for space in (" ", "\u00a0"):
            assert not text.startswith(space), name
            assert f"{space}\n" not in text and f"\n{space}" not in text, name


def test_corpus_has_no_control_characters(corpus_texts: dict[str, bytes]) -> None:
    for name, data in corpus_texts.items():
        assert re.search(rb"[\x00-\x09\x0b-\x1f\x7f]", data) is None, name
        assert re.search("[\x80-\x9f]", data.decode("utf-8")) is None, name


def test_most_documents_have_two_sentences_or_more(corpus_texts: dict[str, bytes]) -> None:
    for name, data in corpus_texts.items():
        documents = data.decode("utf-8").rstrip("\n").split("\n\n")
        multi = sum(
            1 for document in documents if "\n" in document or SENTENCE_BOUNDARY.search(document)
        )
        assert multi >= 0.9 * len(documents), name


def test_tasks_cover_single_sentence_pair_and_regression_types() -> None:
    assert len(TASK_DIRS) >= 3
    task_types = {read_card(task_dir)["task_type"] for task_dir in TASK_DIRS}
    assert task_types == set(TEXT_KEYS)


@pytest.mark.parametrize("task_dir", TASK_DIRS, ids=lambda path: path.name)
def test_task_has_three_splits_of_minimum_size_with_the_right_keys_and_labels(
    task_dir: Path,
) -> None:
    card = read_card(task_dir)
    text_keys = TEXT_KEYS[card["task_type"]]
    assert tuple(card["text_keys"]) == text_keys
    assert (task_dir / "card.md").is_file()
    for split in TASK_SPLITS:
        rows = read_split(task_dir, split)
        assert len(rows) >= MIN_SPLIT_SIZE[split], split
        assert card["split_sizes"][split] == len(rows)
        for row in rows:
            assert set(row) == {*text_keys, "label"}
            assert all(isinstance(row[key], str) and row[key].strip() for key in text_keys)
            if card["task_type"] == "sentence_pair_regression":
                assert isinstance(row["label"], float) and 0.0 <= row["label"] <= 5.0
            else:
                assert isinstance(row["label"], str) and row["label"] in card["labels"]


@pytest.mark.parametrize("task_dir", TASK_DIRS, ids=lambda path: path.name)
def test_no_task_text_is_in_two_splits(task_dir: Path) -> None:
    text_keys = read_card(task_dir)["text_keys"]
    texts_by_split = {
        split: {row[key] for row in read_split(task_dir, split) for key in text_keys}
        for split in TASK_SPLITS
    }
    assert not texts_by_split["train"] & texts_by_split["dev"]
    assert not texts_by_split["train"] & texts_by_split["test"]
    assert not texts_by_split["dev"] & texts_by_split["test"]


@pytest.mark.parametrize("task_dir", TASK_DIRS, ids=lambda path: path.name)
def test_no_task_text_occurs_in_the_pretraining_corpus(
    task_dir: Path, corpus_sentences: set[bytes]
) -> None:
    text_keys = read_card(task_dir)["text_keys"]
    for split in TASK_SPLITS:
        for row in read_split(task_dir, split):
            for key in text_keys:
                pieces = [normalize(piece) for piece in SENTENCE_BOUNDARY.split(row[key])]
                units = [normalize(row[key])] + [p for p in pieces if len(p.split()) >= 4]
                leaked = [unit for unit in units if unit.encode() in corpus_sentences]
                assert not leaked, f"{task_dir.name}/{split}: {row[key]!r}"


@pytest.mark.parametrize("task_dir", TASK_DIRS, ids=lambda path: path.name)
def test_card_reports_both_baselines(task_dir: Path) -> None:
    card = read_card(task_dir)
    baselines = card["baselines"]
    if card["task_type"] == "sentence_pair_regression":
        assert set(baselines) == {"mean_predictor", "bow_ridge"}
        assert baselines["bow_ridge"]["pearson"] is not None
    else:
        assert set(baselines) == {"majority_class", "bow_logistic_regression"}
        trained = baselines["bow_logistic_regression"]["accuracy"]
        assert trained > baselines["majority_class"]["accuracy"]


def test_wic_marks_one_target_word_in_each_sentence() -> None:
    # WiC gives the word to compare; ours marks its first occurrence as *word* in both texts
    marked = re.compile(r"\*([A-Za-z]+(?:-[A-Za-z]+)*)\*")
    for split in TASK_SPLITS:
        for row in read_split(RAW / "tasks" / "wic", split):
            for key in ("sentence1", "sentence2"):
                assert len(marked.findall(str(row[key]))) == 1, (split, row)


def _builder(name: str):
    """scripts/<name>.py as a module."""
    import importlib.util
    import sys

    spec = importlib.util.spec_from_file_location(name, REPO_ROOT / "scripts" / f"{name}.py")
    assert spec is not None and spec.loader is not None
    builder = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = builder  # its dataclasses look their module up
    spec.loader.exec_module(builder)
    return builder


def test_wic_marks_the_first_whole_word_form_of_the_target() -> None:
    builder = _builder("build_embedded_data")
    forms = builder.inflected_forms("bank", "n", {})
    assert builder.mark_target("The bank-account at the Banks", forms) == (
        "The bank-account at the *Banks*"
    )
    assert builder.mark_target("a par-5 hole", {"par"}) == "a *par*-5 hole"


@pytest.mark.parametrize(
    ("builder_name", "render", "card_dir"),
    [
        ("build_embedded_data", "render_card_markdown", "tasks/supersense"),
        ("build_embedded_data", "render_card_markdown", "tasks/glosssim"),
        ("build_chinese_data", "render_task_card", "tasks-zh/quotesource"),
    ],
)
def test_each_card_md_is_its_card_json_rendered(builder_name: str, render: str, card_dir: str):
    """The builders share the cards' last sections (scripts/task_card.py); a committed card.md
    is what its builder renders from the committed card.json, classification and regression."""
    builder = _builder(builder_name)
    card = json.loads((RAW / card_dir / "card.json").read_text(encoding="utf-8"))
    rendered = getattr(builder, render)(card)
    assert rendered == (RAW / card_dir / "card.md").read_text(encoding="utf-8")
    assert "## Sources" in rendered and "## Label balance" in rendered
