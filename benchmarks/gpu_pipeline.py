"""The pipeline's chain on one GPU, without DVC or MLflow: ingest → vocab → examples → pretrain →
fine-tune (pretrained and scratch) on the embedded corpus and tasks, through the library's own
stage functions, in a temporary working copy. For machines that have torch (CUDA) but not dvc or
mlflow (benchmarks/gpu_check.sh runs it there); on CPU, `--tiny` rehearses the same path.

    python benchmarks/gpu_pipeline.py --out summary.json                     # GPU: bf16 BERT-small
    python benchmarks/gpu_pipeline.py --out summary.json --seeds 0 1 2 --workers 6
    python benchmarks/gpu_pipeline.py --tiny --out /tmp/summary.json         # CPU rehearsal

Prints and writes a JSON summary: each step's seconds, pretraining throughput (real tokens/s,
MFU) and held-out MLM/NSP accuracy against the unigram baseline, and each task's test metric for
the pretrained and the from-scratch encoder beside the evaluate stage's majority and
bag-of-words baselines fit on the same training subset. With `--lrs`, each (task, init) is
fine-tuned at every learning rate listed and keeps the one with the best dev score, averaged
over the seeds (test is reported for that one; a recipe sized for the CPU default model need not
suit a larger one). With `--seeds`, every (task, init, rate) runs once per seed, and the kept
runs are evaluated as the evaluate stage does (`bertforge.evaluate`: mean over seeds, standard
errors from the test bootstrap and the seed spread, at-floor verdicts): the summary's
"evaluation" is the stage's metrics/eval.json, and the report beside the summary (.md) its
reports/eval.md. One seed is a smoke check of quality; three make a result. Fine-tuning runs
where `bertforge.finetune.train` puts it: the GPU when there is one; `--workers N` trains N runs
at once, one process each (on a GPU they share it: a small model's runs are bound by Python and
kernel launches, so several at once keep the GPU busier). The summary file is rewritten after
every step and every finished task, so a run cut short by a time limit still leaves what it
finished.

`--compare-unpad STEPS` then pretrains the same model again from fresh weights, STEPS steps
each, with `pretrain.unpad` false and true (same batches, same params otherwise; on CUDA
unpadded twice, with the nested-sdpa and the padded-sdpa kernel): the stage's own throughput
padded against unpadded on the real examples, and how far their losses differ.
"""

from __future__ import annotations

import argparse
import collections
import dataclasses
import gc
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from bertforge.constants import TASK_SPLITS  # noqa: E402
from bertforge.evaluate.baselines import fit_baselines  # noqa: E402
from bertforge.evaluate.report import render_report  # noqa: E402
from bertforge.evaluate.results import (  # noqa: E402
    EvaluateParams,
    evaluate_results,
    headline_errors,
)
from bertforge.examples.params import ExamplesParams  # noqa: E402
from bertforge.examples.write import check_inputs as check_examples_inputs  # noqa: E402
from bertforge.examples.write import write_examples  # noqa: E402
from bertforge.finetune.data import encode_split  # noqa: E402
from bertforge.finetune.params import FinetuneParams  # noqa: E402
from bertforge.finetune.pretrained import (  # noqa: E402
    check_pretrained_export,
    load_export_tokenizer,
)
from bertforge.finetune.runs import choose_learning_rate  # noqa: E402
from bertforge.finetune.tasks import TaskData, load_task  # noqa: E402
from bertforge.finetune.train import DEVICE as FINETUNE_DEVICE  # noqa: E402
from bertforge.finetune.train import train_seed  # noqa: E402
from bertforge.ingest.params import IngestParams  # noqa: E402
from bertforge.ingest.pipeline import ingest  # noqa: E402
from bertforge.ingest.sources import resolve_sources  # noqa: E402
from bertforge.parallel import ordered_parallel_map  # noqa: E402
from bertforge.params import parse  # noqa: E402
from bertforge.pretrain.engine import exit_without_teardown, stop_distributed  # noqa: E402
from bertforge.pretrain.inputs import check_inputs as check_pretrain_inputs  # noqa: E402
from bertforge.pretrain.params import PretrainParams, PretrainPaths  # noqa: E402
from bertforge.pretrain.train import pretrain  # noqa: E402
from bertforge.tokenizer.files import write_tokenizer  # noqa: E402
from bertforge.vocab.params import VocabParams  # noqa: E402
from bertforge.vocab.train import train_tokenizer  # noqa: E402

SMALL = {
    "hidden_size": 512,
    "num_hidden_layers": 4,
    "num_attention_heads": 8,
    "intermediate_size": 2048,
}  # BERT-small (Turc et al. 2019)
TINY = {
    "hidden_size": 64,
    "num_hidden_layers": 2,
    "num_attention_heads": 2,
    "intermediate_size": 128,
}


def timed(summary: dict[str, Any], name: str, function, *args, **kwargs):
    started = time.perf_counter()
    result = function(*args, **kwargs)
    summary.setdefault("seconds", {})[name] = round(time.perf_counter() - started, 1)
    print(f"{name}: {summary['seconds'][name]} s", flush=True)
    return result


TINY_CORPUS = "data/raw/corpus/jargon.txt.xz"  # 1.1 MB of text, of the corpus's 20


def section(params: dict[str, Any], name: str, cls: type, **overrides: Any) -> Any:
    return parse(cls, params[name] | overrides, f"params.yaml: {name}")


def save(summary: dict[str, Any], out: Path) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(summary, indent=2, default=str) + "\n", encoding="utf-8")


def compare_unpad(params: PretrainParams, steps: int) -> dict[str, Any]:
    """The same pretraining, `steps` steps, padded and unpadded (on CUDA with each of its two
    unpadded kernels, nested-sdpa and padded-sdpa): throughput and loss agreement."""
    import torch

    kernels = ["nested-sdpa", "padded-sdpa"] if torch.cuda.is_available() else ["padded-sdpa"]
    variants = {"padded": (False, params.unpad_attention)} | {
        f"unpadded {kernel}": (True, kernel) for kernel in kernels
    }
    runs: dict[str, Any] = {}
    losses = {}
    for name, (unpad, kernel) in variants.items():
        run_params = dataclasses.replace(
            params,
            unpad=unpad,
            unpad_attention=kernel,
            max_steps=steps,
            warmup_steps=max(1, steps // 10),
            checkpoint_every=steps,
            log_every=10,
        )
        folder = Path("data/compare") / name.replace(" ", "-")
        paths = PretrainPaths(
            checkpoints=folder / "checkpoints",
            export=folder / "model",
            train_log=folder / "log.tsv",
        )
        inputs = check_pretrain_inputs(run_params, paths, 1)
        result = pretrain(run_params, inputs, paths)
        rows = [line.split("\t") for line in paths.train_log.read_text().splitlines()]
        losses[name] = np.array([float(row[rows[0].index("loss")]) for row in rows[1:]])
        runs[name] = {
            key: result["train"][key] for key in ("tokens_per_s", "mfu", "seconds", "final_loss")
        } | {"heldout_mlm_accuracy": result["heldout"]["mlm_accuracy"]}
        print(f"pretrain {name}, {steps} steps: {runs[name]}", flush=True)
        runs[name]["loss_every_10_steps"] = losses[name].round(5).tolist()  # where they part
        gc.collect()  # the finished run's engine, before the next one allocates
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    for kernel in kernels:
        name = f"unpadded {kernel}"
        deviation = np.abs(losses[name] - losses["padded"]) / losses["padded"]
        runs[f"{name} over padded tokens_per_s"] = (
            runs[name]["tokens_per_s"] / runs["padded"]["tokens_per_s"]
        )
        runs[f"{name} loss_max_relative_deviation"] = float(deviation.max())
    return runs


# --- fine-tuning: every (task, init, learning rate, seed), in worker processes ----------------

_WORKER: dict[str, Any] = {}  # a worker's params, export and encoded tasks (_start_finetune_worker)


def _start_finetune_worker(
    params: FinetuneParams, names: list[str], model_dir: Path, threads: int
) -> None:
    """Load the export and encode every task once per worker (or in this process)."""
    import torch

    torch.set_num_threads(threads)
    config = check_pretrained_export(
        model_dir, Path("data/tokenizer/vocab.txt"), params.max_seq_length
    )
    tokenizer = load_export_tokenizer(model_dir)
    tasks = {}
    for name in names:
        task = load_task(name, params.task(name))
        encoded = {
            split: encode_split(tokenizer, task, task.split(split), params.max_seq_length)
            for split in TASK_SPLITS
        }
        tasks[name] = (task, encoded)
    _WORKER.update(params=params, model_dir=model_dir, config=config, tasks=tasks)


def _finetune_run(run: tuple[str, str, float, int]) -> dict[str, Any]:
    """One (task, init, learning rate, seed): its metrics and test predictions (no weights)."""
    name, init, lr, seed = run
    task, encoded = _WORKER["tasks"][name]
    params = _WORKER["params"].for_task_training(name).at_rate(lr)
    _, result = train_seed(
        task, encoded, init, seed, _WORKER["model_dir"], _WORKER["config"], params
    )
    return {
        "init": init,
        "seed": seed,
        "best_epoch": result.best_epoch,
        "dev": result.metrics["dev"],
        "test": result.metrics["test"],
        "predictions": result.predictions,  # dev and test
        "seconds": result.seconds,
    }


def summarize_task(
    task: TaskData,
    runs: dict[tuple[str, float, int], dict[str, Any]],
    params: FinetuneParams,
    learning_rates: list[float],
    evaluate_params: EvaluateParams,
) -> tuple[dict[str, Any], tuple[dict, list], dict, dict]:
    """A task's learning rate per init (best mean dev score over the seeds), its scores beside
    the baselines, and what evaluate_results needs: (task.json, seed metrics), the baselines
    and the headline split's bootstrap errors."""
    split = evaluate_params.headline_split
    scores: dict[str, Any] = {}
    chosen = {}
    for init in params.inits:
        chosen[init], tried = choose_learning_rate(
            {
                lr: [
                    {part: runs[init, lr, seed][part]["score"] for part in ("dev", "test")}
                    for seed in params.seeds
                ]
                for lr in learning_rates
            }
        )
        scores[init] = tried[chosen[init]][split]
        scores[f"{init}_lr"] = chosen[init]
        scores[f"{init}_runs"] = {str(lr): tried[lr] for lr in tried}
    seed_metrics = [
        {key: runs[init, chosen[init], seed][key] for key in ("init", "seed", "dev", "test")}
        for init in params.inits
        for seed in params.seeds
    ]
    baselines = fit_baselines(task)
    scores |= {model: run.metrics[split]["score"] for model, run in baselines.items()}
    predictions = {
        init: [runs[init, chosen[init], seed]["predictions"][split] for seed in params.seeds]
        for init in params.inits
    }
    errors = headline_errors(task, evaluate_params, predictions, baselines)
    return scores, (task.describe(), seed_metrics), baselines, errors


def finetune_all(
    summary: dict[str, Any],
    args: argparse.Namespace,
    params: FinetuneParams,
    evaluate_params: EvaluateParams,
    names: list[str],
    model_dir: Path,
) -> None:
    """Fine-tune every (task, init, learning rate, seed) in `args.workers` processes (on a GPU
    they share it), keep each (task, init)'s learning rate with the best mean dev score, and
    evaluate as the evaluate stage does: summary["finetune"], ["evaluation"] and the report
    beside `args.out` (.md). A task is summarised as soon as its runs are in."""
    rates = {name: args.lrs or params.for_task_training(name).learning_rates for name in names}
    runs = [
        (name, init, lr, seed)
        for name in names
        for init in params.inits
        for lr in rates[name]  # a task's own, where it sets them
        for seed in params.seeds
    ]
    runs_of = collections.Counter(name for name, *_ in runs)  # a task is summarised once all in
    workers = min(args.workers, len(runs))
    threads = max(1, len(os.sched_getaffinity(0)) // workers)
    print(f"fine-tuning: {len(runs)} runs in {workers} process(es)", flush=True)
    done: dict[str, dict[tuple[str, float, int], dict[str, Any]]] = {name: {} for name in names}
    summary["finetune"] = {}
    results, baselines, bootstrap = {}, {}, {}
    outcomes = ordered_parallel_map(
        _finetune_run,
        runs,
        workers,
        initializer=_start_finetune_worker,
        initargs=(params, names, model_dir, threads),
        param="--workers",
    )
    summary["finetune_runs"] = []  # every run's scores as it arrives: a cut run keeps them
    for (name, init, lr, seed), outcome in zip(runs, outcomes, strict=True):
        done[name][init, lr, seed] = outcome
        run_scores = {split: outcome[split]["score"] for split in ("dev", "test")}
        summary["finetune_runs"].append(
            {"task": name, "init": init, "lr": lr, "seed": seed, **run_scores}
            | {key: outcome[key] for key in ("best_epoch", "seconds")}
        )
        print(
            f"finetune {name} {init} lr {lr} seed {seed}: dev {run_scores['dev']:.4f}, "
            f"test {run_scores['test']:.4f} ({outcome['seconds']:.0f} s)",
            flush=True,
        )
        save(summary, args.out)
        if len(done[name]) < runs_of[name]:
            continue
        task = load_task(name, params.task(name))
        scores, results[name], baselines[name], bootstrap[name] = summarize_task(
            task, done.pop(name), params, rates[name], evaluate_params
        )
        summary["finetune"][name] = scores | {"bootstrap_error": bootstrap[name]}
        save(summary, args.out)
    split = evaluate_params.headline_split
    evaluation = evaluate_results(results, params.inits, params.seeds, split, baselines, bootstrap)
    summary["evaluation"] = evaluation
    summary["finetune_test_average"] = {  # the evaluation's average, in brief
        model: round(evaluation["average"][split][model]["mean"], 4)
        for model in (*params.inits, "majority", "bag_of_words")
    }
    args.out.with_suffix(".md").write_text(render_report(evaluation), encoding="utf-8")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument(
        "--tiny", action="store_true", help="CPU rehearsal: one book, tiny model and budget"
    )
    parser.add_argument("--steps", type=int, default=None, help="pretraining steps")
    parser.add_argument("--batch", type=int, default=256, help="global batch (GPU)")
    parser.add_argument("--tasks", nargs="+", help="fine-tuning tasks (default: all)")
    parser.add_argument(
        "--lrs", type=float, nargs="+", help="fine-tuning learning rates, best on dev kept"
    )
    parser.add_argument(
        "--seeds", type=int, nargs="+", default=[0], help="fine-tuning seeds (default: 0)"
    )
    parser.add_argument(
        "--workers", type=int, default=1, help="fine-tuning runs at once, one process each"
    )
    parser.add_argument("--examples-out", type=Path, help="keep a copy of data/examples here")
    parser.add_argument(
        "--compare-unpad", type=int, default=0, metavar="STEPS", help="padded vs unpadded runs"
    )
    args = parser.parse_args()
    if args.workers < 1:  # refused before any work, in one line
        sys.exit(f"error: --workers must be at least 1, got {args.workers}")

    import torch

    cuda = torch.cuda.is_available() and not args.tiny
    params = yaml.safe_load((REPO / "params.yaml").read_text(encoding="utf-8"))
    summary: dict[str, Any] = {
        "device": torch.cuda.get_device_name() if cuda else "cpu",
        "date": time.strftime("%Y-%m-%d", time.gmtime()),
        "finetune_device": str(FINETUNE_DEVICE),
    }
    work = Path(tempfile.mkdtemp(prefix="bertforge-gpu-"))
    shutil.copytree(REPO / "data" / "raw", work / "data" / "raw")
    os.chdir(work)
    try:
        # the CPU rehearsal reads one of the corpus's four books, for a vocabulary of 4,000
        tiny = {"sources": [{"path": TINY_CORPUS}], "num_proc": 1} if args.tiny else {}
        ingest_params = section(
            params, "ingest", IngestParams, **({"num_proc": min(8, os.cpu_count())} | tiny)
        )
        ingested = Path("data/ingested")
        timed(
            summary,
            "ingest",
            ingest,
            ingest_params,
            resolve_sources(ingest_params),
            ingested,
            show_progress=False,
        )
        vocab_params = section(
            params, "vocab", VocabParams, **({"vocab_size": 4000} if args.tiny else {})
        )
        tokenizer = timed(summary, "vocab", train_tokenizer, ingested / "train", vocab_params)
        Path("data/tokenizer").mkdir(parents=True)
        write_tokenizer(tokenizer, Path("data/tokenizer"), vocab_params)
        examples_params = section(
            params, "examples", ExamplesParams, num_proc=min(8, os.cpu_count())
        )
        inputs = check_examples_inputs(ingested, Path("data/tokenizer"), examples_params)
        timed(
            summary,
            "examples",
            write_examples,
            inputs,
            Path("data/examples"),
            examples_params,
            progress=False,
        )
        if args.examples_out:
            shutil.rmtree(args.examples_out, ignore_errors=True)
            shutil.copytree("data/examples", args.examples_out)

        steps = args.steps or (20 if args.tiny else 3000)
        pretrain_overrides: dict[str, Any] = {
            "model": params["pretrain"]["model"] | (TINY if args.tiny else SMALL),
            "processes": 1,
            "max_steps": steps,
            "warmup_steps": max(1, steps // 10),
            "checkpoint_every": steps,
            "eval_every": 0,
        }
        if cuda:
            pretrain_overrides |= {
                "precision": "bf16",
                "micro_batch_size": args.batch,
                "global_batch_size": args.batch,
                "lr": 1e-3,
            }
        else:
            pretrain_overrides |= {"micro_batch_size": 8, "global_batch_size": 8}
        pretrain_params = section(params, "pretrain", PretrainParams, **pretrain_overrides)
        paths = PretrainPaths()
        pretrain_inputs = check_pretrain_inputs(pretrain_params, paths, 1)
        result = timed(summary, "pretrain", pretrain, pretrain_params, pretrain_inputs, paths)
        summary["pretrain"] = {
            "steps": steps,
            "model": pretrain_overrides["model"],
            "precision": pretrain_params.precision,
            "summary": result,
        }
        save(summary, args.out)

        finetune_overrides: dict[str, Any] = {"seeds": args.seeds, "processes": 1}
        if args.tiny:  # the CPU rehearsal: one short epoch per task
            tasks = params["finetune"]["tasks"]
            finetune_overrides["epochs"] = 1
            finetune_overrides["tasks"] = {
                name: spec | {"max_train_examples": 200} for name, spec in tasks.items()
            }
        finetune_params = section(params, "finetune", FinetuneParams, **finetune_overrides)
        evaluate_params = section(params, "evaluate", EvaluateParams)
        names = [name for name in finetune_params.tasks if not args.tasks or name in args.tasks]
        started = time.perf_counter()
        finetune_all(summary, args, finetune_params, evaluate_params, names, paths.export)
        summary["seconds"]["finetune"] = round(time.perf_counter() - started, 1)
        save(summary, args.out)
        if args.compare_unpad:
            summary["compare_unpad"] = timed(
                summary, "compare-unpad", compare_unpad, pretrain_params, args.compare_unpad
            )
    finally:
        os.chdir(REPO)
        shutil.rmtree(work, ignore_errors=True)
    lingering = stop_distributed()  # the pretraining's job of one, left as the stage leaves it
    save(summary, args.out)
    print(json.dumps(summary, indent=2, default=str))
    if lingering:  # a group a library still holds: its threads would meet the teardown
        exit_without_teardown(0)


if __name__ == "__main__":
    main()
