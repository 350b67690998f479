"""A whole task: every (init, seed) trained in parallel processes, written, and logged to MLflow.

Each (init, seed) depends only on its seed, so the outputs do not depend on how many processes
share the work (at a fixed thread count). `write_seed` saves a run's best model in transformers'
layout (loadable by `AutoModelForSequenceClassification`), the tokenizer files, dev and test
predictions and metrics, under ``<init>/seed-<n>/`` of the task's output directory.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from bertforge.constants import TASK_SPLITS
from bertforge.finetune.data import EncodedSplit, encode_split
from bertforge.finetune.params import FinetuneParams, Init
from bertforge.finetune.pooling import MeanPooledClassifier, check_exportable
from bertforge.finetune.pretrained import load_export_tokenizer
from bertforge.finetune.tasks import TaskData
from bertforge.finetune.train import SeedResult, train_seed
from bertforge.io import read_json, write_json_atomic
from bertforge.model import BertConfig, BertForSequenceClassification, save_pretrained
from bertforge.parallel import ordered_parallel_map
from bertforge.tokenizer import (
    SPECIAL_TOKENS_MAP_FILE,
    TOKENIZER_CONFIG_FILE,
    TOKENIZER_FILE,
    VOCAB_FILE,
)
from bertforge.tracking import TAG_PREFIX

TOKENIZER_FILES = (VOCAB_FILE, TOKENIZER_FILE, TOKENIZER_CONFIG_FILE, SPECIAL_TOKENS_MAP_FILE)


# --- one seed's outputs ----------------------------------------------------------------------


def seed_directory(task_dir: Path, init: str, seed: int) -> Path:
    """Where one (init, seed) of a task writes: ``<task_dir>/<init>/seed-<n>``."""
    return Path(task_dir) / init / f"seed-{seed}"


SEARCH_DIR = "search"  # the runs of every rate, while a search is undecided
SEARCH_RECORD = "learning_rates.json"


def run_directory(task_dir: Path, init: str, learning_rate: float, seed: int, search: bool) -> Path:
    """Where one run writes: its seed directory, or with several rates to choose between,
    ``<task_dir>/search/<init>/lr-<rate>/seed-<n>`` until the choice moves it there."""
    if not search:
        return seed_directory(task_dir, init, seed)
    return Path(task_dir) / SEARCH_DIR / init / f"lr-{learning_rate:g}" / f"seed-{seed}"


def choose_learning_rate(
    scores: Mapping[float, Sequence[Mapping[str, float]]],
) -> tuple[float, dict[float, dict[str, float]]]:
    """The rate whose seeds have the best mean dev score (the first listed of equal ones), and
    each rate's mean score per split; `scores[rate]`: one {split: score} per seed."""
    means = {
        rate: {split: float(np.mean([run[split] for run in runs])) for split in runs[0]}
        for rate, runs in scores.items()
    }
    # the best mean dev score over the seeds; max keeps the first listed of equal ones
    return max(means, key=lambda rate: means[rate]["dev"]), means


def write_seed(
    seed_dir: Path,
    model: BertForSequenceClassification,
    result: SeedResult,
    task: TaskData,
    model_dir: Path,
) -> None:
    """The best model (transformers layout + tokenizer files), predictions and metrics of a seed.

    Predictions are JSON lines in split order: ``row`` (line or index in the source), ``subset``
    (MNLI), ``label`` (gold) and ``prediction``. Nothing here is time-dependent, so the files
    repeat to the byte.
    """
    if isinstance(model, MeanPooledClassifier):
        check_exportable("mean")  # transformers could not load it as it was trained
    model_out = Path(seed_dir) / "model"
    save_pretrained(model, model_out)
    for name in TOKENIZER_FILES:
        if (Path(model_dir) / name).is_file():
            shutil.copyfile(Path(model_dir) / name, model_out / name)
    predictions_dir = Path(seed_dir) / "predictions"
    predictions_dir.mkdir(parents=True)
    for split, predicted in result.predictions.items():
        lines = [
            json.dumps(
                {"row": e.row, "subset": e.subset, "label": e.label, "prediction": p},
                ensure_ascii=False,
            )
            for e, p in zip(task.split(split), predicted, strict=True)
        ]
        (predictions_dir / f"{split}.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    write_json_atomic(
        Path(seed_dir) / "metrics.json",
        {
            "init": result.init,
            "seed": result.seed,
            "learning_rate": result.learning_rate,
            "best_epoch": result.best_epoch,
            "history": result.history,
            "dev": result.metrics["dev"],
            "test": result.metrics["test"],
        },
    )


# --- the whole task, with MLflow child runs --------------------------------------------------


@dataclass(frozen=True)
class TaskRuns:
    """What every (init, seed) run of a task shares; each worker process receives it once."""

    task: TaskData
    encoded: Mapping[str, EncodedSplit]
    model_dir: Path
    config: BertConfig
    params: FinetuneParams
    output_dir: Path
    threads: int


_TASK_RUNS: TaskRuns | None = None  # set in each worker by `_start_worker`


def _start_worker(runs: TaskRuns) -> None:
    global _TASK_RUNS
    _TASK_RUNS = runs
    torch.set_num_threads(runs.threads)


def _train_and_write(run: tuple[Init, float, int]) -> SeedResult:
    """One (init, rate, seed) in a worker: train, write its directory, return the result (no
    weights)."""
    assert _TASK_RUNS is not None, "_start_worker was not called in this process"
    shared, (init, rate, seed) = _TASK_RUNS, run
    params = shared.params.at_rate(rate)
    model, result = train_seed(
        shared.task, shared.encoded, init, seed, shared.model_dir, shared.config, params
    )
    search = len(shared.params.learning_rates) > 1
    directory = run_directory(shared.output_dir, init, rate, seed, search)
    write_seed(directory, model, result, shared.task, shared.model_dir)
    return dataclasses.replace(result, state_dict={})


def parallelism(params: FinetuneParams, runs: int) -> tuple[int, int]:
    """(processes, torch threads per process) for `runs` (init, seed) runs on this machine.

    `processes: 0` is one per core, never more than there are runs; `threads: 0` shares the
    cores between the processes. Small models use cores far better as separate processes with
    one thread each than as one process with many threads (docs/finetune.md, "Measured").
    With a GPU, `processes: 0` is one run at a time, in this process; N > 0 runs share the GPU
    from N processes (small models leave most of it idle: 12 gave 3.5× the throughput of one on
    an H200, docs/model.md "GPU").
    """
    cores = len(os.sched_getaffinity(0))
    if torch.cuda.is_available():
        processes = min(params.processes or 1, runs)
        return processes, params.threads or max(1, cores // processes)
    processes = min(params.processes or cores, runs)
    threads = params.threads or max(1, cores // processes)
    return processes, threads


def log_child_run(result: SeedResult, name: str, tags: Mapping[str, str]) -> None:
    """The MLflow child run of one (init, seed) under the active stage run, after the fact:
    per-epoch train loss and dev metrics, then the best epoch's dev and test metrics."""
    import mlflow

    if mlflow.active_run() is None:
        return
    with mlflow.start_run(run_name=name, nested=True, tags=dict(tags), log_system_metrics=False):
        mlflow.log_params(
            {"init": result.init, "seed": result.seed, "learning_rate": result.learning_rate}
        )
        for record in result.history:
            epoch = int(record["epoch"])
            logged = {k: v for k, v in record.items() if k != "epoch"}
            mlflow.log_metrics(
                {
                    (k if k in ("train_loss", "lr") else f"dev_{k}"): float(v)
                    for k, v in logged.items()
                },
                step=epoch,
            )
        final = {
            f"{'best_dev' if split == 'dev' else split}_{metric}": value
            for split, metrics in result.metrics.items()
            for metric, value in metrics.items()
        }
        mlflow.log_metrics(final | {"best_epoch": result.best_epoch, "seconds": result.seconds})


def finetune_task(
    task: TaskData,
    model_dir: Path,
    config: BertConfig,
    params: FinetuneParams,
    output_dir: Path,
    tags: Mapping[str, str] | None = None,
) -> list[dict[str, Any]]:
    """Train every (init, seed) of a task into `output_dir` (the caller makes it atomic).

    Writes ``task.json`` and ``<init>/seed-<n>/``; returns the seed metrics. With several
    learning rates, every (init, seed) is trained at each, and per init the rate with the best
    mean dev score over the seeds is kept (`choose_learning_rate`): its runs become the seed
    directories, the others are deleted, and ``learning_rates.json`` records every rate's dev
    and test means. The runs are spread over `parallelism(...)` worker processes; each run
    depends only on its seed and rate, so the outputs do not depend on how many processes share
    the work (at a fixed thread count). Each run becomes an MLflow child run of the active run,
    tagged with `tags` (the pretraining run's id), logged from this process as the results
    arrive in order.
    """
    tokenizer = load_export_tokenizer(model_dir)
    encoded = {
        split: encode_split(tokenizer, task, task.split(split), params.max_seq_length)
        for split in TASK_SPLITS
    }
    write_json_atomic(Path(output_dir) / "task.json", task.describe())
    rates = params.learning_rates
    runs = [(init, rate, seed) for init in params.inits for rate in rates for seed in params.seeds]
    processes, threads = parallelism(params, len(runs))
    shared = TaskRuns(task, encoded, Path(model_dir), config, params, Path(output_dir), threads)
    results = ordered_parallel_map(
        _train_and_write,
        runs,
        processes,
        initializer=_start_worker,
        initargs=(shared,),
        param="finetune.processes",
    )
    finished: dict[tuple[Init, float, int], SeedResult] = {}
    progress = tqdm(total=len(runs), desc=f"finetune {task.name} ({processes} proc)", unit="run")
    with progress:
        for (init, rate, seed), result in zip(runs, results, strict=True):
            run_tags = {f"{TAG_PREFIX}task": task.name, f"{TAG_PREFIX}init": init, **(tags or {})}
            at_rate = f"-lr{rate:g}" if len(rates) > 1 else ""
            log_child_run(result, f"{task.name}-{init}{at_rate}-seed{seed}", run_tags)
            finished[init, rate, seed] = result
            progress.update()
    if len(rates) > 1:
        keep_chosen_rates(Path(output_dir), finished, params)
    return [
        read_json(seed_directory(output_dir, init, seed) / "metrics.json")
        for init in params.inits
        for seed in params.seeds
    ]


def keep_chosen_rates(
    output_dir: Path,
    finished: Mapping[tuple[Init, float, int], SeedResult],
    params: FinetuneParams,
) -> None:
    """Per init, move the runs of the rate with the best mean dev score to the seed
    directories, delete the rest, and record every rate's dev and test means."""
    record: dict[str, Any] = {"chosen_by": "the best mean dev score over the seeds", "inits": {}}
    for init in params.inits:
        chosen, means = choose_learning_rate(
            {
                rate: [finished[init, rate, seed].scores() for seed in params.seeds]
                for rate in params.learning_rates
            }
        )
        record["inits"][init] = {"chosen": chosen} | {
            f"mean_{split}": {f"{rate:g}": means[rate][split] for rate in means}
            for split in ("dev", "test")
        }
        for seed in params.seeds:
            target = seed_directory(output_dir, init, seed)
            target.parent.mkdir(parents=True, exist_ok=True)
            run_directory(output_dir, init, chosen, seed, search=True).rename(target)
    shutil.rmtree(output_dir / SEARCH_DIR)
    write_json_atomic(output_dir / SEARCH_RECORD, record)
