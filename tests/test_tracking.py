import time

import mlflow

from bertforge.tracking import TAG_PREFIX, repo_root, stage_run, tracking_uri


def test_repo_root_inside_a_dvc_experiment_copy_is_the_outer_repo(tmp_path):
    (tmp_path / ".dvc").mkdir()
    inner = tmp_path / ".dvc" / "tmp" / "exps" / "tmpabc123" / "stages"
    inner.mkdir(parents=True)
    (inner.parent / ".dvc").mkdir()
    assert repo_root(inner) == tmp_path
    assert repo_root(tmp_path / ".dvc" / "tmp") == tmp_path


def test_default_store_is_an_absolute_sqlite_file_at_the_repo_root(tmp_path, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI")
    (tmp_path / ".dvc").mkdir()
    (tmp_path / "sub").mkdir()
    monkeypatch.chdir(tmp_path / "sub")
    assert tracking_uri() == f"sqlite:///{tmp_path.resolve()}/mlflow.db"


def test_stage_runs_of_one_pipeline_share_a_parent_and_carry_lineage(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "params.yaml").write_text("a: 1\n")
    (tmp_path / "input.txt").write_text("data")
    with stage_run("first", {"x": 1}, inputs={"corpus": tmp_path / "input.txt"}) as run:
        run.log_metrics({"documents": 3})
    with stage_run("second", {"y": [1, 2]}) as run:
        run.log_metrics({"tokens": 10})
    client = mlflow.MlflowClient()
    runs = client.search_runs(
        [mlflow.get_experiment_by_name("bertforge").experiment_id],
        filter_string=f"tags.`{TAG_PREFIX}kind` = 'stage'",
    )
    assert {r.data.tags[f"{TAG_PREFIX}stage"] for r in runs} == {"first", "second"}
    parents = {r.data.tags["mlflow.parentRunId"] for r in runs}
    assert len(parents) == 1
    first = next(r for r in runs if r.data.tags[f"{TAG_PREFIX}stage"] == "first")
    assert first.data.params["first.x"] == "1"
    assert first.data.metrics["documents"] == 3
    assert len(first.data.tags[f"{TAG_PREFIX}input.corpus"]) == 64
    assert f"{TAG_PREFIX}git_commit" in first.data.tags
    assert first.info.status == "FINISHED"


def test_other_ranks_do_not_log(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("RANK", "1")
    with stage_run("ranked", {"x": 1}) as run:
        assert run.run_id is None
        run.log_metrics({"loss": 1.0})


def test_system_metrics_are_sampled_when_a_stage_asks_and_only_then(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "params.yaml").write_text("a: 1\n")
    monkeypatch.setenv("MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL", "1")
    monkeypatch.setenv("MLFLOW_SYSTEM_METRICS_SAMPLES_BEFORE_LOGGING", "1")
    with stage_run("long", {"x": 1}, system_metrics=True) as run:
        time.sleep(3.5)
    with stage_run("short", {"x": 1}) as quiet:
        time.sleep(1.5)
    client = mlflow.MlflowClient()
    sampled = client.get_run(run.run_id).data.metrics
    assert "system/cpu_utilization_percentage" in sampled
    assert "system/system_memory_usage_megabytes" in sampled
    assert not any(key.startswith("system/") for key in client.get_run(quiet.run_id).data.metrics)
