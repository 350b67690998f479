"""The Chinese fine-tuning task (data/raw/tasks-zh/quotesource), built by
scripts/build_chinese_data.py from the quotations fortunes-zh attributes to a book: the rules
that make its examples, a byte-identical rebuild, and the committed files keeping their card."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
import yaml

from bertforge.constants import TASK_SPLITS
from bertforge.errors import BertforgeError
from tests.support import REPO_ROOT

spec = importlib.util.spec_from_file_location(
    "build_chinese_data", REPO_ROOT / "scripts" / "build_chinese_data.py"
)
builder = importlib.util.module_from_spec(spec)
spec.loader.exec_module(builder)

TASK_DIR = REPO_ROOT / "data/raw/tasks-zh" / builder.TASK
ATTRIBUTION = "\x1b[33m    --\x1b[32m《{}》\x1b[m{}\x1b[m"


def fortune(text: str, title: str, chapter: str = "") -> str:
    return f"{text}\n{ATTRIBUTION.format(title, chapter)}\n"


def write_fortunes(path: Path, fortunes: list[str]) -> Path:
    path.write_text("%\n".join(fortunes), encoding="utf-8")
    return path


def test_a_quotation_is_its_lines_joined_and_labelled_by_the_title_of_its_attribution() -> None:
    analects = "子曰：“学而时习之，\n         不亦说乎？”\n    -- 学而第一\n" + ATTRIBUTION.format(
        "论语", "学而"
    )
    # the chapter after the title is ignored; the indented continuation line joins without space
    assert builder.attributed_quotation(analects) == ("论语", "子曰：“学而时习之，不亦说乎？”")
    assert builder.attributed_quotation("用 Debian\nLinux 系统。\n    --《谚语》") == (
        "谚语",
        "用 Debian Linux 系统。",
    )
    # an attribution to a person, or none, is no quotation of a book
    assert builder.attributed_quotation("狗咬穿烂的。\n    -- 鲁迅\n") is None
    assert builder.attributed_quotation("天下有道。\n") is None


def test_repeats_and_two_source_quotations_go_and_sources_under_the_minimum_are_dropped(
    tmp_path: Path,
) -> None:
    source = write_fortunes(
        tmp_path / "chinese",
        [
            fortune("天下有道，却走马以粪。", "道德经"),
            fortune("天下有道：却走马以粪！", "道德经"),  # a punctuation variant: a repeat
            fortune("知者不言，言者不知。", "道德经"),
            fortune("人无远虑，必有近忧。", "增广贤文"),
            fortune("人无远虑，必有近忧。", "谚语"),  # attributed to two sources: both go
            fortune("远亲不如近邻。", "谚语"),
            fortune("见强不怕，遇弱不欺。", "谚语"),
            fortune("王何必曰利？亦有仁义而已矣。", "孟子"),  # 1 quotation: under the minimum
            fortune("好。", "谚语"),  # too few ideographs
        ],
    )
    examples, dropped = builder.task_examples(source, min_class_size=2)
    assert examples == [
        ("daodejing", "天下有道，却走马以粪。"),
        ("daodejing", "知者不言，言者不知。"),
        ("proverb", "远亲不如近邻。"),
        ("proverb", "见强不怕，遇弱不欺。"),
    ]
    assert dropped["considered"] == 9 and dropped["too_little_chinese"] == 1
    assert dropped["repeats"] == 2 and dropped["attributed_to_two_sources"] == 1
    # 增广贤文 lost its only quotation to the conflict; 孟子 has one
    assert dropped["from_sources_under_min_class_size"] == 1 and dropped["source:孟子"] == 1
    # a source big enough to be a class needs a label name
    with pytest.raises(BertforgeError, match=r"chinese: no label name in LABELS .*孟子"):
        builder.task_examples(source, min_class_size=1)


def synthetic_package(directory: Path, per_source: int) -> Path:
    """A fortunes directory whose `chinese` holds `per_source` made-up quotations of each of
    the five sources (random ideographs), and one-poem tang300 and song100."""
    rng = np.random.default_rng(0)
    characters = [chr(code) for code in range(0x4E00, 0x4E00 + 400)]
    fortunes = [
        fortune("".join(rng.choice(characters, 12)) + "。", title)
        for _ in range(per_source)
        for title in builder.LABELS
    ]
    directory.mkdir()
    write_fortunes(directory / "chinese", fortunes)
    (directory / "tang300").write_text("床前明月光，疑是地上霜。\n举头望明月，低头思故乡。\n")
    (directory / "song100").write_text("锦字梭停掩夜机，白头吟若怨新知。\n")
    return directory


def read_rows(task_dir: Path, split: str) -> list[dict[str, str]]:
    text = (task_dir / f"{split}.jsonl").read_text(encoding="utf-8")
    return [json.loads(line) for line in text.splitlines()]


def test_a_rebuild_is_byte_identical_and_splits_by_the_quotation(tmp_path: Path) -> None:
    package = synthetic_package(tmp_path / "fortunes", per_source=40)
    outputs = []
    for name in ("first", "second"):
        corpus, tasks = tmp_path / name / "corpus-zh", tmp_path / name / "tasks-zh"
        builder.build(package, corpus, builder.held_out_keys(package, min_class_size=40))
        builder.build_task(package, corpus, tasks, min_class_size=40)
        outputs.append(tmp_path / name / "tasks-zh" / builder.TASK)
    files = sorted(path.name for path in outputs[0].iterdir())
    assert files == ["card.json", "card.md", "dev.jsonl", "test.jsonl", "train.jsonl"]
    for name in files:
        assert (outputs[0] / name).read_bytes() == (outputs[1] / name).read_bytes(), name
    for split in TASK_SPLITS:
        for row in read_rows(outputs[0], split):
            assert builder.split_of(builder.quotation_key(row["sentence"])) == split
    card = json.loads((outputs[0] / "card.json").read_text(encoding="utf-8"))
    assert sum(card["split_sizes"].values()) == 200
    # every made-up quotation has 12 ideographs: the training ones are corpus documents too,
    # the dev and test ones are not
    sizes = card["split_sizes"]
    assert card["texts_in_pretraining_corpus"]["whole_text"] == sizes | {"dev": 0, "test": 0}


def test_a_corpus_holding_a_dev_or_test_quotation_is_refused(tmp_path: Path) -> None:
    package = synthetic_package(tmp_path / "fortunes", per_source=40)
    corpus, tasks = tmp_path / "corpus-zh", tmp_path / "tasks-zh"
    builder.build(package, corpus)  # without the held-out keys: every quotation is in it
    with pytest.raises(BertforgeError, match=r"corpus-zh: holds dev/test quotations of quotes"):
        builder.build_task(package, corpus, tasks, min_class_size=40)
    assert not (tasks / builder.TASK / "card.json").exists()


def test_a_task_without_a_class_or_with_a_split_missing_one_is_refused(tmp_path: Path) -> None:
    package = synthetic_package(tmp_path / "fortunes", per_source=2)
    corpus, tasks = tmp_path / "corpus-zh", tmp_path / "tasks-zh"
    builder.build(package, corpus)
    with pytest.raises(BertforgeError, match=f"task {builder.TASK}: no quotation of a source"):
        builder.build_task(package, corpus, tasks)  # 2 quotations a source: under 50
    with pytest.raises(BertforgeError, match=f"task {builder.TASK}: .* has no example of"):
        builder.build_task(package, corpus, tasks, min_class_size=1)


@pytest.fixture(scope="module")
def committed() -> dict[str, list[dict[str, str]]]:
    return {split: read_rows(TASK_DIR, split) for split in TASK_SPLITS}


def test_the_committed_task_has_five_sources_a_thousand_training_quotations_and_no_leak(
    committed: dict[str, list[dict[str, str]]],
) -> None:
    card = json.loads((TASK_DIR / "card.json").read_text(encoding="utf-8"))
    assert card["labels"] == sorted(builder.LABELS.values())
    assert len(committed["train"]) >= 1000 and min(map(len, committed.values())) >= 250
    seen: dict[str, str] = {}
    for split, rows in committed.items():
        assert card["split_sizes"][split] == len(rows)
        assert card["label_statistics"][split] == {
            label: sum(row["label"] == label for row in rows) for label in card["labels"]
        }
        for row in rows:
            assert set(row) == {"sentence", "label"} and "\n" not in row["sentence"]
            # no quotation (punctuation aside) in two splits, nor twice in one
            assert seen.setdefault(builder.quotation_key(row["sentence"]), split) == split
        assert len({builder.quotation_key(row["sentence"]) for row in rows}) == len(rows)


def test_no_dev_or_test_quotation_is_in_the_committed_corpus_and_the_card_says_so(
    committed: dict[str, list[dict[str, str]]],
) -> None:
    card = json.loads((TASK_DIR / "card.json").read_text(encoding="utf-8"))
    corpus = builder.corpus_keys(REPO_ROOT / "data/raw/corpus-zh")
    overlap = builder.pretraining_overlap(committed, corpus)
    assert card["texts_in_pretraining_corpus"] == overlap
    # no dev/test text whole nor 10 characters of one in a row; training texts may be there
    for counts in overlap.values():
        assert counts["dev"] == counts["test"] == 0, overlap
    assert overlap["whole_text"]["train"] > 0
    test_inside = overlap["whole_text"]["test"]
    card_md = (TASK_DIR / "card.md").read_text(encoding="utf-8")
    assert f"| test | {len(committed['test'])} | {test_inside} |" in card_md
    readme = (REPO_ROOT / "data/raw/README.md").read_text(encoding="utf-8")
    assert f"{test_inside} of {len(committed['test'])}" in readme


def test_params_zh_fine_tunes_on_the_committed_task() -> None:
    tasks = yaml.safe_load((REPO_ROOT / "params-zh.yaml").read_text())["finetune"]["tasks"]
    assert REPO_ROOT / tasks[builder.TASK]["path"] == TASK_DIR
