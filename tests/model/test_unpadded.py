"""The unpadded layout computes what the padded one does: same logits, losses and gradients.

An unpadded batch holds only the real tokens of its rows, one after another, with cumulative
sequence lengths; every kernel that attends over it must give the padded path's numbers. The
batch below has a row of length 1 and a row of the model's full length (no padding at all).
Tolerance: 1e-5 absolute in float32, as for the parity with transformers; the sums run in
another order, and the largest differences measured are ~3e-8 (logits) and ~1.5e-8 (gradients).
"""

from __future__ import annotations

import dataclasses
import importlib.util

import pytest
import torch

from bertforge.errors import BertforgeError
from bertforge.model import (
    BertForPreTraining,
    BertForSequenceClassification,
    Unpadded,
    save_pretrained,
    unpad_batch,
)
from tests.model.factories import TINY, TOLERANCE, pretraining_batch, randomized, real_tokens

LENGTHS = [TINY.max_position_embeddings, 1, 13, 6]  # full length, a lone [CLS], two in between
PREDICTIONS = [5, 0, 2, 1]
CPU_KERNELS = ["padded-sdpa", "nested-sdpa"]
NO_DROPOUT = dataclasses.replace(TINY, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)


def batch_with_extremes() -> dict[str, torch.Tensor]:
    return pretraining_batch(lengths=LENGTHS, predictions=PREDICTIONS)


@pytest.mark.parametrize("attention", CPU_KERNELS)
@pytest.mark.parametrize("pre_layer_norm", [False, True], ids=["bert", "pre-ln"])
def test_unpadded_logits_and_losses_equal_padded(attention, pre_layer_norm):
    model = randomized(BertForPreTraining(dataclasses.replace(TINY, pre_layer_norm=pre_layer_norm)))
    batch = batch_with_extremes()
    with torch.no_grad():
        padded = model(**batch)
        unpadded = model(**unpad_batch(batch, attention))
    for field in ("mlm_logits", "nsp_logits", "loss", "mlm_loss", "nsp_loss"):
        torch.testing.assert_close(
            getattr(unpadded, field), getattr(padded, field), atol=TOLERANCE, rtol=0
        )
    for field in ("mlm_correct", "mlm_total", "nsp_correct", "nsp_total"):
        assert torch.equal(getattr(unpadded, field), getattr(padded, field)), field


@pytest.mark.parametrize("attention", CPU_KERNELS)
def test_unpadded_token_states_are_the_padded_rows_real_tokens_in_order(attention):
    model = randomized(BertForPreTraining(TINY))
    batch = batch_with_extremes()
    inputs = {key: batch[key] for key in ("input_ids", "token_type_ids", "attention_mask")}
    with torch.no_grad():
        padded_states, padded_pooled = model.bert(**inputs)
        states, pooled = model.bert(**unpad_batch(inputs, attention))
    assert states.shape == (sum(LENGTHS), TINY.hidden_size)
    mask = real_tokens(batch)
    torch.testing.assert_close(states, padded_states[mask], atol=TOLERANCE, rtol=0)
    torch.testing.assert_close(pooled, padded_pooled, atol=TOLERANCE, rtol=0)


@pytest.mark.parametrize("attention", CPU_KERNELS)
def test_unpadded_gradients_equal_padded(attention):
    padded_model = randomized(BertForPreTraining(NO_DROPOUT)).train()
    unpadded_model = randomized(BertForPreTraining(NO_DROPOUT)).train()
    batch = batch_with_extremes()
    padded_model(**batch).loss.backward()
    unpadded_model(**unpad_batch(batch, attention)).loss.backward()
    unpadded_grads = dict(unpadded_model.named_parameters())
    for name, parameter in padded_model.named_parameters():
        torch.testing.assert_close(
            unpadded_grads[name].grad, parameter.grad, atol=TOLERANCE, rtol=0, msg=name
        )


def test_sequence_classification_unpadded_equals_padded():
    model = randomized(BertForSequenceClassification(TINY, num_labels=3))
    batch = batch_with_extremes()
    inputs = {key: batch[key] for key in ("input_ids", "token_type_ids", "attention_mask")}
    labels = torch.tensor([2, 0, 1, 1])
    with torch.no_grad():
        padded = model(**inputs, labels=labels)
        unpadded = model(**unpad_batch(inputs), labels=labels)
    torch.testing.assert_close(unpadded.logits, padded.logits, atol=TOLERANCE, rtol=0)
    torch.testing.assert_close(unpadded.loss, padded.loss, atol=TOLERANCE, rtol=0)


def test_exported_weights_do_not_depend_on_the_layout_a_model_was_trained_in(tmp_path):
    padded_model = randomized(BertForPreTraining(NO_DROPOUT)).train()
    unpadded_model = randomized(BertForPreTraining(NO_DROPOUT)).train()
    batch = batch_with_extremes()
    for model, inputs in ((padded_model, batch), (unpadded_model, unpad_batch(batch))):
        optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
        model(**inputs).loss.backward()
        optimizer.step()
        save_pretrained(model, tmp_path / ("unpadded" if inputs is not batch else "padded"))
    assert (tmp_path / "padded" / "config.json").read_bytes() == (
        tmp_path / "unpadded" / "config.json"
    ).read_bytes()
    from safetensors.torch import load_file

    padded = load_file(tmp_path / "padded" / "model.safetensors")
    unpadded = load_file(tmp_path / "unpadded" / "model.safetensors")
    assert padded.keys() == unpadded.keys()
    for name, tensor in padded.items():
        torch.testing.assert_close(unpadded[name], tensor, atol=TOLERANCE, rtol=0, msg=name)


def test_positions_restart_with_every_sequence():
    unpadded = Unpadded.from_lengths([3, 1, 2])
    assert unpadded.cu_seqlens.tolist() == [0, 3, 4, 6]
    assert unpadded.cu_seqlens.dtype == torch.int32  # what variable-length kernels take
    assert unpadded.max_seqlen == 3
    assert unpadded.position_ids.tolist() == [0, 1, 2, 0, 0, 1]
    assert unpadded.padded_index.tolist() == [0, 1, 2, 3, 6, 7]  # slots in [3, max_seqlen]


def test_nsp_pools_each_sequences_first_token():
    unpadded = Unpadded.from_lengths([3, 1, 2])
    states = torch.arange(6.0)[:, None]
    assert unpadded.first_tokens(states).flatten().tolist() == [0.0, 3.0, 4.0]


def test_sparse_mlm_head_gathers_masked_positions_in_the_flat_layout():
    unpadded = Unpadded.from_lengths([3, 1, 2])
    states = torch.arange(6.0)[:, None]
    positions = torch.tensor([[1, 2], [0, 0], [1, 0]])  # row-local; padded slots point at 0
    gathered = unpadded.gather(states, positions)
    assert gathered.shape == (3, 2, 1)
    assert gathered.squeeze(-1).tolist() == [[1.0, 2.0], [3.0, 3.0], [5.0, 4.0]]


def test_unpad_batch_keeps_only_real_tokens_and_leaves_labels_alone():
    batch = batch_with_extremes()
    unpadded = unpad_batch(batch)
    mask = real_tokens(batch)
    assert torch.equal(unpadded["input_ids"], batch["input_ids"][mask])
    assert torch.equal(unpadded["token_type_ids"], batch["token_type_ids"][mask])
    assert unpadded["attention_mask"].max_seqlen == max(LENGTHS)
    for key in ("masked_lm_positions", "masked_lm_ids", "next_sentence_label"):
        assert unpadded[key] is batch[key]


def test_unpadded_step_compiles_as_one_graph():
    torch._dynamo.reset()
    compiled = torch.compile(BertForPreTraining(TINY), backend="eager", fullgraph=True)
    compiled(**unpad_batch(batch_with_extremes(), "padded-sdpa")).loss.backward()


def test_bf16_autocast_unpadded_step_is_finite_and_close_to_fp32():
    model = randomized(BertForPreTraining(TINY))
    batch = unpad_batch(batch_with_extremes())
    with torch.no_grad():
        fp32_loss = model(**batch).loss
    with torch.autocast("cpu", dtype=torch.bfloat16):
        output = model(**batch)
    output.loss.backward()
    assert output.loss.dtype == torch.float32
    assert abs(output.loss.item() - fp32_loss.item()) < 0.05 * fp32_loss.item()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


def test_a_mask_with_padding_before_real_tokens_is_an_error():
    mask = torch.tensor([[1, 1, 0], [0, 1, 1]])
    with pytest.raises(BertforgeError, match=r"^attention_mask must mark each row's real tokens"):
        Unpadded.from_mask(mask)


def test_an_empty_sequence_is_an_error():
    with pytest.raises(BertforgeError, match=r"^unpadded sequences need lengths of at least 1"):
        Unpadded.from_lengths([3, 0, 2])


def test_an_unknown_attention_kernel_is_an_error():
    with pytest.raises(BertforgeError, match=r"^attention must be one of"):
        Unpadded.from_lengths([3], attention="xformers")


@pytest.mark.skipif(importlib.util.find_spec("flash_attn") is not None, reason="installed")
def test_flash_attn_asked_for_but_not_installed_is_one_clear_error():
    with pytest.raises(BertforgeError, match=r"^attention 'flash-attn' needs the flash-attn"):
        Unpadded.from_lengths([3, 1], attention="flash-attn")
