"""benchmarks/gpu_pipeline.py's CPU rehearsal (`--tiny`): the chain that the GPU check runs on
a lent machine, whose device minutes are too few to find out there that the script broke."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.support import REPO_ROOT, run_benchmark, stage_env

REHEARSAL_TIMEOUT_S = 600


def test_the_tiny_chain_fine_tunes_each_rate_and_seed_keeps_the_best_on_dev_and_evaluates(
    tmp_path,
):
    out = tmp_path / "summary.json"
    run_benchmark(
        "gpu_pipeline.py",
        *("--tiny", "--tasks", "supersense", "--lrs", "1e-3", "1e-4", "--seeds", "0", "1"),
        *("--workers", "2", "--compare-unpad", "20", "--out", str(out)),
        timeout_s=REHEARSAL_TIMEOUT_S,
    )
    summary = json.loads(out.read_text(encoding="utf-8"))
    assert summary["device"] == "cpu"
    assert set(summary["seconds"]) >= {"ingest", "vocab", "examples", "pretrain", "finetune"}
    assert 0 < summary["pretrain"]["summary"]["heldout"]["mlm_accuracy"] < 1
    scores = summary["finetune"]["supersense"]
    for init in ("pretrained", "scratch"):
        runs = scores[f"{init}_runs"]
        assert set(runs) == {"0.001", "0.0001"}
        best = max(runs, key=lambda lr: runs[lr]["dev"])
        assert scores[init] == runs[best]["test"]
    assert 0 <= scores["majority"] <= scores["bag_of_words"] <= 1
    assert set(scores["bootstrap_error"]) == {"pretrained", "scratch", "majority", "bag_of_words"}
    # every run's scores, kept as they arrived: 2 inits × 2 rates × 2 seeds
    kept = summary["finetune_runs"]
    assert len(kept) == 8 and {run["seed"] for run in kept} == {0, 1}
    assert summary["finetune_test_average"] == {
        model: round(scores[model], 4)
        for model in ("pretrained", "scratch", "majority", "bag_of_words")
    }
    # the kept runs evaluated as the evaluate stage does: mean over both seeds, standard errors
    evaluation = summary["evaluation"]
    assert evaluation["seeds"] == [0, 1] and evaluation["headline_split"] == "test"
    task = evaluation["tasks"]["supersense"]
    for model in ("pretrained", "scratch", "majority", "bag_of_words"):
        assert task["test"][model]["score"]["mean"] == pytest.approx(scores[model])
        assert task["standard_error"][model] > 0
    assert evaluation["average"]["test"]["delta"] == pytest.approx(
        scores["pretrained"] - scores["scratch"]
    )
    report = out.with_suffix(".md").read_text(encoding="utf-8")
    assert report.startswith("# Evaluation: pretrained vs from scratch vs baselines")
    assert "over seeds 0, 1" in report
    # the stage padded against unpadded (on CPU one kernel), with every logged loss kept
    compared = summary["compare_unpad"]
    assert set(compared) == {
        "padded",
        "unpadded padded-sdpa",
        "unpadded padded-sdpa over padded tokens_per_s",
        "unpadded padded-sdpa loss_max_relative_deviation",
    }
    for name in ("padded", "unpadded padded-sdpa"):
        assert len(compared[name]["loss_every_10_steps"]) == 2  # steps 10 and 20
    assert compared["unpadded padded-sdpa loss_max_relative_deviation"] < 1e-3  # fp32 on CPU


def test_fewer_than_one_worker_is_one_line_before_any_work(tmp_path):
    out = tmp_path / "summary.json"
    command = [
        sys.executable,
        str(REPO_ROOT / "benchmarks/gpu_pipeline.py"),
        "--tiny",
        "--workers",
        "0",
        "--out",
        str(out),
    ]
    result = subprocess.run(command, capture_output=True, text=True, env=stage_env(), timeout=120)
    assert result.returncode == 1
    assert result.stderr.strip() == "error: --workers must be at least 1, got 0"
    assert not out.exists()
