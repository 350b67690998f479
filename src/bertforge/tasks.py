"""Fine-tuning tasks: where their examples come from, and how each is scored.

A task is described in params.yaml (`finetune.tasks.<name>`, a `TaskSpec`) and read from one of
three sources into the same shape — train, dev and test lists of `Example`:

* ``embedded``: a directory (data/raw/tasks/<name>) of ``train.jsonl``, ``dev.jsonl`` and
  ``test.jsonl``, one JSON object a line with the spec's text columns and label column.
* ``glue``: one task directory of the standard GLUE download (``glue_data/CoLA`` …), read with
  each task's own TSV layout (see `GLUE_TASKS`); columns are renamed to the feature names of the
  ``nyu-mll/glue`` hub dataset and labels to its label names, so both sources agree.
* ``hub``: ``datasets.load_dataset(path, config)``; ``nyu-mll/glue`` (or ``glue``) gets the
  GLUE defaults for its config.

GLUE's test sets carry no labels, so for GLUE (and any hub test split without labels) the test
split *is* the dev split: ``TaskData.test_is_dev`` says so and the report marks it. Such a "test"
number was also used for model selection and is optimistic.

Official metrics are plain numpy (no scipy at runtime): accuracy, Matthews correlation (the
multi-class form, as scikit-learn), F1 of the positive class (binary tasks), macro F1
(multi-class), Pearson and Spearman (average ranks for ties), MSE. Every task names its primary
metric; its *score* — what model selection maximizes and the GLUE-style average uses — is the
primary metric, averaged with its GLUE partner (F1 with accuracy, Pearson with Spearman) and over
the subsets of a split (MNLI matched and mismatched), as the GLUE leaderboard does.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from bertforge.errors import BertforgeError
from bertforge.io import json_object_lines
from bertforge.params import require

TaskKind = Literal["classification", "regression"]
MetricName = Literal["accuracy", "f1", "macro_f1", "matthews", "pearson", "spearman"]
SPLITS = ("train", "dev", "test")
GLUE_HUB_NAMES = ("nyu-mll/glue", "glue")

# Metrics that GLUE reports as a pair; a task's score is the mean of the pair.
GLUE_METRIC_PAIRS: dict[str, tuple[str, ...]] = {
    "f1": ("f1", "accuracy"),
    "pearson": ("pearson", "spearman"),
    "spearman": ("pearson", "spearman"),
}


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
            "sizes": {name: len(self.split(name)) for name in SPLITS},
            "test_is_dev": self.test_is_dev,
            "sources": self.sources,
        }


# --- GLUE, in its download layout and on the hub ----------------------------------------------


@dataclass(frozen=True)
class GlueTask:
    """How one GLUE task is laid out on disk, and what it is.

    `columns` maps each normalized column (the nyu-mll/glue feature name) to its TSV header
    name, or to its position for header-less files (CoLA). `label_names` turns the file's numeric
    labels into names; None when the file already holds names (or scores, for STS-B).
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


# A raw record is (row, columns); a split is a list of parts (subset, source, records): one
# part per file or hub split, several for MNLI's matched and mismatched dev sets.
RawRecord = tuple[int, dict[str, Any]]
Split = list[tuple[str, str, list[RawRecord]]]


def read_glue_tsv(path: Path, glue: GlueTask) -> Iterator[RawRecord]:
    """Rows of one GLUE TSV file as normalized records (nyu-mll/glue column names and labels).

    GLUE's files are tab-separated with no quoting (quotes are text), UTF-8 with an optional BOM
    (MRPC has one); CoLA has no header. A row lacking a column is an error naming file and line.
    """
    if not path.is_file():
        raise BertforgeError(f"{path}: GLUE file not found")
    with open(path, encoding="utf-8-sig", newline="") as handle:
        reader = csv.reader(handle, delimiter="\t", quoting=csv.QUOTE_NONE)
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


def read_jsonl(path: Path) -> Iterator[RawRecord]:
    """Rows of a JSON-lines file; blank lines are skipped, anything else must be a JSON object."""
    if not path.is_file():
        raise BertforgeError(f"{path}: task split file not found")
    with open(path, encoding="utf-8") as handle:
        yield from json_object_lines(enumerate(handle, start=1), str(path))


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
        files = {split: directory / f"{split}.jsonl" for split in SPLITS}
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
    for split in SPLITS:
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
        for split in SPLITS if declared else ("dev", "test"):
            _check_labels(
                name, examples[split], labels, "the task's labels" if declared else "train"
            )
    metric = spec.metric or (glue.metric if glue else "accuracy")
    if metric == "f1" and len(labels) != 2:
        raise BertforgeError(
            f"task {name!r}: metric 'f1' needs 2 labels, found {len(labels)}; use macro_f1"
        )
    train = examples["train"]
    if spec.max_train_examples is not None and len(train) > spec.max_train_examples:
        chosen = np.sort(
            np.random.default_rng(0).permutation(len(train))[: spec.max_train_examples]
        )
        train = [train[int(index)] for index in chosen]
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
        sources={split: ", ".join(source for _, source, _ in raw[split]) for split in SPLITS},
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


# --- metrics ---------------------------------------------------------------------------------


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
    paired = GLUE_METRIC_PAIRS.get(task.metric, (task.metric,))
    metrics["score"] = float(np.mean([part[name] for part in parts for name in paired]))
    return metrics
