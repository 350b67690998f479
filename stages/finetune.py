"""finetune@<task>: fine-tune the pretrained export on one task, and the from-scratch baseline.

Usage: python stages/finetune.py <task>   (a key of finetune.tasks in params.yaml)

Writes data/finetuned/<task>/ atomically (task.json, <init>/seed-<n>/{model,predictions,
metrics.json}, and with several learning rates learning_rates.json: the rates tried, the one
kept per init) and metrics/finetune/<task>.json (mean and std over seeds, per init); logs one
MLflow run per task with a child run per (init, rate, seed), tagged with the pretraining run's
id.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from bertforge.finetune.params import FinetuneParams
from bertforge.finetune.pooling import check_exportable
from bertforge.finetune.pretrained import (
    PRETRAIN_RUN_TAG,
    check_pretrained_export,
    pretrain_run_id,
)
from bertforge.finetune.runs import SEARCH_RECORD, finetune_task
from bertforge.finetune.summary import summarize_seeds
from bertforge.finetune.tasks import load_task
from bertforge.io import atomic_outputs, read_json
from bertforge.params import flatten, load_section
from bertforge.stage import run_stage
from bertforge.tracking import TAG_PREFIX, stage_run

MODEL_DIR = Path("data/pretrained/model")
REFERENCE_VOCAB = Path("data/tokenizer/vocab.txt")
OUTPUT_ROOT = Path("data/finetuned")
METRICS_DIR = Path("metrics/finetune")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("task", help="a task named in params.yaml finetune.tasks")
    name = parser.parse_args().task
    params = load_section(FinetuneParams, "finetune").for_task_training(name)  # its own knobs
    spec = params.task(name)
    check_exportable(params.pooling)  # every model written must load in transformers as trained
    config = check_pretrained_export(MODEL_DIR, REFERENCE_VOCAB, params.max_seq_length)
    task = load_task(name, spec)
    lineage = {PRETRAIN_RUN_TAG: pretrain_run_id(MODEL_DIR) or "unknown"}
    inputs = {"pretrained": MODEL_DIR} | ({"task": Path(spec.path)} if spec.source != "hub" else {})
    with stage_run(
        "finetune",
        params.for_task(name),
        inputs=inputs,
        run_name=f"finetune-{name}",
        tags=lineage | {f"{TAG_PREFIX}task": name},
    ) as run:
        with atomic_outputs(OUTPUT_ROOT / name, METRICS_DIR / f"{name}.json") as staged:
            seed_metrics = finetune_task(task, MODEL_DIR, config, params, staged.directory, lineage)
            record = staged.directory / SEARCH_RECORD
            search = read_json(record) if record.is_file() else None
            staged.metrics = summary = summarize_seeds(task.describe(), seed_metrics, search)
        run.log_metrics(flatten({k: v for k, v in summary.items() if k in params.inits}))


if __name__ == "__main__":
    run_stage(main)
