"""The pretrain stage's training without its script: `pretrain` in a job of one rank, no MLflow.

tests/gpu/test_pretrain_resume_cuda.py starts this as a subprocess (a kill must take a whole
process), kills it and starts it again. It runs in a fixture project
(tests.factories.make_pretrain_project) as ``python -m tests.gpu.resume_runner``, with the
repository root on PYTHONPATH, and does what stages/pretrain.py does for one process: reads
params.yaml's `pretrain`, checks the inputs, resumes from data/pretrained/checkpoints, exports
to data/pretrained/model and publishes metrics/pretrain_log.tsv. Unlike the stage it logs
nothing to MLflow (the GPU machine has no MLflow) and writes no metrics/pretrain.json. The
device is the stage's choice: CUDA where there is one, else CPU.
"""

from __future__ import annotations

from bertforge.params import load_section
from bertforge.pretrain.inputs import check_inputs
from bertforge.pretrain.params import PretrainParams, PretrainPaths
from bertforge.pretrain.train import pretrain
from bertforge.stage import run_stage
from tests.support import one_rank_job


def main() -> None:
    params = load_section(PretrainParams, "pretrain")
    paths = PretrainPaths()
    inputs = check_inputs(params, paths, world_size=1)
    with one_rank_job():
        pretrain(params, inputs, paths)


if __name__ == "__main__":
    run_stage(main)
