"""pretrain.precision bf16 on a CPU as a user runs it: stages/pretrain.py with two DeepSpeed
processes over gloo (ZeRO-2), against the same training in fp32 (one rank in this process).

Only where the CPU has bf16 instructions (AMX or AVX512-BF16): elsewhere the stage refuses bf16
in one line (tests/pretrain/test_params.py). The bf16 run trains bf16 weights with fp32 master
weights in ZeRO's optimizer partitions; the export is those master weights, in float32.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from bertforge.pretrain.params import cpu_has_native_bf16
from tests.e2e.test_pretrain_stage import assert_succeeded, run_pretrain
from tests.factories import make_pretrain_project
from tests.pretrain.test_unpad import run_in_process
from tests.pretrain.test_unpad_stage import SAME_BATCHES

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not cpu_has_native_bf16(), reason="this CPU has no AMX or AVX512-BF16"),
]


def test_bf16_on_two_cpu_processes_trains_and_exports_float32_master_weights(
    single_process_job, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    bf16 = make_pretrain_project(
        tmp_path / "bf16", processes=2, precision="bf16", max_steps=12, **SAME_BATCHES
    )
    assert_succeeded(run_pretrain(bf16, tmp_path / "mlflow.db"))
    bf16_metrics = json.loads((bf16 / "metrics/pretrain.json").read_text(encoding="utf-8"))
    bf16_weights = load_file(bf16 / "data/pretrained/model/model.safetensors")
    # the reference: the same training in fp32, one rank in this process (the same updates as
    # two ranks without dropout and length bucketing: tests/pretrain/test_unpad_stage.py)
    fp32_metrics = run_in_process(tmp_path / "fp32", monkeypatch, max_steps=12, **SAME_BATCHES)
    fp32_weights = load_file(tmp_path / "fp32/data/pretrained/model/model.safetensors")
    assert bf16_metrics["train"]["nonfinite_steps"] == 0
    assert bf16_weights.keys() == fp32_weights.keys()
    assert all(tensor.dtype == torch.float32 for tensor in bf16_weights.values())
    # the master weights hold what bf16 rounds away: not all on bf16's grid
    word_embeddings = bf16_weights["bert.embeddings.word_embeddings.weight"]
    assert not torch.equal(word_embeddings, word_embeddings.bfloat16().float())
    # the same training, in another precision: the held-out loss agrees to a few per cent
    fp32_loss, bf16_loss = (m["heldout"]["mlm_loss"] for m in (fp32_metrics, bf16_metrics))
    assert abs(bf16_loss - fp32_loss) < 0.03 * fp32_loss
    moved = [
        (bf16_weights[name] - fp32_weights[name]).abs().max().item()
        for name in fp32_weights
        if fp32_weights[name].is_floating_point()
    ]
    assert max(moved) < 0.02
