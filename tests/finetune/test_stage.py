"""finetune@<task> and evaluate end to end: the stage scripts on a tiny export and tiny tasks.

The pipeline runs once per module as subprocesses (`python stages/finetune.py <task>`, then
`python stages/evaluate.py`) in a temp project; the tests check its outputs, that transformers
loads a written model and predicts what we predicted, the MLflow run structure, and that bad
inputs stop the stage with one line and exit code 2, leaving the previous outputs intact.
"""

from __future__ import annotations

import json
import runpy
import shutil
import subprocess
import sys
from pathlib import Path

import mlflow
import pytest
import yaml

from bertforge.io import hash_path
from tests.factories import make_tiny_export, tag_pretrain_run, write_embedded_tasks, write_jsonl
from tests.support import REPO_ROOT, stage_env

TASKS = ("sentiment", "similar")


def run_script(project: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(REPO_ROOT / "stages" / args[0]), *args[1:]],
        cwd=project,
        env=stage_env(),
        capture_output=True,
        text=True,
        timeout=600,
    )


@pytest.fixture(scope="module")
def mlflow_store(tmp_path_factory) -> str:
    return f"sqlite:///{tmp_path_factory.mktemp('store') / 'mlflow.db'}"


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory, mlflow_store) -> Path:
    """A project with a tiny export and two tasks, after finetune@<each task> and evaluate."""
    project = tmp_path_factory.mktemp("project")
    (project / ".dvc").mkdir()
    model_dir = make_tiny_export(project / "data/pretrained/model")
    tag_pretrain_run(model_dir, mlflow_store)  # as the pretrain stage tags its run
    (project / "data/tokenizer").mkdir(parents=True)
    shutil.copy(model_dir / "vocab.txt", project / "data/tokenizer/vocab.txt")
    tasks = write_embedded_tasks(project, sizes=(48, 16, 16))
    params = {
        "finetune": {
            "tasks": tasks,
            "seeds": [0, 1],
            "epochs": 2,
            "batch_size": 16,
            "max_seq_length": 32,
            "learning_rate": 0.001,
            "threads": 1,
        },
        "evaluate": {"headline_split": "test"},
    }
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    env = {"MLFLOW_TRACKING_URI": mlflow_store}
    with pytest.MonkeyPatch.context() as patch:
        for key, value in env.items():
            patch.setenv(key, value)
        for args in [("finetune.py", "sentiment"), ("finetune.py", "similar"), ("evaluate.py",)]:
            result = run_script(project, *args)
            assert result.returncode == 0, result.stderr
    return project


def test_every_task_init_and_seed_gets_a_model_predictions_and_metrics(pipeline):
    for task in TASKS:
        task_dir = pipeline / "data/finetuned" / task
        assert json.loads((task_dir / "task.json").read_text())["name"] == task
        for init in ("pretrained", "scratch"):
            for seed in (0, 1):
                seed_dir = task_dir / init / f"seed-{seed}"
                names = {p.name for p in (seed_dir / "model").iterdir()}
                assert {"config.json", "model.safetensors", "vocab.txt", "tokenizer.json"} <= names
                assert (seed_dir / "predictions/dev.jsonl").is_file()
                assert (seed_dir / "predictions/test.jsonl").is_file()
                metrics = json.loads((seed_dir / "metrics.json").read_text())
                assert len(metrics["history"]) == 2 and metrics["best_epoch"] in (1, 2)
        summary = json.loads((pipeline / f"metrics/finetune/{task}.json").read_text())
        assert set(summary["pretrained"]["test"]["score"]) == {"mean", "std"}
        assert summary["scratch"]["seeds"] == [0, 1]
    assert not list((pipeline / "data/finetuned").glob(".*"))  # no staging left behind


def test_evaluate_writes_the_table_with_test_as_headline_and_the_average(pipeline):
    evaluation = json.loads((pipeline / "metrics/eval.json").read_text())
    assert set(evaluation["tasks"]) == set(TASKS)
    assert evaluation["tasks"]["similar"]["primary_metric"] == "pearson"
    stats = evaluation["tasks"]["sentiment"]["test"]["pretrained"]["accuracy"]
    assert 0 <= stats["mean"] <= 1 and stats["std"] >= 0
    average = evaluation["average"]["test"]
    assert average["delta"] == pytest.approx(
        average["pretrained"]["mean"] - average["scratch"]["mean"]
    )
    report = (pipeline / "reports/eval.md").read_text()
    assert "Headline split: **test**" in report
    assert "| sentiment | accuracy |" in report and "| **average** | score |" in report
    # the rate each init was fine-tuned at, in the evaluation and the report
    rates = {"pretrained": 0.001, "scratch": 0.001}
    assert all(evaluation["tasks"][task]["learning_rate"] == rates for task in TASKS)
    assert "## Fine-tuning learning rates" in report
    assert "- sentiment: pretrained 0.001, scratch 0.001" in report


def test_transformers_loads_a_written_model_and_predicts_what_we_predicted(pipeline):
    transformers = pytest.importorskip("transformers")
    import torch

    for task, init in (("sentiment", "pretrained"), ("similar", "scratch")):
        seed_dir = pipeline / "data/finetuned" / task / init / "seed-1"
        model = transformers.AutoModelForSequenceClassification.from_pretrained(seed_dir / "model")
        tokenizer = transformers.AutoTokenizer.from_pretrained(seed_dir / "model")
        model.eval()
        rows = [json.loads(line) for line in (pipeline / f"data/raw/tasks/{task}/dev.jsonl").open()]
        texts = (
            [[r["sentence"] for r in rows]]
            if "sentence" in rows[0]
            else [[r["sentence1"] for r in rows], [r["sentence2"] for r in rows]]
        )
        batch = tokenizer(*texts, padding=True, truncation=True, max_length=32, return_tensors="pt")
        with torch.no_grad():
            logits = model(**batch).logits
        ours = [json.loads(line) for line in (seed_dir / "predictions/dev.jsonl").open()]
        if task == "sentiment":
            assert model.config.id2label == {0: "neg", 1: "pos"}
            theirs = [model.config.id2label[int(i)] for i in logits.argmax(-1)]
            assert theirs == [row["prediction"] for row in ours]
        else:
            assert model.config.problem_type == "regression"
            expected = torch.tensor([row["prediction"] for row in ours])
            torch.testing.assert_close(logits[:, 0], expected, atol=1e-4, rtol=1e-4)


def test_mlflow_has_a_run_per_task_with_a_child_per_init_and_seed(pipeline, mlflow_store):
    client = mlflow.MlflowClient(mlflow_store)
    experiment = client.get_experiment_by_name("bertforge")
    runs = client.search_runs([experiment.experiment_id], max_results=1000)
    by_name = {run.info.run_name: run for run in runs}
    pretrain_run = by_name["pretrain"].info.run_id  # found from the export's weights
    for task in TASKS:
        parent = by_name[f"finetune-{task}"]
        assert parent.data.tags["bertforge.pretrain_run_id"] == pretrain_run
        children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
        assert sorted(r.info.run_name for r in children) == sorted(
            f"{task}-{init}-seed{seed}" for init in ("pretrained", "scratch") for seed in (0, 1)
        )
        for child in children:
            assert child.data.tags["bertforge.pretrain_run_id"] == pretrain_run
            history = client.get_metric_history(child.info.run_id, "dev_score")
            assert [m.step for m in history] == [1, 2]
            assert "test_score" in child.data.metrics
    assert by_name["evaluate"].data.tags["bertforge.stage"] == "evaluate"
    assert "average.test.pretrained.mean" in by_name["evaluate"].data.metrics


def test_a_task_with_its_own_epochs_and_list_of_rates_keeps_the_best_on_dev_run_per_rate(
    pipeline, tmp_path, mlflow_store, monkeypatch
):
    """A task's own `training` knobs (1 epoch instead of the section's 2) and a list of rates:
    every rate is trained, the best on dev kept, a child run logged per rate, and evaluate
    reports the rate kept. (That another task keeps the section's values: test_params.py.)"""
    project = tmp_path / "project"
    shutil.copytree(pipeline, project)
    set_finetune_param(project, "inits", ["pretrained"])
    own = {"learning_rate": [0.001, 0.0001], "epochs": 1}
    set_task_param(project, "sentiment", "training", own)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_store)
    result = run_script(project, "finetune.py", "sentiment")
    assert result.returncode == 0, result.stderr
    summary = json.loads((project / "metrics/finetune/sentiment.json").read_text())
    search = json.loads((project / "data/finetuned/sentiment/learning_rates.json").read_text())
    assert summary["learning_rate_search"] == search
    chosen = search["inits"]["pretrained"]["chosen"]
    assert summary["pretrained"]["learning_rate"] == chosen
    assert set(search["inits"]["pretrained"]["mean_dev"]) == {"0.001", "0.0001"}
    assert not (project / "data/finetuned/sentiment/search").exists()
    for seed in (0, 1):  # the task's own epochs, at the rate kept
        seed_dir = project / "data/finetuned/sentiment/pretrained" / f"seed-{seed}"
        metrics = json.loads((seed_dir / "metrics.json").read_text())
        assert metrics["learning_rate"] == chosen and len(metrics["history"]) == 1
    client = mlflow.MlflowClient(mlflow_store)
    experiment = client.get_experiment_by_name("bertforge")
    runs = client.search_runs([experiment.experiment_id], max_results=1000)
    parent = max(
        (run for run in runs if run.info.run_name == "finetune-sentiment"),
        key=lambda run: run.info.start_time,
    )
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    assert sorted(r.info.run_name for r in children) == sorted(
        f"sentiment-pretrained-lr{rate}-seed{seed}"
        for rate in ("0.001", "0.0001")
        for seed in (0, 1)
    )
    assert {r.data.params["learning_rate"] for r in children} == {"0.001", "0.0001"}
    for child in children:
        assert [m.step for m in client.get_metric_history(child.info.run_id, "dev_score")] == [1]
    # evaluate reports the rate kept
    result = run_script(project, "evaluate.py")
    assert result.returncode == 0, result.stderr
    report = (project / "reports/eval.md").read_text()
    assert f"- sentiment: pretrained {chosen:g}" in report


def corrupt_dev_label(project: Path) -> list[str]:
    path = project / "data/raw/tasks/sentiment/dev.jsonl"
    write_jsonl(path, [{"sentence": "a day", "label": "pos"}, {"sentence": "b", "label": "meh"}])
    return ["sentiment"]


def empty_test_split(project: Path) -> list[str]:
    (project / "data/raw/tasks/sentiment/test.jsonl").write_text("")
    return ["sentiment"]


def drop_a_column(project: Path) -> list[str]:
    write_jsonl(project / "data/raw/tasks/similar/train.jsonl", [{"sentence1": "a", "label": 1.0}])
    return ["similar"]


def word_as_score(project: Path) -> list[str]:
    rows = [{"sentence1": "cat", "sentence2": "dog", "label": "high"}]
    write_jsonl(project / "data/raw/tasks/similar/dev.jsonl", rows)
    return ["similar"]


def unknown_task(project: Path) -> list[str]:
    return ["nosuch"]


def foreign_vocabulary(project: Path) -> list[str]:
    with open(project / "data/tokenizer/vocab.txt", "a") as handle:
        handle.write("extra\n")
    return ["sentiment"]


def set_finetune_param(project: Path, key: str, value) -> None:
    params = yaml.safe_load((project / "params.yaml").read_text())
    params["finetune"][key] = value
    (project / "params.yaml").write_text(yaml.safe_dump(params))


def set_task_param(project: Path, task: str, key: str, value) -> None:
    params = yaml.safe_load((project / "params.yaml").read_text())
    params["finetune"]["tasks"][task][key] = value
    (project / "params.yaml").write_text(yaml.safe_dump(params))


def unknown_pooling(project: Path) -> list[str]:
    set_finetune_param(project, "pooling", "max")
    return ["sentiment"]


def mean_pooling(project: Path) -> list[str]:
    set_finetune_param(project, "pooling", "mean")
    return ["sentiment"]


def constant_regression_targets(project: Path) -> list[str]:
    rows = [{"sentence1": f"a {i}", "sentence2": "b", "label": 2.0} for i in range(8)]
    write_jsonl(project / "data/raw/tasks/similar/train.jsonl", rows)
    return ["similar"]


def label_missing_from_the_training_subset(project: Path) -> list[str]:
    rows = [{"sentence": f"good day {i}", "label": "pos"} for i in range(20)]
    write_jsonl(
        project / "data/raw/tasks/sentiment/train.jsonl",
        [*rows, {"sentence": "bad", "label": "neg"}],
    )
    set_task_param(project, "sentiment", "max_train_examples", 5)
    return ["sentiment"]


def negative_task_learning_rate(project: Path) -> list[str]:
    set_task_param(project, "sentiment", "training", {"learning_rate": [0.001, -0.1]})
    return ["sentiment"]


def config_vocab_size_off(project: Path) -> list[str]:
    path = project / "data/pretrained/model/config.json"
    config = json.loads(path.read_text())
    path.write_text(json.dumps(config | {"vocab_size": config["vocab_size"] - 1}))
    return ["sentiment"]


def offline_hub_dataset(project: Path) -> list[str]:
    params = yaml.safe_load((project / "params.yaml").read_text())
    params["finetune"]["tasks"]["sentiment"] = {"source": "hub", "path": "nyu-mll/glue"}
    params["finetune"]["tasks"]["sentiment"]["config"] = "sst2"
    (project / "params.yaml").write_text(yaml.safe_dump(params))
    return ["sentiment"]


@pytest.mark.parametrize(
    ("corrupt", "message"),
    [
        (corrupt_dev_label, r"sentiment/dev.jsonl: line 2: label 'meh' .* does not occur in train"),
        (empty_test_split, r"sentiment/test.jsonl: split 'test' of task 'sentiment' is empty"),
        (drop_a_column, r"similar/train.jsonl: line 1: missing column 'sentence2'"),
        (word_as_score, r"similar/dev.jsonl: line 1: label 'high' is not a number"),
        (unknown_task, r"params.yaml: finetune.tasks has no task 'nosuch' \(known: sentiment, "),
        (foreign_vocabulary, r"model/vocab.txt differs from data/tokenizer/vocab.txt"),
        (config_vocab_size_off, r"config.json: vocab_size \d+ does not match"),
        (offline_hub_dataset, r"hub dataset 'nyu-mll/glue' \(config 'sst2'\) could not be loaded"),
        (unknown_pooling, r"finetune.pooling must be one of 'cls', 'mean', got 'max'"),
        (
            negative_task_learning_rate,
            r"params.yaml: finetune.tasks.sentiment.training.learning_rate must be positive",
        ),
        (mean_pooling, r"finetune.pooling 'mean' cannot be exported"),
        (
            constant_regression_targets,
            r"similar/train.jsonl: task 'similar' is a regression task but every training target",
        ),
        (
            label_missing_from_the_training_subset,
            r"sentiment/dev.jsonl: line \d+: label 'neg' of task 'sentiment' does not occur in "
            r"the training subset",
        ),
    ],
)
def test_bad_input_is_one_line_exit_2_and_leaves_outputs_intact(
    pipeline, tmp_path, monkeypatch, capsys, corrupt, message
):
    project = shutil.copytree(pipeline, tmp_path / "project")
    monkeypatch.chdir(project)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr("datasets.config.HF_HUB_OFFLINE", True)
    outputs = {path: hash_path(project / path) for path in ("data/finetuned", "metrics")}
    arguments = corrupt(project)
    monkeypatch.setattr(sys, "argv", ["stages/finetune.py", *arguments])
    with pytest.raises(SystemExit) as exited:
        runpy.run_path(str(REPO_ROOT / "stages/finetune.py"), run_name="__main__")
    assert exited.value.code == 2
    stderr = capsys.readouterr().err.strip()
    assert len(stderr.splitlines()) == 1
    assert stderr.startswith("error: ")
    assert __import__("re").search(message, stderr), stderr
    assert {path: hash_path(project / path) for path in outputs} == outputs
