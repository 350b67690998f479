"""The pretrain stage's training on a CUDA device in bf16 (DeepSpeed ZeRO-2, fp32 master weights
and gradient accumulation): unpadded batches train to the padded batches' losses.

Skipped where there is no CUDA device (`pytest -m gpu` selects these on a GPU machine). Each
run is the stage's own `pretrain` (one rank, this process) on the tiny fixture project, 12
steps of 2 accumulated micro-batches, no dropout (its masks differ by layout). Tolerance,
stated once: per-step losses within 2% relative in bf16 (one bf16 forward agrees within 1%,
tests/gpu/test_model_cuda.py; a run compounds the rounding over its steps; the same comparison
with DeepSpeed's bf16 engine on CPU, both kernels, measures ~5e-5) and the held-out MLM loss
within 2%.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from bertforge.pretrain.inputs import check_inputs
from bertforge.pretrain.train import pretrain
from tests.factories import (
    PRETRAIN_TINY_MODEL,
    make_pretrain_project,
    pretrain_params,
    pretrain_paths,
)

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]

BF16_RUN = 2e-2
BF16 = {
    "model": PRETRAIN_TINY_MODEL
    | {"hidden_dropout_prob": 0.0, "attention_probs_dropout_prob": 0.0},
    "precision": "bf16",
    "zero_stage": 2,
    "max_steps": 12,
    "checkpoint_every": 12,
}


def train_losses(root: Path, **overrides) -> tuple[np.ndarray, dict]:
    """(per-step loss, mlm_loss) of the stage's training in a fixture project, and its summary."""
    params = pretrain_params(**(BF16 | overrides))
    paths = pretrain_paths(make_pretrain_project(root))
    with pytest.MonkeyPatch.context() as patch:
        patch.delenv("TORCH_EXTENSIONS_DIR", raising=False)  # prepare_ops sets it
        summary = pretrain(params, check_inputs(params, paths, world_size=1), paths)
    rows = [line.split("\t") for line in paths.train_log.read_text(encoding="utf-8").splitlines()]
    columns = [rows[0].index("loss"), rows[0].index("mlm_loss")]
    return np.array([[float(row[c]) for c in columns] for row in rows[1:]]), summary


@pytest.fixture(scope="module")
def padded_run(cuda_job, tmp_path_factory: pytest.TempPathFactory) -> tuple[np.ndarray, dict]:
    return train_losses(tmp_path_factory.mktemp("padded"))


@pytest.mark.parametrize("attention", ["auto", "padded-sdpa"])  # auto: nested-sdpa on CUDA
def test_unpadded_bf16_pretraining_gives_the_padded_losses(
    cuda_job, padded_run, tmp_path: Path, attention: str
):
    padded, padded_summary = padded_run
    unpadded, summary = train_losses(tmp_path, unpad=True, unpad_attention=attention)
    assert summary["model"]["device"] == "cuda" and padded_summary["model"]["device"] == "cuda"
    assert padded.shape == unpadded.shape == (12, 2)
    assert np.isfinite(unpadded).all()
    np.testing.assert_allclose(unpadded, padded, rtol=BF16_RUN)
    assert padded[-1, 0] < padded[0, 0]  # it trained
    assert summary["heldout"]["mlm_loss"] == pytest.approx(
        padded_summary["heldout"]["mlm_loss"], rel=BF16_RUN
    )
    assert summary["train"]["tokens_per_s"] > 0
