"""Stage `pretrain`: data/examples + data/tokenizer → data/pretrained/{checkpoints,model}.

Reads params.yaml `pretrain` and checks the inputs (one-line errors, before any worker starts).
Unless it already runs under a launcher (torchrun, deepspeed), it starts `processes` ranks of
itself. The ranks train with DeepSpeed ZeRO, resuming from the latest complete checkpoint in
data/pretrained/checkpoints, evaluate on the held-out examples and export the model atomically
to data/pretrained/model; rank 0 writes metrics/pretrain.json and metrics/pretrain_log.tsv and
logs to MLflow. See docs/pretrain.md.
"""

from __future__ import annotations

import os
import sys
import traceback
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import replace
from pathlib import Path

from bertforge.io import atomic_outputs, sha256_file
from bertforge.model import WEIGHTS_FILE
from bertforge.params import flatten, load_section
from bertforge.pretrain.engine import (
    exit_without_teardown,
    process_group_threads,
    stop_distributed,
)
from bertforge.pretrain.inputs import PretrainInputs, check_inputs
from bertforge.pretrain.launch import check_gpu_count, launch_local_processes, under_launcher
from bertforge.pretrain.params import PretrainParams, PretrainPaths, default_processes
from bertforge.pretrain.train import pretrain
from bertforge.stage import run_stage
from bertforge.tracking import PRETRAINED_WEIGHTS_TAG, stage_run

PATHS = PretrainPaths()
METRICS = Path("metrics/pretrain.json")


def main() -> None:
    params = load_section(PretrainParams, "pretrain")
    launched = under_launcher()
    world_size = int(os.environ["WORLD_SIZE"]) if launched else default_processes(params)
    if not launched:
        check_gpu_count(world_size)  # one GPU per rank (a launcher's ranks: start_distributed)
    inputs = check_inputs(params, PATHS, world_size)
    if not launched and world_size > 1:
        sys.exit(launch_local_processes(world_size, [sys.executable, os.path.abspath(__file__)]))
    train_and_export(params, inputs)
    if stop_distributed():  # after success only; threads of a group a library still holds
        exit_without_teardown(0)


def train_and_export(params: PretrainParams, inputs: PretrainInputs) -> None:
    """This rank's training; rank 0 also swaps in the export and metrics and logs to MLflow."""
    tracked = {"examples": PATHS.examples, "tokenizer": PATHS.tokenizer}
    # rank 0 writes the export and metrics/pretrain.json, swapped in together at the end
    rank0 = os.environ.get("RANK", "0") == "0"
    parent_tags = inputs.parent.parent.tags() if inputs.parent else None  # pretrain.init_from
    with stage_run(
        "pretrain", params, inputs=tracked, tags=parent_tags, system_metrics=True
    ) as run:
        with atomic_outputs(PATHS.export, METRICS) if rank0 else nullcontext() as staged:
            paths = PATHS if staged is None else replace(PATHS, export=staged.directory)
            summary = pretrain(params, inputs, paths, log_metrics=run.log_metrics)
            if summary is None:  # not rank 0
                return
            staged.metrics = summary
        # the run is found from the weights (finetune, register): no run id in the export
        run.set_tags({PRETRAINED_WEIGHTS_TAG: sha256_file(PATHS.export / WEIGHTS_FILE)})
        run.log_metrics(flatten(summary))
        run.log_artifact(PATHS.export, "model")


def run_rank(stage: Callable[[], None]) -> None:
    """`run_stage(stage)`; a rank that fails leaves without the interpreter's teardown.

    Its one-line error (or traceback) is out, and its process groups are still up, on purpose
    (destroying a group other ranks use can hang them). The teardown would meet their threads
    and could abort ("terminate called without an active exception"), turning exit code 2 into
    134. The launcher has no groups and exits as usual.
    """
    try:
        run_stage(stage)
    except BaseException as leaving:
        if not process_group_threads():
            raise
        if isinstance(leaving, SystemExit):
            code = leaving.code if isinstance(leaving.code, int) else 1
        else:
            traceback.print_exc()
            code = 1
        exit_without_teardown(code)


if __name__ == "__main__":
    run_rank(main)
