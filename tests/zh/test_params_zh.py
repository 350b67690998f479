"""params-zh.yaml: only keys params.yaml has, and with params.yaml they make valid sections; the
`dvc exp run` command in its header sets exactly those keys."""

from __future__ import annotations

import re

import yaml

from bertforge.examples.params import ExamplesParams
from bertforge.ingest.params import IngestParams
from bertforge.params import parse
from bertforge.vocab.params import VocabParams
from tests.support import REPO_ROOT

SECTIONS = {"ingest": IngestParams, "vocab": VocabParams, "examples": ExamplesParams}


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


def test_the_documented_experiment_sets_every_key_of_params_zh() -> None:
    header = (REPO_ROOT / "params-zh.yaml").read_text(encoding="utf-8").split("\n\n")[0]
    set_keys = set(re.findall(r"-S '?([a-z_]+\.[a-z_]+)=", header))
    chinese = load("params-zh.yaml")
    assert set_keys == {f"{section}.{key}" for section in chinese for key in chinese[section]}
