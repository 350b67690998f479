"""The model on a CUDA device: bf16 agrees with fp32, unpadded with padded, and a step never
waits on the device.

Skipped where there is no CUDA device (`pytest -m gpu` selects these on a GPU machine).
Tolerances, stated once here: bf16 loss within 1% of the fp32 loss and bf16 MLM logits within
2% mean absolute deviation (relative to their mean magnitude); on CPU the same comparison
measures ~1e-5 and ~0.5%. Unpadded against padded in fp32: 1e-4 absolute and relative (other
kernels sum in another order); in bf16 the bf16 tolerances above (NSP logits, ~0.04 in size at
initialisation, are checked in fp32 only: in bf16 their relative deviation is ~1% on CPU).
"""

from __future__ import annotations

import copy
import dataclasses
import importlib.util

import pytest
import torch

from bertforge.model import BertConfig, BertForPreTraining, Unpadded, unpad_batch
from tests.model.factories import pretraining_batch

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]

CONFIG = BertConfig(
    vocab_size=2000,
    hidden_size=256,
    num_hidden_layers=2,
    num_attention_heads=4,
    intermediate_size=1024,
    max_position_embeddings=128,
)
NO_DROPOUT = dataclasses.replace(CONFIG, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
LENGTHS = [128, 1, 100, 64, 17, 90, 128, 40]  # full length and a lone [CLS] among them
PREDICTIONS = [19, 0, 15, 10, 2, 13, 19, 6]
BF16_LOSS = 1e-2
BF16_LOGITS = 2e-2
FP32 = {"atol": 1e-4, "rtol": 1e-4}
FLASH_ATTN = pytest.param(
    "flash-attn",
    marks=pytest.mark.skipif(
        importlib.util.find_spec("flash_attn") is None, reason="flash-attn not installed"
    ),
)


def cuda_batch() -> dict[str, torch.Tensor]:
    batch = pretraining_batch(
        seed=3, lengths=LENGTHS, predictions=PREDICTIONS, vocab_size=CONFIG.vocab_size
    )
    return {key: value.cuda() for key, value in batch.items()}


def model_on_cuda(config: BertConfig = CONFIG) -> BertForPreTraining:
    return BertForPreTraining(config, torch.Generator().manual_seed(0)).cuda()


def relative_deviation(actual: torch.Tensor, expected: torch.Tensor) -> float:
    actual, expected = actual.float(), expected.float()
    return ((actual - expected).abs().mean() / expected.abs().mean()).item()


def test_bf16_autocast_loss_agrees_with_fp32():
    model, batch = model_on_cuda().eval(), cuda_batch()
    with torch.no_grad():
        fp32 = model(**batch)
        with torch.autocast("cuda", dtype=torch.bfloat16):
            bf16 = model(**batch)
    assert bf16.loss.dtype == torch.float32
    assert abs(bf16.loss.item() - fp32.loss.item()) < BF16_LOSS * fp32.loss.item()
    assert relative_deviation(bf16.mlm_logits, fp32.mlm_logits) < BF16_LOGITS


def test_bf16_weights_loss_agrees_with_fp32():
    """DeepSpeed's bf16 mode holds the module's weights in bf16 (LayerNorm included)."""
    model, batch = model_on_cuda().eval(), cuda_batch()
    bf16_model = copy.deepcopy(model).to(torch.bfloat16)
    with torch.no_grad():
        fp32, bf16 = model(**batch), bf16_model(**batch)
    assert abs(bf16.loss.item() - fp32.loss.item()) < BF16_LOSS * fp32.loss.item()
    assert relative_deviation(bf16.mlm_logits, fp32.mlm_logits) < BF16_LOGITS


@pytest.mark.parametrize("attention", ["padded-sdpa", "nested-sdpa"])
def test_unpadded_equals_padded_in_fp32(attention):
    model, batch = model_on_cuda().eval(), cuda_batch()
    with torch.no_grad():
        padded = model(**batch)
        unpadded = model(**unpad_batch(batch, attention))
    for field in ("mlm_logits", "nsp_logits", "loss"):
        torch.testing.assert_close(getattr(unpadded, field), getattr(padded, field), **FP32)


@pytest.mark.parametrize("attention", ["padded-sdpa", "nested-sdpa"])
def test_unpadded_gradients_equal_padded_in_fp32(attention):
    padded_model = model_on_cuda(NO_DROPOUT).train()
    unpadded_model = copy.deepcopy(padded_model)
    batch = cuda_batch()
    padded_model(**batch).loss.backward()
    unpadded_model(**unpad_batch(batch, attention)).loss.backward()
    unpadded_parameters = dict(unpadded_model.named_parameters())
    for name, parameter in padded_model.named_parameters():
        torch.testing.assert_close(unpadded_parameters[name].grad, parameter.grad, **FP32, msg=name)


@pytest.mark.parametrize("attention", ["padded-sdpa", "nested-sdpa", FLASH_ATTN])
def test_unpadded_agrees_with_padded_in_bf16(attention):
    model, batch = model_on_cuda().eval(), cuda_batch()
    with torch.no_grad(), torch.autocast("cuda", dtype=torch.bfloat16):
        padded = model(**batch)
        unpadded = model(**unpad_batch(batch, attention))
    assert abs(unpadded.loss.item() - padded.loss.item()) < BF16_LOSS * padded.loss.item()
    assert relative_deviation(unpadded.mlm_logits, padded.mlm_logits) < BF16_LOGITS


@pytest.mark.parametrize("attention", [None, "padded-sdpa", "nested-sdpa", FLASH_ATTN])
def test_training_step_makes_no_host_sync(attention):
    """Forward and backward queue work and return: no `.item()`, no size read off the device."""
    model = model_on_cuda().train()
    batch = cuda_batch() if attention is None else unpad_batch(cuda_batch(), attention)
    for check in (False, True):  # the first step creates kernels' handles and workspaces
        torch.cuda.set_sync_debug_mode("error" if check else "default")
        try:
            with torch.autocast("cuda", dtype=torch.bfloat16):
                loss = model(**batch).loss
            loss.backward()
        finally:
            torch.cuda.set_sync_debug_mode("default")
    assert torch.isfinite(loss).item()


def test_unpadded_layout_pins_and_moves_to_the_gpu_without_waiting():
    pinned = Unpadded.from_lengths([3, 1, 2]).pin_memory()
    assert pinned.cu_seqlens.is_pinned() and pinned.position_ids.is_pinned()
    moved = pinned.to("cuda", non_blocking=True)
    assert moved.cu_seqlens.is_cuda and moved.padded_index.is_cuda
    assert moved.cu_seqlens.tolist() == [0, 3, 4, 6] and moved.max_seqlen == 3
