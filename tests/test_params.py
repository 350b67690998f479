from dataclasses import dataclass, field
from typing import Literal

import pytest
import yaml

from bertforge.errors import BertforgeError
from bertforge.params import flatten, load_section, parse, require


@dataclass(frozen=True)
class Source:
    path: str


@dataclass(frozen=True)
class Example:
    fraction: float
    size: int = 8
    mode: Literal["static", "dynamic"] = "static"
    tokens: list[str] = field(default_factory=lambda: ["[PAD]"])
    maybe: str | None = None
    sources: list[Source] = field(default_factory=list)

    def __post_init__(self) -> None:
        require(0 < self.fraction < 1, "fraction", "must be in (0, 1)", self.fraction)


def test_parse_fills_defaults_and_coerces_ints_to_floats():
    parsed = parse(Example, {"fraction": 0, "size": 3} | {"fraction": 0.5}, "params.yaml: ex")
    assert parsed.fraction == 0.5 and parsed.size == 3 and parsed.mode == "static"


def test_range_error_names_file_section_and_key():
    expected = r"^params.yaml: ex.fraction must be in \(0, 1\), got 1.5$"
    with pytest.raises(BertforgeError, match=expected):
        parse(Example, {"fraction": 1.5}, "params.yaml: ex")


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"fraction": "half"}, "ex.fraction must be a number, got 'half'"),
        ({"fraction": 0.5, "size": 2.5}, "ex.size must be an integer, got 2.5"),
        ({"fraction": 0.5, "size": True}, "ex.size must be an integer, got True"),
        ({"fraction": 0.5, "mode": "other"}, "ex.mode must be one of 'static', 'dynamic'"),
        ({"fraction": 0.5, "tokens": "[PAD]"}, "ex.tokens must be a list"),
        ({"fraction": 0.5, "sizes": 1}, "ex.sizes is not a known parameter"),
        ({}, "ex.fraction is required but missing"),
        ({"fraction": 0.5, "sources": [{"paht": "x"}]}, r"ex.sources\[0\].paht is not a known"),
    ],
)
def test_wrong_types_and_keys_are_one_line_errors(values, message):
    with pytest.raises(BertforgeError, match=message) as raised:
        parse(Example, values, "params.yaml: ex")
    assert "\n" not in str(raised.value)


def test_load_section_reports_missing_and_malformed_files(tmp_path):
    with pytest.raises(BertforgeError, match="params file not found"):
        load_section(Example, "ex", tmp_path / "params.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("ex: [unclosed\n")
    with pytest.raises(BertforgeError, match="not valid YAML"):
        load_section(Example, "ex", bad)


def test_flatten_gives_dotted_keys_for_nested_params():
    parsed = parse(Example, {"fraction": 0.5, "sources": [{"path": "a"}]}, "x")
    flat = flatten(parsed)
    assert flat["fraction"] == 0.5
    assert flat["sources.0.path"] == "a"
    assert flat["tokens"] == ["[PAD]"]


def test_a_missing_section_is_an_error_not_built_in_defaults(tmp_path):
    from bertforge.examples.params import ExamplesParams

    params = tmp_path / "params.yaml"
    params.write_text("ingest: {}\n")
    with pytest.raises(BertforgeError) as raised:
        load_section(ExamplesParams, "examples", params)
    assert str(raised.value) == f"{params}: section 'examples' is missing"


def test_a_misspelt_top_level_section_is_named_with_the_known_ones(tmp_path):
    from bertforge.examples.params import ExamplesParams

    params = tmp_path / "params.yaml"
    params.write_text("examples: {}\npretrian: {lr: 0.1}\n")
    with pytest.raises(BertforgeError) as raised:
        load_section(ExamplesParams, "examples", params)
    assert "unknown section 'pretrian'" in str(raised.value)
    assert "known: ingest, vocab, examples, pretrain" in str(raised.value)


@pytest.mark.parametrize("text", [".inf", "-.inf", ".nan"])
def test_inf_and_nan_are_refused_for_a_float_param_naming_it(text):
    with pytest.raises(BertforgeError) as raised:
        parse(Example, yaml.safe_load(f"fraction: {text}"), "params.yaml: ex")
    assert str(raised.value).startswith("params.yaml: ex.fraction must be a finite number, got ")


def test_the_repo_params_file_has_only_known_sections():
    from bertforge.params import KNOWN_SECTIONS, check_sections, load_params
    from tests.support import REPO_ROOT

    params = load_params(REPO_ROOT / "params.yaml")
    check_sections(params)
    assert set(params) == set(KNOWN_SECTIONS)


SECTIONS = {
    "ingest": "bertforge.ingest.params.IngestParams",
    "vocab": "bertforge.vocab.params.VocabParams",
    "examples": "bertforge.examples.params.ExamplesParams",
    "pretrain": "bertforge.pretrain.params.PretrainParams",
    "finetune": "bertforge.finetune.params.FinetuneParams",
    "evaluate": "bertforge.evaluate.results.EvaluateParams",
    "register": "bertforge.registry.params.RegisterParams",
}


@pytest.mark.parametrize("section", sorted(SECTIONS))
def test_a_params_dataclass_default_equals_the_value_in_params_yaml(section):
    """One policy for defaults: where a field has one, it is params.yaml's value (issue #14)."""
    import dataclasses
    import importlib

    from tests.support import REPO_ROOT

    module, _, name = SECTIONS[section].rpartition(".")
    cls = getattr(importlib.import_module(module), name)
    values = load_section(cls, section, REPO_ROOT / "params.yaml")
    for knob in dataclasses.fields(cls):
        if knob.default is not dataclasses.MISSING:
            default = knob.default
        elif knob.default_factory is not dataclasses.MISSING:
            default = knob.default_factory()
        else:
            continue
        parsed = getattr(values, knob.name)
        if dataclasses.is_dataclass(parsed) or isinstance(parsed, dict):
            continue  # nested sections are checked through their own fields
        assert parsed == default, (
            f"{section}.{field.name}: default {default!r}, params.yaml {parsed!r}"
        )
