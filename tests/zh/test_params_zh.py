"""params-zh.yaml: only keys params.yaml has, and with params.yaml they make valid sections; the
`dvc exp run` command in its header sets exactly those keys, to exactly those values."""

from __future__ import annotations

import re
import shlex

import yaml
from dvc.utils.hydra import apply_overrides

from bertforge.examples.params import ExamplesParams
from bertforge.finetune.params import FinetuneParams
from bertforge.ingest.params import IngestParams
from bertforge.params import parse
from bertforge.vocab.params import VocabParams
from tests.support import REPO_ROOT

SECTIONS = {
    "ingest": IngestParams,
    "vocab": VocabParams,
    "examples": ExamplesParams,
    "finetune": FinetuneParams,
}


def load(name: str) -> dict:
    return yaml.safe_load((REPO_ROOT / name).read_text(encoding="utf-8"))


def test_params_zh_overrides_known_keys_into_valid_sections() -> None:
    base, chinese = load("params.yaml"), load("params-zh.yaml")
    assert set(chinese) <= set(SECTIONS)
    for section, overrides in chinese.items():
        assert set(overrides) <= set(base[section]), section
        parsed = parse(SECTIONS[section], base[section] | overrides, f"params-zh.yaml: {section}")
        assert all(getattr(parsed, key) is not None for key in overrides)
    assert chinese["examples"]["word_segmenter"] == "jieba"
    assert list(chinese["finetune"]["tasks"]) == ["quotesource"]


def documented_overrides() -> list[str]:
    """The -S values of the `dvc exp run` command in params-zh.yaml's header, as a shell reads
    them (the command's lines without their `#`, each ending backslash joining the next)."""
    header = (REPO_ROOT / "params-zh.yaml").read_text(encoding="utf-8").split("\n\n")[0]
    lines = [line.removeprefix("#") for line in header.splitlines()]
    start = next(i for i, line in enumerate(lines) if "dvc exp run" in line)
    end = next(i for i in range(start, len(lines)) if lines[i].startswith(" or "))
    words = shlex.split(re.sub(r"\\\n", " ", "\n".join(lines[start:end])))
    return [words[i + 1] for i, word in enumerate(words) if word == "-S"]


def test_the_documented_experiment_sets_every_key_of_params_zh() -> None:
    set_keys = {re.split(r"[=]", value)[0].lstrip("~+") for value in documented_overrides()}
    chinese = load("params-zh.yaml")
    assert set_keys == {f"{section}.{key}" for section in chinese for key in chinese[section]}


def test_the_documented_overrides_give_params_yaml_with_params_zh_over_it(tmp_path) -> None:
    params = tmp_path / "params.yaml"
    params.write_text((REPO_ROOT / "params.yaml").read_text(encoding="utf-8"), encoding="utf-8")
    apply_overrides(params, documented_overrides())  # what `dvc exp run -S` does to params.yaml
    expected = load("params.yaml")
    for section, overrides in load("params-zh.yaml").items():
        expected[section] = expected[section] | overrides  # the English tasks replaced
    assert yaml.safe_load(params.read_text(encoding="utf-8")) == expected
