"""The register stage: the encoder and each task's best seed registered with lineage and metrics;
bad inputs register nothing."""

from __future__ import annotations

import contextlib
import json
import subprocess
import time
from pathlib import Path

import mlflow
import pandas as pd
import pytest
import yaml

from bertforge.finetune.pretrained import pretrain_run_id
from bertforge.io import hash_path
from bertforge.registry.register import source_data_hashes
from bertforge.registry.summary import EvalSummary, MetricStat
from bertforge.tracking import TAG_PREFIX, set_experiment
from tests.factories import (
    REGISTRY_LEARNING_RATE,
    add_version,
    build_register_project,
    run_register_stage,
)


def finetune_child_run(
    project: Path, task: str, seed: int, learning_rate: float = REGISTRY_LEARNING_RATE
) -> str:
    """A run shaped like finetune's child run of one (task, init=pretrained, seed, rate)."""
    with contextlib.chdir(project):
        set_experiment()
        tags = {f"{TAG_PREFIX}task": task, f"{TAG_PREFIX}init": "pretrained"}
        tags[f"{TAG_PREFIX}pretrain_run_id"] = pretrain_run_id(project / "data/pretrained/model")
        with mlflow.start_run(run_name=f"{task}-pretrained-seed{seed}", tags=tags) as run:
            mlflow.log_params({"init": "pretrained", "seed": seed, "learning_rate": learning_rate})
    return run.info.run_id


def test_the_finetune_run_named_is_the_best_seeds_run_at_the_rate_it_kept(store, tmp_path):
    """A search over learning rates logs a child run per (rate, seed): the lineage names the
    run of the rate the seed's files were kept from, not the newest run of that seed."""
    project = build_register_project(tmp_path / "project")
    kept = finetune_child_run(project, "sentiment", 1)
    time.sleep(0.05)  # the run of the other rate is the newer one
    finetune_child_run(project, "sentiment", 1, learning_rate=REGISTRY_LEARNING_RATE / 10)
    assert run_register_stage(project) == 0
    tags = mlflow.MlflowClient().get_model_version("tiny-sentiment", "1").tags
    assert tags[f"{TAG_PREFIX}finetune_run_id"] == kept


def test_register_stage_registers_encoder_and_each_tasks_best_seed_with_lineage(store, tmp_path):
    project = build_register_project(tmp_path / "project")
    finetune_child_run(project, "sentiment", 0)
    best_seed_run = finetune_child_run(project, "sentiment", 1)
    assert run_register_stage(project) == 0

    registry = json.loads((project / "metrics/registry.json").read_text())
    assert {name: entry["kind"] for name, entry in registry["models"].items()} == {
        "tiny-encoder": "fill-mask",
        "tiny-sentiment": "classification",
        "tiny-similar": "regression",
    }
    client = mlflow.MlflowClient()
    for name, entry in registry["models"].items():  # content, not the store's version numbers
        tags = client.get_model_version(name, "1").tags
        assert entry["model_sha256"] == tags[f"{TAG_PREFIX}input.model"]
    version = client.get_model_version("tiny-sentiment", "1")
    tags = version.tags
    commit = subprocess.run(
        ["git", "rev-parse", "HEAD"], cwd=project, capture_output=True, text=True, check=True
    ).stdout.strip()
    assert tags[f"{TAG_PREFIX}git_commit"] == commit
    assert tags[f"{TAG_PREFIX}git_dirty"] == "false"
    assert len(tags[f"{TAG_PREFIX}params_digest"]) == 16
    assert tags[f"{TAG_PREFIX}best_seed"] == "1"
    best_model = project / "data/finetuned/sentiment/pretrained/seed-1/model"
    assert tags[f"{TAG_PREFIX}input.model"] == hash_path(best_model)
    assert tags[f"{TAG_PREFIX}input.eval"] == hash_path(project / "metrics/eval.json")
    assert tags[f"{TAG_PREFIX}pretrain_run_id"] == pretrain_run_id(
        project / "data/pretrained/model"
    )
    assert tags[f"{TAG_PREFIX}finetune_run_id"] == best_seed_run
    assert tags[f"{TAG_PREFIX}register_run_id"] == version.run_id
    evaluation = json.loads((project / "metrics/eval.json").read_text())
    expected = evaluation["tasks"]["sentiment"]["test"]["pretrained"]
    stored = EvalSummary.from_tags(tags)
    assert stored.primary_metric == "accuracy" and stored.num_seeds == 2
    for name, stat in expected.items():
        assert stored.metrics[name] == MetricStat(stat["mean"], stat["std"])
    pipeline = client.get_run(tags[f"{TAG_PREFIX}pipeline_run_id"])
    assert pipeline.data.tags[f"{TAG_PREFIX}kind"] == "pipeline"
    assert pipeline.data.params["finetune.max_seq_length"] == "32"
    assert pipeline.data.metrics["register.tiny-sentiment.accuracy.mean"] == stored.primary.mean
    assert pipeline.data.metrics["register.tiny-sentiment.version"] == 1
    encoder = EvalSummary.from_tags(client.get_model_version("tiny-encoder", "1").tags)
    assert encoder.primary_metric == "average_score"
    assert encoder.primary.mean == pytest.approx(
        evaluation["average"]["test"]["pretrained"]["mean"]
    )

    similar = mlflow.pyfunc.load_model("models:/tiny-similar/1")
    assert [field.name for field in similar.metadata.get_input_schema().inputs] == [
        "text",
        "text_pair",
    ]
    answer = similar.predict(pd.DataFrame({"text": ["cat dog"], "text_pair": ["dog bird"]}))
    assert list(answer.columns) == ["value"] and isinstance(answer["value"][0], float)


def test_an_identical_rerun_of_register_makes_no_duplicate_version(store, tmp_path):
    project = build_register_project(tmp_path / "project")
    assert run_register_stage(project) == 0
    first = (project / "metrics/registry.json").read_text()
    assert run_register_stage(project) == 0
    assert (project / "metrics/registry.json").read_text() == first
    client = mlflow.MlflowClient()
    for name in ("tiny-encoder", "tiny-sentiment", "tiny-similar"):
        assert [int(v.version) for v in client.search_model_versions(f"name = '{name}'")] == [1]


def test_registry_json_is_the_same_whatever_versions_the_store_already_holds(store, tmp_path):
    """metrics/registry.json is in git: version numbers, which count one store's versions (a
    fresh clone starts at 1, an experiment adds some), stay out of it."""
    project = build_register_project(tmp_path / "project")
    assert run_register_stage(project) == 0
    first = (project / "metrics/registry.json").read_text()
    names = ("tiny-encoder", "tiny-sentiment", "tiny-similar")
    for name in names:  # e.g. a `dvc exp run` variant registered since, with other weights
        add_version(name, None, {f"{TAG_PREFIX}input.model": "another model"})
    assert run_register_stage(project) == 0
    client = mlflow.MlflowClient()
    for name in names:  # registered again (the latest version was another model) ...
        assert max(int(v.version) for v in client.search_model_versions(f"name = '{name}'")) == 3
    assert (project / "metrics/registry.json").read_text() == first  # ... the file unchanged


def test_register_stage_with_missing_eval_metrics_fails_in_one_line_and_registers_nothing(
    store, tmp_path, capsys
):
    project = build_register_project(tmp_path / "project")
    (project / "metrics/eval.json").unlink()
    assert run_register_stage(project) == 2
    error = capsys.readouterr().err.strip().splitlines()
    assert error == ["error: metrics/eval.json: not found; run the evaluate stage first"]
    assert mlflow.MlflowClient().search_registered_models() == []
    assert not (project / "metrics/registry.json").exists()


def test_register_stage_with_a_missing_model_file_registers_nothing(store, tmp_path, capsys):
    project = build_register_project(tmp_path / "project")
    (project / "data/finetuned/similar/pretrained/seed-1/model/tokenizer.json").unlink()
    assert run_register_stage(project) == 2
    assert "seed-1/model/tokenizer.json: not found" in capsys.readouterr().err
    assert mlflow.MlflowClient().search_registered_models() == []


def test_source_data_hashes_are_the_dvc_lock_deps_no_stage_produces(tmp_path):
    lock = {
        "schema": "2.0",
        "stages": {
            "ingest": {
                "deps": [
                    {"path": "data/raw/corpus", "md5": "aaa.dir"},
                    {"path": "stages/ingest.py", "md5": "bbb"},
                ],
                "outs": [{"path": "data/ingested", "md5": "ccc.dir"}],
            },
            "vocab": {
                "deps": [{"path": "data/ingested", "md5": "ccc.dir"}],
                "outs": [{"path": "data/tokenizer", "md5": "ddd.dir"}],
            },
        },
    }
    (tmp_path / "dvc.lock").write_text(yaml.safe_dump(lock))
    assert source_data_hashes(tmp_path / "dvc.lock") == {"data/raw/corpus": "aaa.dir"}
    assert source_data_hashes(tmp_path / "missing.lock") == {}
