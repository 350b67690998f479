"""The pretrain fixture project (a tiny tokenizer and data/examples) and a one-rank job."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.factories import make_pretrain_project
from tests.support import one_rank_job


@pytest.fixture
def project(tmp_path: Path) -> Path:
    return make_pretrain_project(tmp_path)


@pytest.fixture(scope="session")
def single_process_job():
    """This test process as a DeepSpeed job of one rank (gloo), torn down after the session.

    One job for every module that needs it: DeepSpeed keeps its communication backend in a
    global, so a second job started after the first was destroyed would reuse a dead group.
    """
    with one_rank_job(DS_ACCELERATOR="cpu") as topology:
        yield topology
