"""GPU tests need no MLflow store: the GPU machine runs them without MLflow installed. The
pretraining tests share one DeepSpeed job of one rank on the GPU (NCCL)."""

from __future__ import annotations

import pytest

from tests.support import one_rank_job


@pytest.fixture(autouse=True)
def isolated_mlflow() -> None:
    """Replaces tests/conftest.py's fixture of the same name, which imports MLflow."""


@pytest.fixture(scope="session")
def cuda_job():
    """This test process as a DeepSpeed job of one rank on GPU 0, torn down after the session.

    One job for the session, as tests/pretrain/conftest.py's CPU job and for the same reason:
    DeepSpeed keeps its communication backend in a global.
    """
    with one_rank_job() as topology:
        yield topology
