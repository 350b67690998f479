"""benchmarks/bench_pretrain_ops.py measures the pretrain stage variant against variant: each
comparison must change only its own knob, to a value the stage accepts, and each run must be the
default pipeline's pretraining on the repository's real examples."""

from __future__ import annotations

import argparse

import pytest
import yaml

from bertforge.params import parse
from bertforge.pretrain.params import PretrainParams
from tests.support import REPO_ROOT, benchmark_module


@pytest.fixture(scope="module")
def bench():
    return benchmark_module("bench_pretrain_ops")


def _pretrain_section() -> dict:
    return yaml.safe_load((REPO_ROOT / "params.yaml").read_text(encoding="utf-8"))["pretrain"]


@pytest.mark.parametrize("flag", ["unpad", "loss_normalisation", "compile", "precision"])
def test_each_comparison_changes_only_its_knob_to_values_the_stage_accepts(bench, flag):
    _, variants = bench.COMPARISONS[flag]
    first, second = variants.values()
    assert first.keys() == second.keys() and len(first) == 1
    (knob,) = first
    assert first[knob] != second[knob]
    for overrides in variants.values():
        parsed = parse(PretrainParams, _pretrain_section() | overrides, "params.yaml: pretrain")
        assert getattr(parsed, knob) == overrides[knob]


def test_a_run_is_the_default_pretraining_for_the_steps_on_the_real_examples(bench, tmp_path):
    shape = argparse.Namespace(hidden_size=256, layers=2, heads=4)
    model = bench.model_shape(shape, _pretrain_section()["model"])
    assert (model["hidden_size"], model["num_hidden_layers"]) == (256, 2)
    assert model["intermediate_size"] == 1024  # feed-forward 4x hidden, as BERT's shapes
    default = argparse.Namespace(hidden_size=None, layers=2, heads=4)
    assert bench.model_shape(default, _pretrain_section()["model"]) == _pretrain_section()["model"]

    project = bench.default_pipeline_project(tmp_path, 40, {"model": model, "unpad": True})
    pretrain = yaml.safe_load((project / "params.yaml").read_text(encoding="utf-8"))["pretrain"]
    expected = _pretrain_section() | {"model": model, "unpad": True}
    expected |= {"max_steps": 40, "checkpoint_every": 40, "log_every": 4}
    assert pretrain == expected
    for name in ("examples", "tokenizer"):
        assert (project / "data" / name).resolve() == REPO_ROOT / "data" / name
