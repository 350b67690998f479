"""Registry library and the register stage: candidates, lineage tags, the promotion gate.

Also home of the fixtures test_cli.py and test_serving.py share: a pre-initialised empty MLflow
store copied per test (`fresh_store`); the pipeline's outputs in a tiny git project
(`build_project`: the pretrain export, fine-tuned seeds and the metrics files, written with the
finetune module's own summary functions so that their layout is the real one); and quick
registry versions that carry only tags (`add_version`).
"""

from __future__ import annotations

import contextlib
import functools
import json
import runpy
import shutil
import subprocess
from pathlib import Path

import mlflow
import pandas as pd
import pytest
import torch
import yaml
from tests.support import REPO_ROOT
from tests.test_finetune import make_tiny_export, write_embedded_tasks

from bertforge.errors import BertforgeError
from bertforge.finetune import collect_results, evaluate_results, summarize_seeds
from bertforge.io import hash_path
from bertforge.model import BertConfig, BertForSequenceClassification, save_pretrained
from bertforge.params import parse
from bertforge.registry import (
    EvalSummary,
    MetricStat,
    ModelRef,
    RegisterParams,
    Registry,
    best_seed,
    gate,
    parse_model_uri,
    source_data_hashes,
)
from bertforge.tasks import TaskSpec, load_task
from bertforge.tracking import TAG_PREFIX, set_experiment

PRETRAIN_RUN_ID = "0123456789abcdef0123456789abcdef"
TOKENIZER_FILES = (
    "vocab.txt",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
)
SEEDS = (0, 1)
INITS = ("pretrained", "scratch")


# --- fixtures shared with test_cli.py and test_serving.py ------------------------------------


@functools.cache
def empty_store(base_temp: Path) -> Path:
    """An MLflow sqlite store with its tables created, once per test session (migrations
    take seconds); tests copy it."""
    directory = base_temp / "mlflow-template"
    directory.mkdir()
    path = directory / "mlflow.db"
    with contextlib.chdir(directory):
        mlflow.MlflowClient(tracking_uri=f"sqlite:///{path}").search_experiments()
    return path


def fresh_store(
    tmp_path_factory: pytest.TempPathFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> str:
    """A copy of the empty store for this test alone, set as MLFLOW_TRACKING_URI."""
    path = tmp_path / "store" / "mlflow.db"
    path.parent.mkdir()
    shutil.copy(empty_store(tmp_path_factory.getbasetemp()), path)
    uri = f"sqlite:///{path}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.delenv("MLFLOW_REGISTRY_URI", raising=False)
    mlflow.set_tracking_uri(uri)
    return uri


@pytest.fixture
def store(tmp_path_factory, tmp_path, monkeypatch) -> str:
    return fresh_store(tmp_path_factory, tmp_path, monkeypatch)


def seed_metrics(kind: str, quality: float) -> dict[str, float]:
    """Plausible metrics of one seed, all rising with `quality`."""
    if kind == "regression":
        return {
            "pearson": quality,
            "spearman": quality - 0.01,
            "mse": 1 - quality,
            "score": quality,
        }
    return {"accuracy": quality, "matthews": 2 * quality - 1, "f1": quality, "score": quality}


def build_project(root: Path, qualities: dict[str, dict[int, float]] | None = None) -> Path:
    """The inputs of the register stage, as the pipeline lays them out, in a git repo.

    `qualities[task][seed]` sets each init=pretrained seed's metrics (scratch is 0.5); by default
    seed 1 is the best on dev for every task.
    """
    root.mkdir(parents=True, exist_ok=True)
    (root / ".dvc").mkdir(exist_ok=True)
    export = make_tiny_export(root / "data/pretrained/model", hidden=16, layers=1)
    (export / "lineage.json").write_text(json.dumps({"mlflow_run_id": PRETRAIN_RUN_ID}))
    specs = write_embedded_tasks(root, sizes=(8, 4, 4))
    config = BertConfig.from_hf_dict(json.loads((export / "config.json").read_text()))
    for name, spec in specs.items():
        with contextlib.chdir(root):
            task = load_task(name, parse(TaskSpec, spec, name))
        task_dir = root / "data/finetuned" / name
        task_dir.mkdir(parents=True)
        (task_dir / "task.json").write_text(json.dumps(task.describe()))
        num_labels = 1 if task.kind == "regression" else len(task.labels)
        for init in INITS:
            for seed in SEEDS:
                seed_dir = task_dir / init / f"seed-{seed}"
                torch.manual_seed(seed)
                model = BertForSequenceClassification(config, num_labels, task.labels or None)
                save_pretrained(model, seed_dir / "model")
                for file in TOKENIZER_FILES:
                    shutil.copy(export / file, seed_dir / "model" / file)
                quality = (
                    0.5
                    if init == "scratch"
                    else (qualities or {}).get(name, {}).get(seed, 0.7 + 0.1 * seed)
                )
                metrics = seed_metrics(task.kind, quality)
                (seed_dir / "metrics.json").write_text(
                    json.dumps(
                        {"init": init, "seed": seed, "best_epoch": 1, "history": []}
                        | {"dev": metrics, "test": metrics}
                    )
                )
    results = collect_results(root / "data/finetuned", list(specs), list(INITS), list(SEEDS))
    (root / "metrics/finetune").mkdir(parents=True)
    for name, (info, metrics) in results.items():
        summary = summarize_seeds(info, metrics)
        (root / f"metrics/finetune/{name}.json").write_text(json.dumps(summary))
    evaluation = evaluate_results(results, list(INITS), list(SEEDS), "test")
    (root / "metrics/eval.json").write_text(json.dumps(evaluation))
    params = {
        "finetune": {"tasks": specs, "seeds": list(SEEDS), "max_seq_length": 32},
        "evaluate": {"headline_split": "test"},
        "register": {"encoder_model_name": "tiny-encoder", "task_model_name": "tiny-{task}"},
    }
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    (root / ".gitignore").write_text("/data/pretrained\n/data/finetuned\n/mlartifacts\n")
    git = ["git", "-c", "user.name=test", "-c", "user.email=test@example.com"]
    subprocess.run([*git, "init", "-q"], cwd=root, check=True)
    subprocess.run([*git, "add", "-A"], cwd=root, check=True)
    subprocess.run([*git, "commit", "-q", "-m", "fixture"], cwd=root, check=True)
    return root


def run_register_stage(project: Path) -> int:
    """Run stages/register.py in-process in `project`; its exit code."""
    with contextlib.chdir(project):
        try:
            runpy.run_path(str(REPO_ROOT / "stages/register.py"), run_name="__main__")
        except SystemExit as exit_:
            return int(exit_.code or 0)
    return 0


def summary(mean: float, std: float = 0.01, metric: str = "accuracy") -> EvalSummary:
    return EvalSummary(metric, {metric: MetricStat(mean, std), "f1": MetricStat(mean, std)}, 3)


def add_version(name: str, summary_: EvalSummary | None, tags: dict | None = None) -> str:
    """A registered version with tags only (no model files): for promotion and CLI tests."""
    client = mlflow.MlflowClient()
    with contextlib.suppress(mlflow.exceptions.MlflowException):
        client.create_registered_model(name)
    all_tags = (summary_.to_tags() if summary_ else {}) | (tags or {})
    return client.create_model_version(name, "file:///nonexistent", tags=all_tags).version


# --- the register stage ----------------------------------------------------------------------


def finetune_child_run(project: Path, task: str, seed: int) -> str:
    """A run shaped like finetune's child run of one (task, init=pretrained, seed)."""
    with contextlib.chdir(project):
        set_experiment()
        tags = {f"{TAG_PREFIX}task": task, f"{TAG_PREFIX}init": "pretrained"}
        tags[f"{TAG_PREFIX}pretrain_run_id"] = PRETRAIN_RUN_ID
        with mlflow.start_run(run_name=f"{task}-pretrained-seed{seed}", tags=tags) as run:
            mlflow.log_params({"init": "pretrained", "seed": seed})
    return run.info.run_id


def test_register_stage_registers_encoder_and_each_tasks_best_seed_with_lineage(store, tmp_path):
    project = build_project(tmp_path / "project")
    finetune_child_run(project, "sentiment", 0)
    best_seed_run = finetune_child_run(project, "sentiment", 1)
    assert run_register_stage(project) == 0

    registry = json.loads((project / "metrics/registry.json").read_text())
    assert registry["models"] == {
        "tiny-encoder": {"version": 1, "uri": "models:/tiny-encoder/1", "kind": "fill-mask"},
        "tiny-sentiment": {
            "version": 1,
            "uri": "models:/tiny-sentiment/1",
            "kind": "classification",
        },
        "tiny-similar": {"version": 1, "uri": "models:/tiny-similar/1", "kind": "regression"},
    }
    client = mlflow.MlflowClient()
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
    assert tags[f"{TAG_PREFIX}pretrain_run_id"] == PRETRAIN_RUN_ID
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


def test_register_stage_with_missing_eval_metrics_fails_in_one_line_and_registers_nothing(
    store, tmp_path, capsys
):
    project = build_project(tmp_path / "project")
    (project / "metrics/eval.json").unlink()
    assert run_register_stage(project) == 2
    error = capsys.readouterr().err.strip().splitlines()
    assert error == ["error: metrics/eval.json: not found; run the evaluate stage first"]
    assert mlflow.MlflowClient().search_registered_models() == []
    assert not (project / "metrics/registry.json").exists()


def test_register_stage_with_a_missing_model_file_registers_nothing(store, tmp_path, capsys):
    project = build_project(tmp_path / "project")
    (project / "data/finetuned/similar/pretrained/seed-1/model/tokenizer.json").unlink()
    assert run_register_stage(project) == 2
    assert "seed-1/model/tokenizer.json: not found" in capsys.readouterr().err
    assert mlflow.MlflowClient().search_registered_models() == []


def test_best_seed_is_the_pretrained_seed_with_the_highest_dev_score(tmp_path):
    project = build_project(tmp_path / "project", {"sentiment": {0: 0.9, 1: 0.6}})
    assert best_seed(project / "data/finetuned/sentiment")["seed"] == 0
    assert best_seed(project / "data/finetuned/similar")["seed"] == 1


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


# --- eval metrics as tags, and the gate ------------------------------------------------------


def test_eval_summary_round_trips_through_version_tags():
    original = summary(0.8125, 0.0301)
    assert EvalSummary.from_tags(original.to_tags()) == original


def test_a_version_without_its_primary_metric_has_no_summary():
    tags = summary(0.8).to_tags()
    del tags[f"{TAG_PREFIX}metric.accuracy.mean"]
    assert EvalSummary.from_tags(tags) is None
    assert EvalSummary.from_tags({}) is None


def test_gate_passes_a_gain_beyond_margin_and_seed_spread():
    assert gate(summary(0.85, 0.01), summary(0.80, 0.02), margin=0.01) is None


def test_gate_refuses_a_gain_within_the_seed_spread():
    verdict = gate(summary(0.83, 0.01), summary(0.80, 0.04), margin=0.0)
    assert verdict and "within the seed spread" in verdict


def test_gate_refuses_a_gain_not_beyond_the_margin():
    verdict = gate(summary(0.83, 0.001), summary(0.80, 0.001), margin=0.05)
    assert verdict and "by more than the margin 0.05" in verdict


def test_gate_refuses_a_worse_candidate():
    assert gate(summary(0.70, 0.0), summary(0.80, 0.0), margin=0.0)


# --- addressing ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("uri", "expected"),
    [
        ("models:/bertforge-sst2@champion", ModelRef("bertforge-sst2", alias="champion")),
        ("models:/bertforge-sst2@3", ModelRef("bertforge-sst2", version="3")),
        ("models:/bertforge-sst2@v3", ModelRef("bertforge-sst2", version="3")),
        ("models:/bertforge-sst2/12", ModelRef("bertforge-sst2", version="12")),
        ("models:/bertforge-sst2/latest", ModelRef("bertforge-sst2")),
    ],
)
def test_models_uris_name_a_model_and_a_version_or_alias(uri, expected):
    assert parse_model_uri(uri) == expected


@pytest.mark.parametrize(
    "uri",
    [
        "bertforge-sst2@champion",
        "models:/",
        "models:/bertforge-sst2",
        "models:/@champion",
        "models:/bertforge-sst2@",
        "models:/a/b/c",
        "models:/bertforge-sst2@champ ion",
        "runs:/abc/model",
    ],
)
def test_malformed_models_uris_are_one_line_errors(uri):
    with pytest.raises(BertforgeError, match="models:/"):
        parse_model_uri(uri)


def test_unknown_model_version_and_alias_name_what_exists(store):
    add_version("known", summary(0.8))
    registry = Registry()
    with pytest.raises(BertforgeError, match=r"unknown model 'nope' \(registered: known\)"):
        registry.resolve(ModelRef("nope", alias="champion"))
    with pytest.raises(BertforgeError, match=r"'known' has no version 7 \(versions: 1\)"):
        registry.resolve(ModelRef("known", version="7"))
    with pytest.raises(
        BertforgeError, match=r"'known' has no alias 'champion' \(its aliases: none"
    ):
        registry.resolve(ModelRef("known", alias="champion"))


def test_register_params_name_each_task_model_and_check_the_template():
    params = RegisterParams()
    assert params.model_name("sst2") == "bertforge-sst2"
    with pytest.raises(BertforgeError, match=r"task_model_name must contain \{task\}"):
        parse(RegisterParams, {"task_model_name": "fixed"}, "params.yaml: register")
    with pytest.raises(BertforgeError, match="promotion_margin must be >= 0"):
        parse(RegisterParams, {"promotion_margin": -0.1}, "params.yaml: register")
