"""Task sources (embedded jsonl, GLUE download layout, hub) and their bad inputs."""

from __future__ import annotations

import json
from pathlib import Path

import datasets
import pytest

from bertforge.errors import BertforgeError
from bertforge.finetune.tasks import TaskSpec, load_task
from bertforge.params import parse


@pytest.fixture(autouse=True)
def in_tmp_path(tmp_path, monkeypatch):
    """Task paths are relative to the working directory, as in a stage run from the repo root."""
    monkeypatch.chdir(tmp_path)


def spec(**values) -> TaskSpec:
    return parse(TaskSpec, values, "params.yaml: finetune.tasks.t")


def write_lines(path: Path, lines: list[str], bom: bool = False) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(("\ufeff" if bom else "") + "".join(line + "\n" for line in lines), "utf-8")


def write_jsonl(path: Path, rows: list[dict]) -> None:
    write_lines(path, [json.dumps(row) for row in rows])


# --- embedded --------------------------------------------------------------------------------

PAIR_SPEC = {
    "source": "embedded",
    "path": "tasks/wic",
    "kind": "classification",
    "text_columns": ["sentence1", "sentence2"],
    "metric": "accuracy",
}


def write_wic(root: Path, **overrides: list[dict]) -> None:
    rows = {
        "train": [
            {"sentence1": "a bank of the river", "sentence2": "the bank lent money", "label": "F"},
            {"sentence1": "he ran fast", "sentence2": "she ran quickly", "label": "T"},
            {"sentence1": "a bright star", "sentence2": "the star of the film", "label": "F"},
        ],
        "dev": [{"sentence1": "cold water", "sentence2": "a cold day", "label": "T"}],
        "test": [{"sentence1": "a light bag", "sentence2": "turn on the light", "label": "F"}],
    }
    for split, split_rows in (rows | overrides).items():
        write_jsonl(root / "tasks/wic" / f"{split}.jsonl", split_rows)


def test_embedded_pair_task_reads_texts_and_infers_sorted_labels_from_train():
    write_wic(Path())
    task = load_task("wic", spec(**PAIR_SPEC))
    assert task.labels == ("F", "T")
    assert task.train[0].texts == ("a bank of the river", "the bank lent money")
    assert task.train[1].row == 2 and task.train[1].source == "tasks/wic/train.jsonl"
    assert not task.test_is_dev
    assert task.positive_label == "T"
    assert task.describe()["sizes"] == {"train": 3, "dev": 1, "test": 1}


def test_max_train_examples_takes_the_same_seeded_subset_every_time():
    train = [{"sentence1": f"a {i}", "sentence2": "b", "label": "FT"[i % 2]} for i in range(6)]
    write_wic(Path(), train=train)
    first = load_task("wic", spec(**PAIR_SPEC, max_train_examples=4))
    second = load_task("wic", spec(**PAIR_SPEC, max_train_examples=4))
    assert len(first.train) == 4
    assert [e.row for e in first.train] == [e.row for e in second.train]
    assert first.labels == ("F", "T")


def test_a_dev_label_missing_from_the_training_subset_is_refused():
    write_wic(Path())  # the seeded 2 of 3 training rows are both 'F'; dev has 'T'
    with pytest.raises(
        BertforgeError,
        match=r"^tasks/wic/dev.jsonl: line 1: label 'T' of task 'wic' does not occur in the "
        r"training subset \(2 examples of tasks/wic/train.jsonl\)",
    ):
        load_task("wic", spec(**PAIR_SPEC, max_train_examples=2))


def test_a_dev_label_that_train_does_not_have_names_file_and_line():
    write_wic(
        Path(),
        dev=[{"sentence1": "x", "sentence2": "y", "label": "T"}] * 2
        + [{"sentence1": "x", "sentence2": "y", "label": "maybe"}],
    )
    with pytest.raises(
        BertforgeError,
        match=r"^tasks/wic/dev.jsonl: line 3: label 'maybe' .* does not occur in train \(F, T\)$",
    ):
        load_task("wic", spec(**PAIR_SPEC))


def test_a_label_outside_the_declared_labels_is_refused_in_train_too():
    write_wic(Path())
    with pytest.raises(
        BertforgeError,
        match=r"train.jsonl: line 2: label 'T' .* does not occur in the task's labels",
    ):
        load_task("wic", spec(**PAIR_SPEC, labels=["F", "X"]))


def test_an_empty_split_is_refused():
    write_wic(Path(), test=[])
    with pytest.raises(
        BertforgeError, match=r"^tasks/wic/test.jsonl: split 'test' of task 'wic' is empty$"
    ):
        load_task("wic", spec(**PAIR_SPEC))


def test_a_missing_column_names_file_line_and_column():
    write_wic(Path(), dev=[{"sentence1": "x", "label": "T"}])
    with pytest.raises(
        BertforgeError, match=r"^tasks/wic/dev.jsonl: line 1: missing column 'sentence2'$"
    ):
        load_task("wic", spec(**PAIR_SPEC))


def test_a_non_numeric_regression_label_names_file_and_line():
    rows = [{"sentence1": "a", "sentence2": "b", "label": value} for value in (2.5, 1.0)]
    write_wic(
        Path(),
        train=rows,
        dev=rows,
        test=[*rows, {"sentence1": "a", "sentence2": "b", "label": "high"}],
    )
    regression = PAIR_SPEC | {"kind": "regression", "metric": "pearson"}
    with pytest.raises(
        BertforgeError, match=r"^tasks/wic/test.jsonl: line 3: label 'high' is not a number"
    ):
        load_task("wic", spec(**regression))
    write_wic(Path(), train=rows, dev=rows, test=rows)
    assert load_task("wic", spec(**regression)).test[0].label == 2.5


def test_a_regression_task_with_constant_training_targets_is_refused():
    rows = [{"sentence1": "a", "sentence2": "b", "label": 2.5}] * 2
    write_wic(Path(), train=rows, dev=rows, test=rows)
    regression = PAIR_SPEC | {"kind": "regression", "metric": "pearson"}
    with pytest.raises(
        BertforgeError,
        match=r"^tasks/wic/train.jsonl: task 'wic' is a regression task but every training "
        r"target is 2.5; there is nothing to learn$",
    ):
        load_task("wic", spec(**regression))


def test_a_line_that_is_not_json_names_file_and_line():
    write_wic(Path())
    with open("tasks/wic/dev.jsonl", "a") as handle:
        handle.write("{not json\n")
    with pytest.raises(BertforgeError, match=r"^tasks/wic/dev.jsonl: line 2: malformed JSON"):
        load_task("wic", spec(**PAIR_SPEC))


@pytest.mark.parametrize(
    ("values", "message"),
    [
        (
            {"source": "embedded", "path": "x", "text_columns": ["s"], "metric": "accuracy"},
            r"t\.kind is required",
        ),
        ({"source": "glue", "path": "x", "config": "nope"}, r"t\.config must name a GLUE task"),
        (
            PAIR_SPEC | {"kind": "regression"},
            r"t\.metric must be pearson or spearman for regression",
        ),
        (
            PAIR_SPEC | {"text_columns": ["a", "b", "c"]},
            r"t\.text_columns must name 1 or 2 columns",
        ),
    ],
)
def test_task_spec_errors_name_the_task_and_key(values, message):
    with pytest.raises(BertforgeError, match=message):
        spec(**values)


# --- GLUE in its download layout -------------------------------------------------------------


def tsv(*fields: str) -> str:
    return "\t".join(fields)


def write_glue(root: Path) -> Path:
    """A few real-looking rows of CoLA, SST-2, MRPC, STS-B and MNLI in GLUE's TSV layouts."""
    glue = root / "glue_data"
    cola = [
        tsv("gj04", "1", "", "Our friends won't buy this analysis, let alone the next one."),
        tsv("gj04", "0", "*", "They drank the pub."),
        tsv("cj99", "1", "", '"Quotes" are text, not CSV quoting.'),
    ]
    write_lines(glue / "CoLA/train.tsv", cola)
    write_lines(glue / "CoLA/dev.tsv", cola[:2])
    write_lines(glue / "CoLA/test.tsv", [tsv("index", "sentence"), tsv("0", "Bill whistled.")])
    sst = [tsv("sentence", "label"), tsv("hide new secretions ", "0"), tsv("a gorgeous film ", "1")]
    write_lines(glue / "SST-2/train.tsv", sst)
    write_lines(glue / "SST-2/dev.tsv", [sst[0], tsv("it 's a charming journey . ", "1")])

    mrpc = [
        tsv("Quality", "#1 ID", "#2 ID", "#1 String", "#2 String"),
        tsv(
            "1",
            "702876",
            "702977",
            'Amrozi accused his brother , whom he called " the witness " , of lying .',
            'Referring to him as only " the witness " , Amrozi accused his brother .',
        ),
        tsv(
            "0",
            "2108705",
            "2108831",
            "\" Yucaipa owned Dominick 's before selling the chain .",
            "Yucaipa bought Dominick 's in 1995 for $ 693 million .",
        ),
    ]
    write_lines(glue / "MRPC/train.tsv", mrpc, bom=True)
    write_lines(glue / "MRPC/dev.tsv", [mrpc[0], mrpc[2], mrpc[1]], bom=True)

    sts_meta = ("main-captions", "MSRvid", "2012test", "0001", "none", "none")
    sts = [
        tsv("index", "genre", "filename", "year", "old_index", "source1", "source2")
        + tsv("", "sentence1", "sentence2", "score"),
        tsv("0", *sts_meta, "A plane is taking off.", "An air plane is taking off.", "5.000"),
        tsv("1", *sts_meta, "A man is playing a flute.", "A man is eating.", "0.600"),
    ]
    write_lines(glue / "STS-B/train.tsv", sts)
    write_lines(glue / "STS-B/dev.tsv", sts)
    write_lines(glue / "STS-B/test.tsv", [line.rsplit("\t", 1)[0] for line in sts[:2]])

    parse_columns = ("sentence1_binary_parse", "sentence2_binary_parse")
    parse_columns += ("sentence1_parse", "sentence2_parse")
    header = ("index", "promptID", "pairID", "genre", *parse_columns, "sentence1", "sentence2")
    parses = ("( x )",) * 4
    write_lines(
        glue / "MNLI/train.tsv",
        [
            tsv(*header, "label1", "gold_label"),
            tsv("0", "31193", "31193n", "government", *parses)
            + tsv("", "Cream skimming has two dimensions.", "Product and geography.")
            + tsv("", "neutral", "neutral"),
            tsv("1", "101457", "101457e", "telephone", *parses)
            + tsv("", "you know during the season", "You lose the things.")
            + tsv("", "entailment", "entailment"),
            tsv("2", "134793", "134793e", "fiction", *parses)
            + tsv("", "One of us will do it.", "Nobody will do it.")
            + tsv("", "contradiction", "contradiction"),
        ],
    )
    dev_header = tsv(*header, "label1", "label2", "label3", "label4", "label5", "gold_label")
    five = ("neutral",) * 5
    write_lines(
        glue / "MNLI/dev_matched.tsv",
        [dev_header, tsv("0", "1", "1n", "slate", *parses, "Rights.", "Nice.", *five, "neutral")],
    )
    write_lines(
        glue / "MNLI/dev_mismatched.tsv",
        [
            dev_header,
            tsv("0", "2", "2e", "letters", *parses, "A gift.", "A present.", *five, "entailment"),
            tsv("1", "3", "3c", "letters", *parses, "A gift.", "No gift.", *five, "contradiction"),
        ],
    )
    return glue


@pytest.fixture(scope="module")
def glue(tmp_path_factory) -> Path:
    return write_glue(tmp_path_factory.mktemp("glue"))


def test_cola_has_no_header_and_its_labels_become_names(glue):
    task = load_task("cola", spec(source="glue", path=str(glue / "CoLA"), config="CoLA"))
    assert task.labels == ("unacceptable", "acceptable") and task.metric == "matthews"
    assert [e.label for e in task.train] == ["acceptable", "unacceptable", "acceptable"]
    assert task.train[2].texts == ('"Quotes" are text, not CSV quoting.',)
    assert task.test_is_dev and task.test == task.dev


def test_sst2_reads_its_header(glue):
    task = load_task("sst2", spec(source="glue", path=str(glue / "SST-2"), config="SST-2"))
    assert task.train[1].texts == ("a gorgeous film ",) and task.train[1].label == "positive"


def test_mrpc_reads_the_msr_paraphrase_columns_with_quotes_as_text_and_a_bom(glue):
    task = load_task("mrpc", spec(source="glue", path=str(glue / "MRPC"), config="mrpc"))
    assert task.labels == ("not_equivalent", "equivalent") and task.metric == "f1"
    assert task.positive_label == "equivalent"
    first, second = task.train
    assert first.label == "equivalent" and first.texts[0].startswith("Amrozi accused")
    assert second.texts[0].startswith('" Yucaipa') and second.texts[1].startswith("Yucaipa bought")
    assert second.label == "not_equivalent"


def test_stsb_is_regression_with_float_scores_and_dev_as_test(glue):
    task = load_task("stsb", spec(source="glue", path=str(glue / "STS-B"), config="STS-B"))
    assert task.kind == "regression" and task.labels == () and task.metric == "pearson"
    assert [e.label for e in task.train] == [5.0, 0.6]
    assert task.train[0].texts == ("A plane is taking off.", "An air plane is taking off.")
    assert task.test_is_dev and task.describe()["sources"]["test"].endswith("STS-B/dev.tsv")


def test_mnli_dev_is_matched_plus_mismatched_and_labels_come_from_gold_label(glue):
    task = load_task("mnli", spec(source="glue", path=str(glue / "MNLI"), config="MNLI"))
    assert task.labels == ("entailment", "neutral", "contradiction")
    assert [e.label for e in task.train] == ["neutral", "entailment", "contradiction"]
    assert [(e.subset, e.label) for e in task.dev] == [
        ("matched", "neutral"),
        ("mismatched", "entailment"),
        ("mismatched", "contradiction"),
    ]
    assert task.test == task.dev


def test_a_glue_row_missing_a_column_names_file_and_line(tmp_path, glue):
    broken = tmp_path / "STS-B"
    broken.mkdir()
    for name in ("train.tsv", "dev.tsv"):
        (broken / name).write_text((glue / "STS-B" / name).read_text())
    with open(broken / "dev.tsv", "a") as handle:
        handle.write("2\tmain-captions\tMSRvid\t2012test\t0005\tnone\tnone\tA cat.\n")
    with pytest.raises(BertforgeError, match=r"STS-B/dev.tsv: line 4: missing column 'sentence2'$"):
        load_task("stsb", spec(source="glue", path=str(broken), config="stsb"))


def test_a_missing_glue_file_is_named():
    with pytest.raises(BertforgeError, match=r"^glue_data/RTE/train.tsv: GLUE file not found$"):
        load_task("rte", spec(source="glue", path="glue_data/RTE", config="rte"))


# --- the hub ---------------------------------------------------------------------------------


def glue_mrpc_from_the_hub() -> datasets.DatasetDict:
    """What `load_dataset("nyu-mll/glue", "mrpc")` returns, in miniature: test labels are -1."""
    features = datasets.Features(
        {
            "sentence1": datasets.Value("string"),
            "sentence2": datasets.Value("string"),
            "label": datasets.ClassLabel(names=["not_equivalent", "equivalent"]),
            "idx": datasets.Value("int32"),
        }
    )

    def split(labels):
        rows = {
            "sentence1": [f"first {i}" for i in range(len(labels))],
            "sentence2": [f"second {i}" for i in range(len(labels))],
            "label": labels,
            "idx": list(range(len(labels))),
        }
        return datasets.Dataset.from_dict(rows, features=features)

    return datasets.DatasetDict(
        {"train": split([1, 0, 1]), "validation": split([0, 1]), "test": split([-1, -1])}
    )


def test_hub_glue_uses_class_label_names_and_dev_as_test_when_test_is_unlabelled(monkeypatch):
    calls = []

    def fake_load_dataset(path, name=None, **kwargs):
        calls.append((path, name))
        return glue_mrpc_from_the_hub()

    monkeypatch.setattr(datasets, "load_dataset", fake_load_dataset)
    task = load_task("mrpc", spec(source="hub", path="nyu-mll/glue", config="mrpc"))
    assert calls == [("nyu-mll/glue", "mrpc")]
    assert task.labels == ("not_equivalent", "equivalent") and task.metric == "f1"
    assert [e.label for e in task.train] == ["equivalent", "not_equivalent", "equivalent"]
    assert task.test_is_dev and task.test == task.dev
    assert task.train[0].source == "hub dataset 'nyu-mll/glue' (config 'mrpc') split 'train'"


def test_hub_loads_a_local_dataset_directory_with_its_own_columns(tmp_path, monkeypatch):
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "cache")
    rows = [{"text": "good film", "stars": "5"}, {"text": "bad film", "stars": "1"}]
    for split in ("train", "validation", "test"):
        write_jsonl(tmp_path / "reviews" / f"{split}.jsonl", rows)
    reviews = spec(
        source="hub",
        path=str(tmp_path / "reviews"),
        kind="classification",
        text_columns=["text"],
        label_column="stars",
        metric="accuracy",
    )
    task = load_task("reviews", reviews)
    assert task.labels == ("1", "5") and not task.test_is_dev
    assert task.dev[1].texts == ("bad film",) and task.dev[1].row == 1
