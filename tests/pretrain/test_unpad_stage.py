"""pretrain.unpad as a user runs it: stages/pretrain.py with two DeepSpeed processes over gloo
(ZeRO-2), each rank training on unpadded micro-batches, against one padded process in this one.

Without length bucketing, two ranks of 8 examples read exactly what one rank's two accumulated
micro-batches of 8 read, and DeepSpeed averages the gradients over ranks as it averages them
over accumulation steps; so the two runs compute the same updates, in a different order of
sums (tolerance as in test_unpad.py: weights within 1e-5).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from tests.e2e.test_pretrain_stage import assert_succeeded, run_pretrain
from tests.factories import make_pretrain_project
from tests.pretrain.test_unpad import NO_DROPOUT, WEIGHTS_ATOL, run_in_process

pytestmark = pytest.mark.slow

SAME_BATCHES = {"model": NO_DROPOUT, "length_bucket_batches": 0}


def test_two_unpadded_processes_train_to_the_weights_of_one_padded_process(
    single_process_job, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    two = make_pretrain_project(tmp_path / "two", processes=2, unpad=True, **SAME_BATCHES)
    assert_succeeded(run_pretrain(two, tmp_path / "mlflow.db"))
    metrics = json.loads((two / "metrics/pretrain.json").read_text(encoding="utf-8"))
    assert metrics["model"]["processes"] == 2 and metrics["train"]["tokens_per_s"] > 0

    run_in_process(tmp_path / "one", monkeypatch, **SAME_BATCHES)  # padded, one rank
    expected = load_file(tmp_path / "one/data/pretrained/model/model.safetensors")
    trained = load_file(two / "data/pretrained/model/model.safetensors")
    assert trained.keys() == expected.keys()
    for name in expected:
        torch.testing.assert_close(trained[name], expected[name], atol=WEIGHTS_ATOL, rtol=0)
