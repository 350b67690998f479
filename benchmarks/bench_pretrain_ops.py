"""The pretrain stage's CPU speed, variant against variant: DeepSpeed's shared-memory op,
(`--unpad`) padded against unpadded batches, (`--loss-normalisation`) the MLM loss
normalised per micro-batch against over the global batch, (`--compile`) eager against
compiled, or (`--precision`) fp32 against bf16.

Every run is the stage itself (stages/pretrain.py, 2 processes over gloo) in a temporary
project; the variants alternate, `--repeats` times each (every other round in reverse order), so
machine noise hits them alike; each run's stage wall time and its training loop's speed are
printed, then their medians.

Default — does skipping DeepSpeed's shared-memory op (deepspeed_shm_comm) cost CPU training
speed? On the test fixture project (hidden size 32, 2 layers): with the op skipped
(bertforge's default, nothing compiled); with it built and loaded as DeepSpeed does by default
(compiled on the first run, ~45 s, which is not timed: a warm-up run builds it); and skipped
again with the same start-up hook that the loaded variant needs (a control for the hook's own
cost).

`--unpad` — does `pretrain.unpad: true` slow the default pipeline on CPU? The default pipeline's
pretraining (params.yaml's `pretrain` section: its model, 2 processes, batch 32, length buckets)
on the real examples (data/examples, data/tokenizer: run `dvc pull` or the pipeline first),
`--steps` steps per run, with `unpad` false and true (after a 2-step warm-up run, not counted).
Training speed is the loop's real tokens/s (metrics/pretrain.json: padding not counted, start-up
and the final evaluation not included) and its seconds per step.

    .venv/bin/python benchmarks/bench_pretrain_ops.py [--steps 200] [--repeats 3]
    .venv/bin/python benchmarks/bench_pretrain_ops.py --unpad [--steps 200] [--repeats 3]

`--loss-normalisation` — does `pretrain.mlm_loss_normalisation: global_batch` (one extra
all-reduce of the step's masked-token count before its first backward) slow the default
pipeline's pretraining? The same runs as `--unpad`, with the two normalisations as variants.

    .venv/bin/python benchmarks/bench_pretrain_ops.py --loss-normalisation [--steps 200]

`--compile` — does `pretrain.compile: true` pay on CPU? The same runs, eager against compiled,
each compiled run with an empty Inductor cache (TORCHINDUCTOR_CACHE_DIR), as on a fresh machine.
Besides the columns above, the median tokens/s of the rows logged after the first (every
`steps / 10` steps, in metrics/pretrain_log.tsv): the speed once compiled.

    .venv/bin/python benchmarks/bench_pretrain_ops.py --compile [--steps 400] [--repeats 1]

`--precision` — how much faster is `pretrain.precision: bf16` on a CPU with AMX or AVX512-BF16
(elsewhere the stage refuses it)? The same runs, fp32 against bf16; `--hidden-size` (with
`--layers`, `--heads`) for a wider model than the default's, whose larger matrices gain more.
Every pipeline comparison also prints each variant's held-out MLM accuracy (median).

    .venv/bin/python benchmarks/bench_pretrain_ops.py --precision [--steps 200] [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

from bertforge.pretrain.progress import TrainingLog

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from machine import machine  # noqa: E402

from tests.factories import make_pretrain_project  # noqa: E402

HOOKS = {  # run at interpreter start in every process of the job (sitecustomize)
    "loaded": "import bertforge.pretrain.ops as ops; ops.UNUSED_OPS = ()\n",
    "skipped, same hook": "import bertforge.pretrain.ops as ops\n",
}
COMPARISONS = {  # flag: (the table's first column, each variant's pretrain params)
    "unpad": ("batches", {"padded": {"unpad": False}, "unpadded": {"unpad": True}}),
    "loss_normalisation": (
        "MLM loss",
        {
            "micro_batch": {"mlm_loss_normalisation": "micro_batch"},
            "global_batch": {"mlm_loss_normalisation": "global_batch"},
        },
    ),
    "compile": ("model", {"eager": {"compile": False}, "compiled": {"compile": True}}),
    "precision": ("precision", {"fp32": {"precision": "fp32"}, "bf16": {"precision": "bf16"}}),
}


def run(
    project: Path, store: Path, hook: str | None = None, env_extra: dict[str, str] | None = None
) -> tuple[float, dict[str, Any], str]:
    """One stage run in `project`: its wall seconds, metrics/pretrain.json, its log."""
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}
    env["MLFLOW_TRACKING_URI"] = f"sqlite:///{store}"
    env |= env_extra or {}
    if hook is not None:
        folder = project / "hook"
        folder.mkdir(exist_ok=True)
        (folder / "sitecustomize.py").write_text(hook, encoding="utf-8")
        env["PYTHONPATH"] = str(folder)
    for stale in ("data/pretrained", "metrics"):
        shutil.rmtree(project / stale, ignore_errors=True)
    start = time.perf_counter()
    result = subprocess.run(
        [sys.executable, str(ROOT / "stages/pretrain.py")],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
    )
    wall = time.perf_counter() - start
    if result.returncode != 0:
        raise SystemExit(result.stderr[-3000:])
    metrics = json.loads((project / "metrics/pretrain.json").read_text(encoding="utf-8"))
    return wall, metrics, result.stdout + result.stderr


Results = dict[str, list[tuple[float, ...]]]
"""Each variant's runs: (stage wall s, training tokens/s[, training s/step, tokens/s of the
logged rows after the first, held-out MLM accuracy])."""


def later_rows_tokens_per_s(project: Path) -> float:
    """The median tokens/s of metrics/pretrain_log.tsv's rows after the first (past start-up,
    and past compiling when the model is compiled)."""
    rows = TrainingLog(project / "metrics/pretrain_log.tsv").rows()
    return statistics.median(row["tokens_per_s"] for row in rows[1:])


def compare_shm_op(args: argparse.Namespace, tmp: Path) -> Results:
    project = make_pretrain_project(
        tmp / "project",
        processes=2,
        max_steps=args.steps,
        checkpoint_every=args.steps,
        log_every=max(1, args.steps // 10),
    )
    store = tmp / "mlflow.db"
    run(project, store, HOOKS["loaded"])  # warm-up: builds the op once, creates the store
    results: Results = {name: [] for name in ("skipped", "loaded", "skipped, same hook")}
    for _ in range(args.repeats):
        for name in results:
            wall, metrics, log = run(project, store, HOOKS.get(name))
            built = "deepspeed_shm_comm_op built" in log
            if built != (name == "loaded"):
                raise SystemExit(f"{name}: the shm op was {'' if built else 'not '}loaded")
            results[name].append((wall, metrics["train"].get("tokens_per_s", float("nan"))))
            print(name, *results[name][-1], flush=True)
    print(f"2 processes, {args.steps} steps, {machine()}")
    return results


def default_pipeline_project(directory: Path, steps: int, overrides: dict[str, Any]) -> Path:
    """params.yaml's pretraining for `steps` steps, reading the repository's real examples."""
    params = yaml.safe_load((ROOT / "params.yaml").read_text(encoding="utf-8"))
    params["pretrain"] |= {
        "max_steps": steps,
        "checkpoint_every": steps,  # one checkpoint, at the end
        "log_every": max(1, steps // 10),
        **overrides,
    }
    shutil.rmtree(directory / "data/pretrained", ignore_errors=True)
    (directory / "data").mkdir(parents=True, exist_ok=True)
    for name in ("examples", "tokenizer"):
        link = directory / "data" / name
        if not link.exists():
            link.symlink_to(ROOT / "data" / name, target_is_directory=True)
    (directory / "params.yaml").write_text(yaml.safe_dump(params), encoding="utf-8")
    return directory


def model_shape(args: argparse.Namespace, model: dict[str, Any]) -> dict[str, Any]:
    """`model` (params.yaml's `pretrain.model`) with `--hidden-size/--layers/--heads`
    (feed-forward 4× hidden), or `model` itself without `--hidden-size`."""
    if args.hidden_size is None:
        return model
    return model | {
        "hidden_size": args.hidden_size,
        "num_hidden_layers": args.layers,
        "num_attention_heads": args.heads,
        "intermediate_size": 4 * args.hidden_size,
    }


def compare_pipeline_variants(
    args: argparse.Namespace, tmp: Path, variants: dict[str, dict[str, Any]]
) -> Results:
    """The default pipeline's pretraining, `variants` (name: pretrain params) alternating."""
    if not (ROOT / "data/examples/meta.json").is_file():
        raise SystemExit(f"{ROOT / 'data/examples'}: no examples (dvc pull, or run the pipeline)")
    store = tmp / "mlflow.db"
    pretrain = yaml.safe_load((ROOT / "params.yaml").read_text(encoding="utf-8"))["pretrain"]
    model = model_shape(args, pretrain["model"])
    projects = {
        name: default_pipeline_project(tmp / name, args.steps, {"model": model, **overrides})
        for name, overrides in variants.items()
    }
    run(default_pipeline_project(tmp / "warm-up", 2, {}), store)  # file caches, MLflow store
    results: Results = {name: [] for name in projects}
    for repeat in range(args.repeats):
        # every other round in reverse, so neither variant always runs first
        for name in list(projects)[:: 1 if repeat % 2 == 0 else -1]:
            project = projects[name]
            cold_cache = {"TORCHINDUCTOR_CACHE_DIR": tempfile.mkdtemp(dir=tmp)}  # compiled runs
            wall, metrics, _ = run(project, store, env_extra=cold_cache)
            train = metrics["train"]
            seconds_per_step = train["seconds"] / args.steps
            steady = later_rows_tokens_per_s(project)
            accuracy = metrics["heldout"]["mlm_accuracy"]
            results[name].append((wall, train["tokens_per_s"], seconds_per_step, steady, accuracy))
            print(name, *(f"{value:.4g}" for value in results[name][-1]), flush=True)
    print(
        f"default pipeline's pretraining: {pretrain['processes']} processes, hidden "
        f"{model['hidden_size']}, {model['num_hidden_layers']} layers, global batch "
        f"{pretrain['global_batch_size']}, length_bucket_batches "
        f"{pretrain['length_bucket_batches']}, unpad_attention {pretrain['unpad_attention']}, "
        f"mlm_loss_normalisation {pretrain['mlm_loss_normalisation']} (where not the variant); "
        f"{args.steps} steps per run; {machine()}; data/examples/train"
    )
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    comparison = parser.add_mutually_exclusive_group()
    comparison.add_argument("--unpad", action="store_true", help="padded against unpadded batches")
    comparison.add_argument(
        "--loss-normalisation", action="store_true", help="MLM loss per micro-batch against global"
    )
    comparison.add_argument("--compile", action="store_true", help="eager against compiled")
    comparison.add_argument("--precision", action="store_true", help="fp32 against bf16")
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--hidden-size", type=int, default=None, help="another model width")
    parser.add_argument("--layers", type=int, default=2, help="with --hidden-size")
    parser.add_argument("--heads", type=int, default=4, help="with --hidden-size")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    comparison = next((flag for flag in COMPARISONS if getattr(args, flag)), None)
    pipeline = comparison is not None
    with tempfile.TemporaryDirectory() as tmp:
        if comparison is None:
            results, first = compare_shm_op(args, Path(tmp)), "shm op"
        else:
            first, variants = COMPARISONS[comparison]
            results = compare_pipeline_variants(args, Path(tmp), variants)
    columns = ["stage wall s", "tokens/s (training loop)"]
    if pipeline:
        columns += [
            "s/step (training loop)",
            "tokens/s (logged rows after the first)",
            "held-out MLM accuracy",
        ]
    print(f"| {first} | " + " | ".join(f"{column}, median" for column in columns) + " |")
    print("|---|" + "---:|" * len(columns))
    for name, rows in results.items():
        medians = [statistics.median(values) for values in zip(*rows, strict=True)]
        formats = [".1f", ".0f", ".4f", ".0f", ".4f"]
        cells = " | ".join(f"{value:{spec}}" for value, spec in zip(medians, formats, strict=False))
        print(f"| {name} | {cells} |")
    if pipeline:  # the second variant against the first (unpadded / padded, ...)
        first_name, second_name = results
        for column, what in ((1, "training tokens/s"), (3, "tokens/s after the first row")):
            first_speed, second_speed = (
                statistics.median(row[column] for row in results[name])
                for name in (first_name, second_name)
            )
            print(
                f"{second_name} / {first_name}, {what} (medians): {second_speed / first_speed:.3f}x"
            )


if __name__ == "__main__":
    main()
