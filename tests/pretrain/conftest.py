"""The pretrain fixture project (a tiny tokenizer and data/examples) and a one-rank job."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from bertforge.pretrain.engine import start_distributed
from bertforge.pretrain.launch import free_port
from tests.factories import make_pretrain_project


@pytest.fixture
def project(tmp_path: Path) -> Path:
    return make_pretrain_project(tmp_path)


@pytest.fixture(scope="session")
def single_process_job():
    """This test process as a DeepSpeed job of one rank (gloo), torn down after the session.

    One job for every module that needs it: DeepSpeed keeps its communication backend in a
    global, so a second job started after the first was destroyed would reuse a dead group.
    """
    with pytest.MonkeyPatch.context() as patch:
        job = {
            "RANK": "0",
            "LOCAL_RANK": "0",
            "WORLD_SIZE": "1",
            "MASTER_ADDR": "127.0.0.1",
            "MASTER_PORT": str(free_port()),
            "DS_ACCELERATOR": "cpu",
        }
        for name, value in job.items():
            patch.setenv(name, value)
        yield start_distributed()
        torch.distributed.destroy_process_group()
