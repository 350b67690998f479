"""The evaluation table and report: the average per seed, then over seeds; missing seeds refused."""

from __future__ import annotations

import json

import pytest

from bertforge.errors import BertforgeError
from bertforge.evaluate import EvaluateParams, collect_results, evaluate_results, render_report
from bertforge.params import load_params
from tests.evaluate.fakes import fake_results
from tests.support import REPO_ROOT


def test_the_average_is_taken_per_seed_over_tasks_then_over_seeds():
    results = fake_results(
        {
            "a": {"pretrained": [0.8, 0.9, 1.0], "scratch": [0.5, 0.5, 0.5]},
            "glue": {"pretrained": [0.6, 0.5, 0.4], "scratch": [0.3, 0.4, 0.5]},
        }
    )
    evaluation = evaluate_results(results, ["pretrained", "scratch"], [0, 1, 2], "test")
    average = evaluation["average"]["test"]
    assert average["pretrained"] == pytest.approx({"mean": 0.7, "std": 0.0})
    assert average["scratch"]["mean"] == pytest.approx(0.45)
    assert average["delta"] == pytest.approx(0.25)
    report = render_report(evaluation)
    assert "| glue † | accuracy |" in report
    assert "Headline split: **test**" in report
    assert "more than the seed-to-seed standard deviation" in report


def test_evaluation_refuses_a_task_whose_seeds_differ_from_params(tmp_path):
    task_dir = tmp_path / "a"
    (task_dir / "pretrained" / "seed-0").mkdir(parents=True)
    (task_dir / "task.json").write_text(json.dumps({"name": "a", "metric": "accuracy"}))
    (task_dir / "pretrained" / "seed-0" / "metrics.json").write_text(
        json.dumps({"init": "pretrained", "seed": 0, "dev": {}, "test": {}})
    )
    with pytest.raises(
        BertforgeError, match=r"has seeds \[0\], params.yaml finetune.seeds is \[0, 1\]"
    ):
        collect_results(tmp_path, ["a"], ["pretrained"], [0, 1])
    with pytest.raises(BertforgeError, match=r"b/task.json: not found; run finetune@b first"):
        collect_results(tmp_path, ["b"], ["pretrained"], [0])


def test_the_default_headline_split_is_the_one_in_params_yaml():
    section = load_params(REPO_ROOT / "params.yaml")["evaluate"]
    assert section["headline_split"] == EvaluateParams().headline_split
