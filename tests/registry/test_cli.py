"""The `bertforge` command: promote through the gate, roll back, trace lineage, refuse bad input.

Every refusal is checked the same way: exit code 2, exactly one ``error:`` line on stderr, and
the registry (versions, tags, aliases) exactly as before.
"""

from __future__ import annotations

import json
import subprocess
import sys

import mlflow
import pytest
import yaml

from bertforge.cli import main
from bertforge.registry.promote import REASON_TAG
from bertforge.tracking import TAG_PREFIX, stage_run
from tests.evaluate.fakes import MODELS, fake_evaluation
from tests.factories import add_version, eval_summary
from tests.support import REPO_ROOT, stage_env


def aliases(name: str) -> dict[str, str]:
    return {k: str(v) for k, v in mlflow.MlflowClient().get_registered_model(name).aliases.items()}


def registry_state() -> list:
    """Everything a command could change: each model's aliases and each version's tags."""
    client = mlflow.MlflowClient()
    state = []
    for model in sorted(client.search_registered_models(), key=lambda m: m.name):
        versions = client.search_model_versions(f"name = '{model.name}'")
        state.append(
            (
                model.name,
                dict(model.aliases),
                sorted((str(v.version), sorted(v.tags.items())) for v in versions),
            )
        )
    return state


def refused(argv: list[str], capsys: pytest.CaptureFixture, match: str) -> str:
    """Run a command that must fail: exit 2, one error line containing `match`, no change."""
    before = registry_state()
    code = main(argv)
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert code == 2, captured
    assert len(lines) == 1 and lines[0].startswith("error: "), lines
    assert match in lines[0], lines[0]
    assert registry_state() == before
    return captured.out


# --- promotion -------------------------------------------------------------------------------


def test_first_promotion_with_no_champion_makes_the_version_champion(store, capsys):
    add_version("m", eval_summary(0.80))
    assert main(["promote", "m"]) == 0
    assert aliases("m") == {"champion": "1"}
    out = capsys.readouterr().out
    assert "@champion (none)" in out and "candidate v1" in out
    assert "accuracy (primary)" in out and "0.8000 ± 0.0100" in out


def test_first_promotion_of_a_version_without_eval_metrics_is_refused(store, capsys):
    add_version("m", None)
    refused(["promote", "m"], capsys, "has no eval metrics")


def test_a_clear_winner_becomes_champion_and_the_old_champion_previous(store, capsys):
    add_version("m", eval_summary(0.80, 0.01))
    add_version("m", eval_summary(0.90, 0.01))
    assert main(["promote", "m", "--version", "1"]) == 0
    assert main(["promote", "m", "--version", "2"]) == 0
    assert aliases("m") == {"champion": "2", "previous": "1"}
    out = capsys.readouterr().out
    assert "@champion v1" in out and "candidate v2" in out and "+0.1000" in out


def test_promote_defaults_to_the_latest_version(store, capsys):
    for mean in (0.80, 0.85, 0.95):
        add_version("m", eval_summary(mean, 0.01))
    assert main(["promote", "m"]) == 0
    assert aliases("m") == {"champion": "3"}


def test_a_gain_within_the_seed_spread_is_refused_and_shown_side_by_side(store, capsys):
    add_version("m", eval_summary(0.80, 0.05))
    add_version("m", eval_summary(0.83, 0.01))
    assert main(["promote", "m", "--version", "1"]) == 0
    capsys.readouterr()
    out = refused(["promote", "m", "--version", "2"], capsys, "within the seed spread")
    assert "0.8000 ± 0.0500" in out and "0.8300 ± 0.0100" in out and "+0.0300" in out


def test_a_worse_candidate_is_refused(store, capsys):
    add_version("m", eval_summary(0.90, 0.0))
    add_version("m", eval_summary(0.80, 0.0))
    assert main(["promote", "m", "--version", "1"]) == 0
    refused(["promote", "m", "--version", "2"], capsys, "does not beat the champion's 0.9000")


def test_force_with_a_reason_overrides_the_gate_and_stores_the_reason(store, capsys):
    add_version("m", eval_summary(0.80, 0.05))
    add_version("m", eval_summary(0.79, 0.05))
    assert main(["promote", "m", "--version", "1"]) == 0
    refused(["promote", "m", "--version", "2", "--force"], capsys, "--force needs --reason")
    refused(["promote", "m", "--version", "2", "--reason", "why"], capsys, "--reason goes with")
    reason = "smaller model, same quality"
    assert main(["promote", "m", "--version", "2", "--force", "--reason", reason]) == 0
    assert aliases("m") == {"champion": "2", "previous": "1"}
    assert mlflow.MlflowClient().get_model_version("m", "2").tags[REASON_TAG] == reason


def test_force_never_promotes_a_version_without_eval_metrics(store, capsys):
    add_version("m", eval_summary(0.80))
    add_version("m", None)
    assert main(["promote", "m", "--version", "1"]) == 0
    refused(
        ["promote", "m", "--version", "2", "--force", "--reason", "trust me"],
        capsys,
        "has no eval metrics",
    )


def test_the_margin_comes_from_params_yaml_unless_given(store, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump({"register": {"promotion_margin": 0.2}}))
    add_version("m", eval_summary(0.70, 0.01))
    add_version("m", eval_summary(0.80, 0.01))
    assert main(["promote", "m", "--version", "1"]) == 0
    refused(["promote", "m", "--version", "2"], capsys, "by more than the margin 0.2")
    assert main(["promote", "m", "--version", "2", "--margin", "0.05"]) == 0
    assert aliases("m")["champion"] == "2"


# --- rollback --------------------------------------------------------------------------------


def test_rollback_swaps_champion_and_previous_and_twice_restores(store, capsys):
    add_version("m", eval_summary(0.80, 0.01))
    add_version("m", eval_summary(0.90, 0.01))
    assert main(["promote", "m", "--version", "1"]) == 0
    assert main(["promote", "m", "--version", "2"]) == 0
    assert main(["rollback", "m"]) == 0
    assert aliases("m") == {"champion": "1", "previous": "2"}
    assert main(["rollback", "m"]) == 0
    assert aliases("m") == {"champion": "2", "previous": "1"}


def test_rollback_without_a_previous_champion_is_refused(store, capsys):
    add_version("m", eval_summary(0.80))
    assert main(["promote", "m"]) == 0
    refused(["rollback", "m"], capsys, "has no @previous version to roll back to")


# --- bad input -------------------------------------------------------------------------------


def test_unknown_model_is_refused_by_every_command(store, capsys):
    add_version("m", eval_summary(0.80))
    refused(["promote", "nope"], capsys, "unknown model 'nope' (registered: m)")
    refused(["rollback", "nope"], capsys, "unknown model 'nope'")
    refused(["lineage", "models:/nope@champion"], capsys, "unknown model 'nope'")
    refused(["predict", "models:/nope@champion", "text"], capsys, "unknown model 'nope'")
    refused(["versions", "nope"], capsys, "unknown model 'nope'")


def test_unknown_version_is_refused(store, capsys):
    add_version("m", eval_summary(0.80))
    refused(["promote", "m", "--version", "9"], capsys, "model 'm' has no version 9 (versions: 1)")
    refused(["lineage", "models:/m/9"], capsys, "has no version 9")
    refused(["promote", "m", "--version", "x"], capsys, "--version must be a version number")


def test_an_alias_of_another_model_is_refused_naming_that_model(store, capsys):
    add_version("a", eval_summary(0.80))
    add_version("b", eval_summary(0.80))
    assert main(["promote", "b"]) == 0
    refused(
        ["lineage", "models:/a@champion"],
        capsys,
        "model 'a' has no alias 'champion' (its aliases: none); 'champion' is an alias of b",
    )


@pytest.mark.parametrize("uri", ["m@champion", "models:/m", "models:/m@", "models:/a/b/c"])
def test_a_malformed_models_uri_is_refused(store, capsys, uri):
    add_version("m", eval_summary(0.80))
    refused(["lineage", uri], capsys, "models:/")
    refused(["predict", uri, "text"], capsys, "models:/")


def test_the_cli_runs_as_a_python_module_with_one_line_errors(store):
    result = subprocess.run(
        [sys.executable, "-m", "bertforge.cli", "lineage", "bertforge-sst2@champion"],
        capture_output=True,
        text=True,
        env=stage_env(),
        cwd=REPO_ROOT,
        timeout=300,
    )
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "error: 'bertforge-sst2@champion' is not a models:/ URI "
        "(expected models:/<name>@<alias or version> or models:/<name>/<version>)"
    ]


# --- lineage ---------------------------------------------------------------------------------


def test_lineage_prints_commit_params_data_hashes_runs_and_reproduce_commands(
    store, capsys, tmp_path, monkeypatch
):
    monkeypatch.chdir(tmp_path)
    (tmp_path / ".dvc").mkdir()
    (tmp_path / "params.yaml").write_text(
        yaml.safe_dump({"vocab": {"vocab_size": 16000}, "register": {"promotion_margin": 0.0}})
    )
    monkeypatch.setenv("DVC_EXP_NAME", "tidy-bass")
    with stage_run("register", {"promotion_margin": 0.0}) as run:
        register_run = run.run_id
    tags = {
        f"{TAG_PREFIX}git_commit": "1234567890abcdef1234567890abcdef12345678",
        f"{TAG_PREFIX}git_dirty": "false",
        f"{TAG_PREFIX}dvc_exp_name": "tidy-bass",
        f"{TAG_PREFIX}params_digest": "00ff00ff00ff00ff",
        f"{TAG_PREFIX}input.model": "ab" * 32,
        f"{TAG_PREFIX}data.data/raw/corpus": "cd" * 16 + ".dir",
        f"{TAG_PREFIX}pretrain_run_id": "p" * 32,
        f"{TAG_PREFIX}finetune_run_id": "f" * 32,
        f"{TAG_PREFIX}register_run_id": register_run,
    }
    add_version("m", eval_summary(0.81, 0.02), tags)
    assert main(["promote", "m"]) == 0
    capsys.readouterr()

    assert main(["lineage", "models:/m@champion"]) == 0
    out = capsys.readouterr().out
    assert "models:/m@champion -> m version 1" in out
    assert "git commit      1234567890abcdef1234567890abcdef12345678" in out
    assert "data.data/raw/corpus" in out and "cd" * 16 + ".dir" in out
    assert "input.model" in out and "ab" * 32 in out
    assert f"pretraining    {'p' * 32}" in out and f"fine-tuning    {'f' * 32}" in out
    assert f"registration   {register_run}" in out
    assert "vocab.vocab_size = 16000" in out
    assert "accuracy             0.8100 ± 0.0200  (primary)" in out
    assert "git checkout 1234567890abcdef1234567890abcdef12345678" in out
    assert "dvc exp apply tidy-bass" in out and "dvc repro" in out
    assert main(["lineage", "models:/m@1"]) == 0
    assert "models:/m@1 -> m version 1" in capsys.readouterr().out


def test_versions_lists_aliases_and_primary_metric(store, capsys):
    add_version("m", eval_summary(0.80, 0.01))
    add_version("m", None)
    assert main(["promote", "m", "--version", "1"]) == 0
    capsys.readouterr()
    assert main(["versions", "m"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert "@champion" in lines[1] and "accuracy 0.8000 ± 0.0100" in lines[1]
    assert "no eval metrics" in lines[2]


# --- results -----------------------------------------------------------------------------------


def write_metrics(directory, evaluation, heldout=None) -> None:
    """metrics/eval.json (and metrics/pretrain.json with `heldout`) in `directory`."""
    metrics = directory / "metrics"
    metrics.mkdir()
    (metrics / "eval.json").write_text(json.dumps(evaluation))
    if heldout is not None:
        (metrics / "pretrain.json").write_text(json.dumps({"heldout": heldout}))


def test_results_shows_each_models_average_and_task_scores_and_marks_the_floor(
    tmp_path, monkeypatch, capsys
):
    evaluation = fake_evaluation(bootstrap_error=0.02)
    heldout = {
        "mlm_accuracy": 0.1457,
        "mlm_accuracy_over_unigram": 2.318,
        "nsp_accuracy": 0.701,
        "nsp_majority_accuracy": 0.62,
    }
    write_metrics(tmp_path, evaluation, heldout)
    monkeypatch.chdir(tmp_path)
    assert main(["results"]) == 0
    out = capsys.readouterr().out
    table = out.split("\n\n")[1]  # between the heading and the notes
    rows = {line.split()[0]: line.split() for line in table.splitlines()}
    assert rows["model"] == ["model", "average", "learnable", "noise*"]  # noise: at floor
    average = evaluation["average"]
    for model in MODELS:
        mean, error = average["test"][model]["mean"], average["standard_error"][model]
        assert rows[model][1:4] == [f"{mean:.3f}", "±", f"{error:.3f}"]
    assert rows["pretrained"][4:] == ["0.810", "0.510"]  # each task's mean score over seeds
    assert rows["majority"][4:] == ["0.500", "0.500"]
    # per seed (0.80 + 0.52) / 2 ... against (0.5 + 0.5) / 2 ...: 0.660 - 0.498
    assert "pretrained - scratch on the average: +0.162 (seed std of pretrained: 0.005)" in out
    assert "* at floor: no model beats the majority baseline by two standard errors" in out
    assert "held-out MLM accuracy 14.57% (2.32x unigram), NSP 70.1% (majority 62.0%)" in out


def test_results_without_pretraining_metrics_leaves_that_line_out(tmp_path, monkeypatch, capsys):
    write_metrics(tmp_path, fake_evaluation())
    monkeypatch.chdir(tmp_path)
    assert main(["results"]) == 0
    out = capsys.readouterr().out
    assert "bag_of_words" in out and "held-out" not in out


def test_results_lists_the_tasks_in_params_yaml_order(tmp_path, monkeypatch, capsys):
    write_metrics(tmp_path, fake_evaluation())  # eval.json: tasks sorted by name
    spec = {"source": "embedded", "kind": "classification", "text_columns": ["sentence"]}
    tasks = {
        name: {**spec, "path": f"tasks/{name}", "metric": "accuracy"}
        for name in ("noise", "learnable")
    }
    params = {"finetune": {"tasks": tasks}}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    monkeypatch.chdir(tmp_path)
    assert main(["results"]) == 0
    table = capsys.readouterr().out.split("\n\n")[1]
    rows = {line.split()[0]: line.split() for line in table.splitlines()}
    assert rows["model"] == ["model", "average", "noise*", "learnable"]
    assert rows["pretrained"][4:] == ["0.510", "0.810"]


def test_results_piped_into_a_reader_that_leaves_ends_without_a_traceback(tmp_path):
    write_metrics(tmp_path, fake_evaluation())
    child = subprocess.Popen(
        [sys.executable, "-m", "bertforge.cli", "results"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=stage_env(),
        cwd=tmp_path,
    )
    child.stdout.close()  # as `| head -0` does, before the command has written a line
    try:
        stderr = child.stderr.read().decode()
        returncode = child.wait(timeout=300)
    finally:
        child.kill()
    assert returncode == 1 and stderr == "", stderr


@pytest.mark.parametrize(
    ("content", "match"),
    [
        (None, "metrics/eval.json: not found; run the evaluate stage first"),
        ("{not json", "metrics/eval.json: not valid JSON"),
        ('{"tasks": {}}', "metrics/eval.json: not the evaluate stage's output"),
    ],
    ids=["missing", "not json", "another file"],
)
def test_results_refuses_a_missing_or_foreign_eval_json_in_one_line(
    tmp_path, monkeypatch, capsys, content, match
):
    if content is not None:
        (tmp_path / "metrics").mkdir()
        (tmp_path / "metrics/eval.json").write_text(content)
    monkeypatch.chdir(tmp_path)
    assert main(["results"]) == 2
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {match}"), lines
    assert captured.out == ""
