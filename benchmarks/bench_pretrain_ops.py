"""Does skipping DeepSpeed's shared-memory op (deepspeed_shm_comm) cost CPU training speed?

Runs the pretrain stage on the test fixture project (hidden size 32, 2 layers) with 2 processes,
`--repeats` times per variant, alternating: with the op skipped (bertforge's default, nothing
compiled); with it built and loaded as DeepSpeed does by default (compiled on the first run,
~45 s, which is not timed: a warm-up run builds it); and skipped again with the same start-up
hook that the loaded variant needs (a control for the hook's own cost). Prints each run's wall
time and the training loop's tokens/s (metrics/pretrain.json), then their medians.

    .venv/bin/python benchmarks/bench_pretrain_ops.py [--steps 200] [--repeats 2]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.factories import make_pretrain_project  # noqa: E402

HOOKS = {  # run at interpreter start in every process of the job (sitecustomize)
    "loaded": "import bertforge.pretrain.ops as ops; ops.UNUSED_OPS = ()\n",
    "skipped, same hook": "import bertforge.pretrain.ops as ops\n",
}


def run(project: Path, variant: str, store: Path) -> tuple[float, float]:
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}
    env["MLFLOW_TRACKING_URI"] = f"sqlite:///{store}"
    if variant in HOOKS:
        hook = project / "hook"
        hook.mkdir(exist_ok=True)
        (hook / "sitecustomize.py").write_text(HOOKS[variant], encoding="utf-8")
        env["PYTHONPATH"] = str(hook)
    for stale in ("data/pretrained", "metrics"):
        subprocess.run(["rm", "-rf", str(project / stale)], check=True)
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
    built = "deepspeed_shm_comm_op built" in result.stdout + result.stderr
    if built != (variant == "loaded"):
        raise SystemExit(f"{variant}: the shm op was {'' if built else 'not '}loaded")
    metrics = json.loads((project / "metrics/pretrain.json").read_text(encoding="utf-8"))
    return wall, metrics["train"].get("tokens_per_s", float("nan"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        project = make_pretrain_project(
            Path(tmp) / "project",
            processes=2,
            max_steps=args.steps,
            checkpoint_every=args.steps,
            log_every=max(1, args.steps // 10),
        )
        store = Path(tmp) / "mlflow.db"
        run(project, "loaded", store)  # warm-up: builds the op once, creates the store
        results: dict[str, list[tuple[float, float]]] = {
            name: [] for name in ("skipped", "loaded", "skipped, same hook")
        }
        for _ in range(args.repeats):
            for name in results:
                results[name].append(run(project, name, store))
                print(name, *results[name][-1], flush=True)
    print(f"2 processes, {args.steps} steps, {os.cpu_count()} CPUs")
    print("| shm op | stage wall s (median) | tokens/s (median) |")
    print("|---|---:|---:|")
    for name, rows in results.items():
        walls, speeds = zip(*rows, strict=True)
        print(f"| {name} | {statistics.median(walls):.1f} | {statistics.median(speeds):.0f} |")


if __name__ == "__main__":
    main()
