"""A whole task: every (init, seed) written, byte-identical whatever the number of processes."""

from __future__ import annotations

import json
import os

from bertforge.finetune.pretrained import check_pretrained_export
from bertforge.finetune.runs import finetune_task, parallelism
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
