"""GLUE, in its download layout and on the hub: each task's files, columns, labels and metric.

`GLUE_TASKS` describes the nine tasks of the standard GLUE download (``download_glue_data.py``:
``glue_data/CoLA`` …) and of the ``nyu-mll/glue`` hub dataset; `read_glue_tsv` reads one of its
TSV files into records with the hub dataset's column and label names, so both sources agree.
"""

from __future__ import annotations

import csv
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bertforge.errors import BertforgeError
from bertforge.io import utf8_lines

GLUE_HUB_NAMES = ("nyu-mll/glue", "glue")


@dataclass(frozen=True)
class GlueTask:
    """How one GLUE task is laid out on disk, and what it is.

    `columns` maps each normalized column (the nyu-mll/glue feature name) to its TSV header
    name, or to its position for header-less files (CoLA). `labels` are the class names (empty
    for STS-B's scores); with `numeric_labels` the file holds their indices, else the names.
    """

    text_columns: tuple[str, ...]
    columns: dict[str, str | int]
    labels: tuple[str, ...]
    metric: str
    train_file: str = "train.tsv"
    dev_files: dict[str, str] = field(default_factory=lambda: {"": "dev.tsv"})
    hub_dev_splits: dict[str, str] = field(default_factory=lambda: {"": "validation"})
    hub_test_splits: dict[str, str] = field(default_factory=lambda: {"": "test"})
    header: bool = True
    numeric_labels: bool = True


GLUE_TASKS: dict[str, GlueTask] = {
    "cola": GlueTask(
        ("sentence",),
        {"label": 1, "sentence": 3},
        ("unacceptable", "acceptable"),
        "matthews",
        header=False,
    ),
    "sst2": GlueTask(
        ("sentence",),
        {"sentence": "sentence", "label": "label"},
        ("negative", "positive"),
        "accuracy",
    ),
    "mrpc": GlueTask(
        ("sentence1", "sentence2"),
        {"sentence1": "#1 String", "sentence2": "#2 String", "label": "Quality"},
        ("not_equivalent", "equivalent"),
        "f1",
    ),
    "qqp": GlueTask(
        ("question1", "question2"),
        {"question1": "question1", "question2": "question2", "label": "is_duplicate"},
        ("not_duplicate", "duplicate"),
        "f1",
    ),
    "stsb": GlueTask(
        ("sentence1", "sentence2"),
        {"sentence1": "sentence1", "sentence2": "sentence2", "label": "score"},
        (),
        "pearson",
        numeric_labels=False,
    ),
    "mnli": GlueTask(
        ("premise", "hypothesis"),
        {"premise": "sentence1", "hypothesis": "sentence2", "label": "gold_label"},
        ("entailment", "neutral", "contradiction"),
        "accuracy",
        dev_files={"matched": "dev_matched.tsv", "mismatched": "dev_mismatched.tsv"},
        hub_dev_splits={"matched": "validation_matched", "mismatched": "validation_mismatched"},
        hub_test_splits={"matched": "test_matched", "mismatched": "test_mismatched"},
        numeric_labels=False,
    ),
    "qnli": GlueTask(
        ("question", "sentence"),
        {"question": "question", "sentence": "sentence", "label": "label"},
        ("entailment", "not_entailment"),
        "accuracy",
        numeric_labels=False,
    ),
    "rte": GlueTask(
        ("sentence1", "sentence2"),
        {"sentence1": "sentence1", "sentence2": "sentence2", "label": "label"},
        ("entailment", "not_entailment"),
        "accuracy",
        numeric_labels=False,
    ),
    "wnli": GlueTask(
        ("sentence1", "sentence2"),
        {"sentence1": "sentence1", "sentence2": "sentence2", "label": "label"},
        ("not_entailment", "entailment"),
        "accuracy",
    ),
}


def read_glue_tsv(path: Path, glue: GlueTask) -> Iterator[tuple[int, dict[str, Any]]]:
    """Rows of a GLUE TSV file as (line, record), with nyu-mll/glue column and label names.

    GLUE's files are tab-separated with no quoting (quotes are text), UTF-8 with an optional BOM
    (MRPC has one); CoLA has no header. A row lacking a column is an error naming file and line.
    """
    if not path.is_file():
        raise BertforgeError(f"{path}: GLUE file not found")
    lines = (text for _, text in utf8_lines(path, encoding="utf-8-sig"))
    reader = csv.reader(lines, delimiter="\t", quoting=csv.QUOTE_NONE)
    positions: dict[str, int]
    if glue.header:
        header = next(reader, None)
        if header is None:
            return
        positions = {}
        for name, column in glue.columns.items():
            if column not in header:
                raise BertforgeError(f"{path}: line 1: missing column {column!r}")
            positions[name] = header.index(column)
    else:
        positions = {name: int(column) for name, column in glue.columns.items()}
    for line_number, row in enumerate(reader, start=2 if glue.header else 1):
        record = {}
        for name, position in positions.items():
            if position >= len(row):
                column = glue.columns[name]
                raise BertforgeError(f"{path}: line {line_number}: missing column {column!r}")
            record[name] = row[position]
        if glue.numeric_labels and glue.labels:
            raw = record["label"]
            if raw not in ("0", "1", "2")[: len(glue.labels)]:
                last = len(glue.labels) - 1
                raise BertforgeError(
                    f"{path}: line {line_number}: label {raw!r} is not one of 0..{last}"
                )
            record["label"] = glue.labels[int(raw)]
        yield line_number, record
