"""A whole task: every (init, seed) written, byte-identical whatever the number of processes."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

from bertforge.finetune.pretrained import check_pretrained_export
from bertforge.finetune.runs import choose_learning_rate, finetune_task, parallelism
from bertforge.finetune.summary import mean_std, summarize_seeds
from bertforge.io import hash_path
from tests.factories import load_embedded_task, tiny_finetune_params


def test_finetune_task_writes_every_seed_and_the_summary_has_mean_and_std(
    export, project, tmp_path
):
    task = load_embedded_task(*project, "similar")
    params = tiny_finetune_params(project[1], epochs=1, inits=["pretrained", "scratch"])
    config = check_pretrained_export(export, None, 32)
    seed_metrics = finetune_task(task, export, config, params, tmp_path / "similar")
    for init in ("pretrained", "scratch"):
        for seed in (0, 1):
            seed_dir = tmp_path / "similar" / init / f"seed-{seed}"
            assert (seed_dir / "model" / "model.safetensors").is_file()
            assert (seed_dir / "model" / "tokenizer.json").is_file()
            rows = (seed_dir / "predictions" / "test.jsonl").read_text().splitlines()
            assert len(rows) == len(task.test)
            assert set(json.loads(rows[0])) == {"row", "subset", "label", "prediction"}
    summary = summarize_seeds(task.describe(), seed_metrics)
    pearsons = [m["test"]["pearson"] for m in seed_metrics if m["init"] == "scratch"]
    assert summary["scratch"]["test"]["pearson"] == mean_std(pearsons)
    assert summary["primary_metric"] == "pearson"
    assert set(summary["pretrained"]["dev"]) == {"pearson", "spearman", "mse", "score"}


def test_outputs_are_byte_identical_again_and_whatever_the_number_of_processes(
    export, project, tmp_path
):
    task = load_embedded_task(*project, "sentiment")
    config = check_pretrained_export(export, None, 32)
    for name, processes in (("first", 1), ("second", 1), ("spawned", 2)):
        params = tiny_finetune_params(
            project[1], epochs=1, inits=["scratch"], seeds=[3, 4], processes=processes, threads=1
        )
        finetune_task(task, export, config, params, tmp_path / name)
    assert hash_path(tmp_path / "first") == hash_path(tmp_path / "second")
    assert hash_path(tmp_path / "first") == hash_path(tmp_path / "spawned")


def test_processes_default_to_one_per_core_and_never_more_than_the_runs(project):
    cores = len(os.sched_getaffinity(0))
    assert parallelism(tiny_finetune_params(project[1]), runs=64) == (cores, 1)
    assert parallelism(tiny_finetune_params(project[1]), runs=1) == (1, cores)
    assert parallelism(tiny_finetune_params(project[1], processes=3, threads=2), runs=6) == (3, 2)


def test_several_learning_rates_keep_per_init_the_best_mean_dev_runs_as_trained_alone(
    export, project, tmp_path
):
    """Each init keeps the runs of its rate with the best mean dev score; they are the very
    runs a single-rate call at that rate writes, and nothing of the other rates stays."""
    task = load_embedded_task(*project, "sentiment")
    config = check_pretrained_export(export, None, 32)
    # in this process (that the outputs do not depend on it: the test above)
    common = {"epochs": 2, "inits": ["pretrained", "scratch"], "processes": 1, "threads": 1}
    rates = [3e-3, 1e-4]
    params = tiny_finetune_params(project[1], learning_rate=rates, **common)
    seed_metrics = finetune_task(task, export, config, params, tmp_path / "search")
    record = json.loads((tmp_path / "search" / "learning_rates.json").read_text())
    assert sorted(path.name for path in (tmp_path / "search").iterdir()) == [
        "learning_rates.json",
        "pretrained",
        "scratch",
        "task.json",
    ]
    for init in ("pretrained", "scratch"):
        means = record["inits"][init]["mean_dev"]
        chosen = record["inits"][init]["chosen"]
        assert chosen == max(rates, key=lambda rate: (means[f"{rate:g}"], -rates.index(rate)))
        alone = tmp_path / f"alone-{init}"
        single = tiny_finetune_params(
            project[1], learning_rate=chosen, **(common | {"inits": [init]})
        )
        finetune_task(task, export, config, single, alone)
        assert hash_path(alone / init) == hash_path(tmp_path / "search" / init)
        kept = [m for m in seed_metrics if m["init"] == init]
        assert [m["learning_rate"] for m in kept] == [chosen, chosen]
        assert means[f"{chosen:g}"] == pytest.approx(np.mean([m["dev"]["score"] for m in kept]))
    # the two rates must really differ here, or the choice would test nothing
    assert {record["inits"][i]["mean_dev"]["0.003"] for i in record["inits"]} != {
        record["inits"][i]["mean_dev"]["0.0001"] for i in record["inits"]
    }


def test_the_rate_with_the_best_mean_dev_score_wins_and_the_first_of_equal_ones():
    def runs(*dev: float) -> list[dict[str, float]]:
        return [{"dev": score, "test": 1 - score} for score in dev]

    chosen, means = choose_learning_rate({1e-3: runs(0.5, 0.7), 1e-4: runs(0.65, 0.6)})
    assert chosen == 1e-4
    assert means[1e-3]["dev"] == pytest.approx(0.6) and means[1e-4]["test"] == pytest.approx(0.375)
    assert choose_learning_rate({1e-3: runs(0.6, 0.6), 1e-4: runs(0.7, 0.5)})[0] == 1e-3


def test_with_a_gpu_runs_go_one_at_a_time_unless_processes_share_it(project, monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    cores = len(os.sched_getaffinity(0))
    assert parallelism(tiny_finetune_params(project[1]), runs=24) == (1, cores)
    shared = tiny_finetune_params(project[1], processes=12)
    assert parallelism(shared, runs=24) == (12, 1)
    assert parallelism(shared, runs=4) == (4, max(1, cores // 4))
