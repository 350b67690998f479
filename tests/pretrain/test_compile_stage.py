"""pretrain.compile: true on CPU: the stage's training through `torch.compile` (DeepSpeed's
`engine.compile`, Inductor) gives the eager run's losses and weights, and exports the same
parameter names, loadable by transformers.

One rank in this process, the fixture project, no dropout (its masks would differ). Inductor
fuses and reorders float32 sums, so the runs agree to rounding, not bitwise: per-step losses
within 1e-4 relative (measured ~1e-6), weights within 1e-5 as in test_unpad.py.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from torch._dynamo.utils import counters

from tests.pretrain.test_unpad import WEIGHTS_ATOL, run_in_process, train_log_losses

pytestmark = pytest.mark.slow

LOSS_RTOL = 1e-4


def test_compiled_training_gives_the_eager_losses_weights_and_export(
    single_process_job, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    counters.clear()  # Dynamo's, which other tests of the session add to
    summaries = {False: run_in_process(tmp_path / "False", monkeypatch, compile=False)}
    assert counters["stats"]["unique_graphs"] == 0
    summaries[True] = run_in_process(tmp_path / "True", monkeypatch, compile=True)
    assert counters["stats"]["unique_graphs"] > 0  # Dynamo did compile the model
    eager, compiled = (
        train_log_losses(tmp_path / f"{flag}/metrics/pretrain_log.tsv") for flag in (False, True)
    )
    assert eager.shape == (6, 3)
    np.testing.assert_allclose(compiled, eager, rtol=LOSS_RTOL)
    assert summaries[True]["heldout"]["mlm_loss"] == pytest.approx(
        summaries[False]["heldout"]["mlm_loss"], rel=LOSS_RTOL
    )
    exports = {flag: tmp_path / f"{flag}/data/pretrained/model" for flag in (False, True)}
    expected, trained = (load_file(exports[flag] / "model.safetensors") for flag in (False, True))
    assert trained.keys() == expected.keys()  # no compiled-module prefix in the names
    for name in expected:
        torch.testing.assert_close(trained[name], expected[name], atol=WEIGHTS_ATOL, rtol=0)

    from transformers import BertForPreTraining

    model, info = BertForPreTraining.from_pretrained(exports[True], output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"], info
    word_embeddings = "bert.embeddings.word_embeddings.weight"
    torch.testing.assert_close(model.state_dict()[word_embeddings], trained[word_embeddings])
