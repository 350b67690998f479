"""Fine-tuning tasks: where their examples come from, checked into one shape.

A task is described in params.yaml (`finetune.tasks.<name>`, a `TaskSpec`) and read from one of
three sources into the same shape — train, dev and test lists of `Example`:

* ``embedded``: a directory (data/raw/tasks/<name>) of ``train.jsonl``, ``dev.jsonl`` and
  ``test.jsonl``, one JSON object a line with the spec's text columns and label column.
* ``glue``: one task directory of the standard GLUE download (``glue_data/CoLA`` …), read with
  each task's own TSV layout (`bertforge.finetune.glue`); columns are renamed to the feature
  names of the ``nyu-mll/glue`` hub dataset and labels to its label names, so both sources agree.
* ``hub``: ``datasets.load_dataset(path, config)``; ``nyu-mll/glue`` (or ``glue``) gets the
  GLUE defaults for its config.

GLUE's test sets carry no labels, so for GLUE (and any hub test split without labels) the test
split *is* the dev split: ``TaskData.test_is_dev`` says so and the report marks it. Such a "test"
number was also used for model selection and is optimistic. How a task is scored is
`bertforge.finetune.metrics`.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from bertforge.constants import TASK_SPLITS
from bertforge.errors import BertforgeError
from bertforge.finetune.glue import GLUE_HUB_NAMES, GLUE_TASKS, GlueTask, read_glue_tsv
from bertforge.io import json_object_lines, utf8_lines
from bertforge.params import require

TaskKind = Literal["classification", "regression"]
MetricName = Literal["accuracy", "f1", "macro_f1", "matthews", "pearson", "spearman"]

# --- the task spec in params.yaml ------------------------------------------------------------


@dataclass(frozen=True)
class TaskSpec:
    """One entry of ``finetune.tasks``: where a task's data is and how it is read and scored.

    For GLUE tasks (``source: glue``, or ``source: hub`` with path ``nyu-mll/glue``) `config`
    names the GLUE task and every other field defaults to GLUE's definition; for other sources
    `kind`, `text_columns` and `metric` are required. `labels: null` means the sorted set of
    labels in train; `positive_label` (binary F1) defaults to the last label.
    """

    source: Literal["embedded", "glue", "hub"]
    path: str
    config: str | None = None
    kind: TaskKind | None = None
    text_columns: list[str] | None = None
    label_column: str = "label"
    labels: list[str] | None = None
    positive_label: str | None = None
    metric: MetricName | None = None
    train_split: str = "train"
    dev_split: str = "validation"
    test_split: str | None = "test"
    max_train_examples: int | None = None
    # knobs of the finetune section this task trains with instead (`TaskTraining` names them)
    training: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        glue = self.glue_task()
        if self.source == "glue":
            require(
                glue is not None,
                "config",
                f"must name a GLUE task ({', '.join(GLUE_TASKS)})",
                self.config,
            )
        if glue is None:
            for name in ("kind", "text_columns", "metric"):
                require(getattr(self, name) is not None, name, "is required for this source", None)
        if self.text_columns is not None:
            require(
                len(self.text_columns) in (1, 2),
                "text_columns",
                "must name 1 or 2 columns",
                self.text_columns,
            )
        if self.max_train_examples is not None:
            require(
                self.max_train_examples >= 1,
                "max_train_examples",
                "must be at least 1",
                self.max_train_examples,
            )
        kind = self.resolved_kind()
        if kind == "regression":
            require(
                self.metric in (None, "pearson", "spearman"),
                "metric",
                "must be pearson or spearman for regression",
                self.metric,
            )
            require(self.labels is None, "labels", "must be null for regression", self.labels)
        else:
            require(
                self.metric not in ("pearson", "spearman"),
                "metric",
                "must be a classification metric",
                self.metric,
            )
        if self.labels is not None:
            require(
                len(set(self.labels)) == len(self.labels) >= 2,
                "labels",
                "must be at least 2 distinct labels",
                self.labels,
            )
            if self.positive_label is not None:
                require(
                    self.positive_label in self.labels,
                    "positive_label",
                    "must be one of labels",
                    self.positive_label,
                )

    def glue_task(self) -> GlueTask | None:
        """The GLUE definition this spec reads with, if it is a GLUE task."""
        if self.source == "glue" or (self.source == "hub" and self.path in GLUE_HUB_NAMES):
            return GLUE_TASKS.get((self.config or "").lower().replace("-", ""))
        return None

    def resolved_kind(self) -> TaskKind:
        glue = self.glue_task()
        if self.kind is not None:
            return self.kind
        return "classification" if glue is None or glue.labels else "regression"


# --- examples --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Example:
    """One labelled example: one text (single-sentence task) or two (pair task).

    `source` and `row` locate it (a file and 1-based line number, or a hub split and 0-based
    index), for errors and predictions files; `subset` names the part of a split it belongs to
    (MNLI's ``matched`` and ``mismatched``), empty otherwise.
    """

    texts: tuple[str, ...]
    label: str | float
    source: str
    row: int
    subset: str = ""

    def where(self) -> str:
        """``<file>: line N`` or ``<hub split>: row N``, for error messages."""
        return _where(self.source, self.row)


def _where(source: str, row: int) -> str:
    unit = "line" if source.endswith((".jsonl", ".tsv")) else "row"
    return f"{source}: {unit} {row}"


@dataclass(frozen=True)
class TaskData:
    """A task read and checked: its splits, its label set and how it is scored."""

    name: str
    kind: TaskKind
    labels: tuple[str, ...]
    metric: str
    positive_label: str | None
    train: list[Example]
    dev: list[Example]
    test: list[Example]
    test_is_dev: bool
    sources: dict[str, str] = field(default_factory=dict)

    def split(self, name: str) -> list[Example]:
        return {"train": self.train, "dev": self.dev, "test": self.test}[name]

    def describe(self) -> dict[str, Any]:
        """What downstream stages need to know about the task, as JSON (task.json)."""
        return {
            "name": self.name,
            "kind": self.kind,
            "labels": list(self.labels),
            "metric": self.metric,
            "positive_label": self.positive_label,
            "pair": len(self.train[0].texts) == 2,
            "sizes": {name: len(self.split(name)) for name in TASK_SPLITS},
            "test_is_dev": self.test_is_dev,
            "sources": self.sources,
        }


# --- the sources ----------------------------------------------------------------------------

# A raw record is (row, columns); a split is a list of parts (subset, source, records): one
# part per file or hub split, several for MNLI's matched and mismatched dev sets.
RawRecord = tuple[int, dict[str, Any]]
Split = list[tuple[str, str, list[RawRecord]]]


def read_jsonl(path: Path) -> Iterator[RawRecord]:
    """Rows of a JSON-lines file; blank lines are skipped, anything else must be a JSON object."""
    if not path.is_file():
        raise BertforgeError(f"{path}: task split file not found")
    yield from json_object_lines(utf8_lines(path), str(path))


def load_hub_splits(spec: TaskSpec) -> dict[str, Split]:
    """Records of the train, dev and test splits of a hub dataset, labels as names.

    `datasets.load_dataset` is called for real; any failure to get the dataset (offline, unknown
    name or config) is one line naming it. ClassLabel features give label names; a label of -1
    or None marks an unlabelled example (GLUE's test sets), kept as None.
    """
    import datasets

    where = f"hub dataset {spec.path!r}" + (f" (config {spec.config!r})" if spec.config else "")
    try:
        loaded = datasets.load_dataset(spec.path, spec.config)
    except Exception as error:  # any failure to fetch the dataset is the user's to fix
        first_line = (str(error).strip().splitlines() or [type(error).__name__])[0]
        raise BertforgeError(f"{where} could not be loaded: {first_line}") from None
    glue = spec.glue_task()
    wanted = {
        "train": {"": spec.train_split},
        "dev": glue.hub_dev_splits if glue else {"": spec.dev_split},
        "test": (glue.hub_test_splits if glue else {"": spec.test_split})
        if spec.test_split
        else {},
    }
    splits: dict[str, Split] = {}
    for split, parts in wanted.items():
        splits[split] = []
        for subset, hub_split in parts.items():
            if hub_split not in loaded:
                raise BertforgeError(f"{where}: no split {hub_split!r} (has: {', '.join(loaded)})")
            dataset = loaded[hub_split]
            feature = dataset.features.get(spec.label_column)
            names = list(feature.names) if hasattr(feature, "names") else None
            source = f"{where} split {hub_split!r}"
            records = []
            for index, row in enumerate(dataset):
                label = row.get(spec.label_column)
                if isinstance(label, int) and not isinstance(label, bool) and label < 0:
                    label = None
                elif names is not None and label is not None:
                    label = names[label]
                records.append((index, {**row, spec.label_column: label}))
            splits[split].append((subset, source, records))
    return splits


def _is_unlabelled(split: Split, label_column: str) -> bool:
    """True for a split with no examples, or none with a label (GLUE's test sets)."""
    return all(record.get(label_column) is None for _, _, part in split for _, record in part)


# --- reading a task --------------------------------------------------------------------------


def read_splits(spec: TaskSpec) -> tuple[dict[str, Split], bool]:
    """The raw train, dev and test records of a task, and whether test is a copy of dev."""
    directory = Path(spec.path)
    if spec.source == "embedded":
        files = {split: directory / f"{split}.jsonl" for split in TASK_SPLITS}
        return {
            split: [("", str(file), list(read_jsonl(file)))] for split, file in files.items()
        }, False
    glue = spec.glue_task()
    if spec.source == "glue":
        assert glue is not None
        train_file = directory / glue.train_file
        train = [("", str(train_file), list(read_glue_tsv(train_file, glue)))]
        dev = [
            (subset, str(directory / name), list(read_glue_tsv(directory / name, glue)))
            for subset, name in glue.dev_files.items()
        ]
        return {"train": train, "dev": dev, "test": dev}, True
    splits = load_hub_splits(spec)
    if _is_unlabelled(splits["test"], spec.label_column):
        splits["test"] = splits["dev"]
        return splits, True
    return splits, False


def load_task(name: str, spec: TaskSpec) -> TaskData:
    """Read and check all splits of task `name` (paths relative to the working directory).

    Checks, each a one-line error naming the file and row: every split non-empty, every row has
    the text and label columns, regression labels are numbers, and every dev/test label occurs in
    train (with explicit `labels`: every label of every split is one of them).
    """
    glue = spec.glue_task()
    text_columns = tuple(spec.text_columns or (glue.text_columns if glue else ()))
    label_column = "label" if spec.source == "glue" else spec.label_column
    kind = spec.resolved_kind()
    raw, test_is_dev = read_splits(spec)
    examples: dict[str, list[Example]] = {}
    for split in TASK_SPLITS:
        examples[split] = [
            _example(source, row, record, subset, text_columns, label_column, kind)
            for subset, source, part in raw[split]
            for row, record in part
        ]
        if not examples[split]:
            where = ", ".join(source for _, source, _ in raw[split]) or spec.path
            raise BertforgeError(f"{where}: split {split!r} of task {name!r} is empty")
    labels: tuple[str, ...] = ()
    if kind == "classification":
        declared = spec.labels or (list(glue.labels) if glue and glue.labels else None)
        inferred = sorted({str(example.label) for example in examples["train"]})
        labels = tuple(declared or inferred)
        for split in TASK_SPLITS if declared else ("dev", "test"):
            _check_labels(
                name, examples[split], labels, "the task's labels" if declared else "train"
            )
    metric = spec.metric or (glue.metric if glue else "accuracy")
    if metric == "f1" and len(labels) != 2:
        raise BertforgeError(
            f"task {name!r}: metric 'f1' needs 2 labels, found {len(labels)}; use macro_f1"
        )
    train = training_subset(examples["train"], spec.max_train_examples)
    _check_training_subset(name, kind, train, examples)
    return TaskData(
        name=name,
        kind=kind,
        labels=labels,
        metric=metric,
        positive_label=spec.positive_label or (labels[-1] if len(labels) == 2 else None),
        train=train,
        dev=examples["dev"],
        test=examples["test"],
        test_is_dev=test_is_dev,
        sources={split: ", ".join(source for _, source, _ in raw[split]) for split in TASK_SPLITS},
    )


def training_subset(train: list[Example], max_train_examples: int | None) -> list[Example]:
    """The examples fine-tuning trains on (and the baselines are fit on): all of train, or a
    seeded random subset of `max_train_examples` in file order — the same for every stage."""
    if max_train_examples is None or len(train) <= max_train_examples:
        return train
    chosen = np.sort(np.random.default_rng(0).permutation(len(train))[:max_train_examples])
    return [train[int(index)] for index in chosen]


def _check_training_subset(
    name: str, kind: TaskKind, train: list[Example], examples: dict[str, list[Example]]
) -> None:
    """A training subset that can teach the task: regression targets that vary, and every
    label of dev and test among its labels (a model cannot learn a class it never sees)."""
    source = train[0].source
    if kind == "regression":
        values = {float(example.label) for example in train}
        if len(values) == 1:
            raise BertforgeError(
                f"{source}: task {name!r} is a regression task but every training target is "
                f"{values.pop():g}; there is nothing to learn"
            )
        return
    seen = {example.label for example in train}
    for split in ("dev", "test"):
        for example in examples[split]:
            if example.label not in seen:
                raise BertforgeError(
                    f"{example.where()}: label {example.label!r} of task {name!r} does not occur "
                    f"in the training subset ({len(train)} examples of {source}); raise "
                    "max_train_examples or drop the label"
                )


def _example(
    source: str,
    row: int,
    record: dict[str, Any],
    subset: str,
    text_columns: Sequence[str],
    label_column: str,
    kind: TaskKind,
) -> Example:
    for column in (*text_columns, label_column):
        if record.get(column) is None:
            raise BertforgeError(f"{_where(source, row)}: missing column {column!r}")
    texts = tuple(record[column] for column in text_columns)
    for column, text in zip(text_columns, texts, strict=True):
        if not isinstance(text, str):
            raise BertforgeError(
                f"{_where(source, row)}: column {column!r} must be text, got {text!r}"
            )
    label = record[label_column]
    if kind == "regression":
        number = _as_number(label)
        if number is None:
            raise BertforgeError(
                f"{_where(source, row)}: label {label!r} is not a number (regression task)"
            )
        return Example(texts, number, source, row, subset)
    if isinstance(label, float) and label.is_integer():
        label = int(label)
    return Example(texts, str(label), source, row, subset)


def _as_number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        return None
    try:
        number = float(value)
    except ValueError:
        return None
    return number if math.isfinite(number) else None


def _check_labels(name: str, examples: list[Example], labels: tuple[str, ...], origin: str) -> None:
    known = set(labels)
    for example in examples:
        if example.label not in known:
            raise BertforgeError(
                f"{example.where()}: label {example.label!r} of task {name!r} does not occur in "
                f"{origin} ({', '.join(labels)})"
            )
