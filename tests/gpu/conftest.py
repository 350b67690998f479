"""GPU tests need no MLflow store: the GPU machine runs them without MLflow installed. The
pretraining tests share one DeepSpeed job of one rank on the GPU (NCCL)."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture(autouse=True)
def isolated_mlflow() -> None:
    """Replaces tests/conftest.py's fixture of the same name, which imports MLflow."""


@pytest.fixture(scope="session")
def cuda_job():
    """This test process as a DeepSpeed job of one rank on GPU 0, torn down after the session.

    One job for the session, as tests/pretrain/conftest.py's CPU job and for the same reason:
    DeepSpeed keeps its communication backend in a global.
    """
    from bertforge.pretrain.engine import start_distributed
    from bertforge.pretrain.launch import free_port

    with pytest.MonkeyPatch.context() as patch:
        job = {
            "RANK": "0",
            "LOCAL_RANK": "0",
            "WORLD_SIZE": "1",
            "LOCAL_WORLD_SIZE": "1",
            "MASTER_ADDR": "127.0.0.1",
            "MASTER_PORT": str(free_port()),
        }
        for name, value in job.items():
            patch.setenv(name, value)
        yield start_distributed()
        torch.distributed.destroy_process_group()
