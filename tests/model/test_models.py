"""bertforge.model against transformers' BERT: same logits, same losses, same gradients."""

from __future__ import annotations

import copy
import dataclasses

import pytest
import torch

from bertforge.model import (
    IGNORE_INDEX,
    BertForPreTraining,
    BertForSequenceClassification,
    cross_entropy_with_counts,
)
from bertforge.model.attention import attend_padded
from tests.model.factories import (
    LENGTHS,
    PREDICTIONS,
    TINY,
    TOLERANCE,
    dense_mlm_labels,
    encoder_inputs,
    pretraining_batch,
    randomized,
    real_tokens,
    reference_for,
)


@pytest.mark.parametrize("pre_layer_norm", [False, True], ids=["bert", "pre-ln=megatron-bert"])
def test_mlm_and_nsp_logits_equal_transformers(pre_layer_norm):
    config = dataclasses.replace(TINY, pre_layer_norm=pre_layer_norm)
    ours = randomized(BertForPreTraining(config))
    reference = reference_for(ours, head=0)
    batch = pretraining_batch()
    with torch.no_grad():
        output = ours(**batch)
        dense = ours.prediction_logits(**encoder_inputs(batch))
        expected = reference(**encoder_inputs(batch))
    rows = torch.arange(len(LENGTHS))[:, None]
    expected_at_masked = expected.prediction_logits[rows, batch["masked_lm_positions"]]
    torch.testing.assert_close(output.mlm_logits, expected_at_masked, atol=TOLERANCE, rtol=0)
    mask = real_tokens(batch)
    torch.testing.assert_close(
        dense[mask], expected.prediction_logits[mask], atol=TOLERANCE, rtol=0
    )
    torch.testing.assert_close(
        output.nsp_logits, expected.seq_relationship_logits, atol=TOLERANCE, rtol=0
    )


def test_pre_layer_norm_runs_and_differs_from_post_layer_norm():
    post = randomized(BertForPreTraining(TINY))
    pre = BertForPreTraining(dataclasses.replace(TINY, pre_layer_norm=True)).eval()
    pre.load_state_dict(post.state_dict(), strict=False)
    batch = pretraining_batch()
    with torch.no_grad():
        difference = (pre(**batch).mlm_logits - post(**batch).mlm_logits).abs().max()
    assert difference > 1e-2
    assert "bert.encoder.ln.weight" in pre.state_dict()
    assert "bert.embeddings.LayerNorm.weight" not in pre.state_dict()


def test_loss_matches_transformers():
    ours = randomized(BertForPreTraining(TINY))
    reference = reference_for(ours, head=0)
    batch = pretraining_batch()
    nsp_labels = batch["next_sentence_label"]
    with torch.no_grad():
        output = ours(**batch)
        expected = reference(
            **encoder_inputs(batch),
            labels=dense_mlm_labels(batch),
            next_sentence_label=torch.where(nsp_labels < 0, IGNORE_INDEX, nsp_labels),
        )
    torch.testing.assert_close(output.loss, expected.loss, atol=TOLERANCE, rtol=0)
    loss = torch.nn.functional.cross_entropy
    nsp_labelled = nsp_labels >= 0
    expected_nsp = loss(expected.seq_relationship_logits[nsp_labelled], nsp_labels[nsp_labelled])
    torch.testing.assert_close(output.nsp_loss, expected_nsp, atol=TOLERANCE, rtol=0)
    torch.testing.assert_close(
        output.mlm_loss, expected.loss - expected_nsp, atol=TOLERANCE, rtol=0
    )


def test_accuracy_counts_cover_labelled_positions_only():
    ours = randomized(BertForPreTraining(TINY))
    batch = pretraining_batch()
    with torch.no_grad():
        output = ours(**batch)
    labelled = batch["masked_lm_ids"] != IGNORE_INDEX
    hits = output.mlm_logits.argmax(-1) == batch["masked_lm_ids"]
    assert output.mlm_total.item() == sum(PREDICTIONS)
    assert output.mlm_correct.item() == (hits & labelled).sum().item()
    nsp_hits = output.nsp_logits.argmax(-1)[:2] == batch["next_sentence_label"][:2]
    assert output.nsp_total.item() == 2
    assert output.nsp_correct.item() == nsp_hits.sum().item()


def test_a_hit_is_a_label_with_the_row_s_largest_logit_ties_included():
    logits = torch.tensor(
        [
            [0.1, 2.0, -1.0],  # label 1 is the largest: a hit
            [3.0, 2.0, -1.0],  # label 1 is not: a miss
            [1.5, 1.5, 0.0],  # label 1 ties with the largest: a hit
            [9.0, 0.0, 0.0],  # unlabelled: neither
        ]
    )
    labels = torch.tensor([1, 1, 1, IGNORE_INDEX])
    _, correct, total = cross_entropy_with_counts(logits, labels)
    assert (correct.item(), total.item()) == (2, 3)


def test_batch_without_nsp_labels_gives_zero_nsp_loss_not_nan():
    ours = randomized(BertForPreTraining(TINY))
    batch = pretraining_batch() | {"next_sentence_label": torch.tensor([-1, -1, -100])}
    output = ours(**batch)
    assert output.nsp_loss.item() == 0 and output.nsp_total.item() == 0
    assert torch.isfinite(output.loss) and output.loss.item() == output.mlm_loss.item()


@pytest.mark.parametrize("num_labels", [3, 1], ids=["classification", "regression"])
def test_sequence_classification_logits_and_loss_equal_transformers(num_labels):
    ours = randomized(BertForSequenceClassification(TINY, num_labels))
    reference = reference_for(ours, head=1)
    batch = encoder_inputs(pretraining_batch())
    labels = torch.tensor([2, 0, 1]) if num_labels > 1 else torch.tensor([0.5, -1.0, 2.0])
    with torch.no_grad():
        output = ours(**batch, labels=labels)
        expected = reference(**batch, labels=labels)
    torch.testing.assert_close(output.logits, expected.logits, atol=TOLERANCE, rtol=0)
    torch.testing.assert_close(output.loss, expected.loss, atol=TOLERANCE, rtol=0)


def test_padding_does_not_change_outputs_of_real_tokens():
    ours = randomized(BertForPreTraining(TINY))
    batch = pretraining_batch()
    extra = 9
    padded = {
        key: torch.nn.functional.pad(batch[key], (0, extra), value=7 if key == "input_ids" else 0)
        if key in ("input_ids", "token_type_ids", "attention_mask")
        else batch[key]
        for key in batch
    }  # padding ids 7, not even [PAD]: the mask alone must keep padding out
    with torch.no_grad():
        output, padded_output = ours(**batch), ours(**padded)
        states, _ = ours.bert(**encoder_inputs(batch))
        padded_states, _ = ours.bert(**encoder_inputs(padded))
    mask = real_tokens(batch)
    padded_mask = real_tokens(padded)
    torch.testing.assert_close(padded_states[padded_mask], states[mask], atol=TOLERANCE, rtol=0)
    for field in ("mlm_logits", "nsp_logits", "loss"):
        torch.testing.assert_close(
            getattr(padded_output, field), getattr(output, field), atol=TOLERANCE, rtol=0
        )


def test_tied_embedding_gets_gradient_from_both_decoder_and_embedding_lookup():
    tied = randomized(BertForPreTraining(TINY)).train()
    assert tied.cls.predictions.decoder.weight is tied.bert.embeddings.word_embeddings.weight
    untied = copy.deepcopy(tied)
    untied.cls.predictions.decoder.weight = torch.nn.Parameter(
        tied.bert.embeddings.word_embeddings.weight.detach().clone()
    )
    batch = pretraining_batch()
    for model in (tied, untied):
        torch.manual_seed(0)  # same dropout masks
        model(**batch).loss.backward()
    from_lookup = untied.bert.embeddings.word_embeddings.weight.grad
    from_decoder = untied.cls.predictions.decoder.weight.grad
    assert from_lookup.abs().sum() > 0 and from_decoder.abs().sum() > 0
    torch.testing.assert_close(
        tied.bert.embeddings.word_embeddings.weight.grad, from_lookup + from_decoder
    )


def test_initialization_is_berts():
    model = BertForPreTraining(dataclasses.replace(TINY, vocab_size=2000, hidden_size=64))
    state = model.state_dict()
    embedding = state["bert.embeddings.word_embeddings.weight"]
    assert torch.equal(embedding[0], torch.zeros(64))  # [PAD] row
    assert abs(embedding[1:].std().item() - 0.02) < 0.001
    assert abs(state["bert.encoder.layer.0.intermediate.dense.weight"].std().item() - 0.02) < 0.002
    assert torch.equal(state["bert.encoder.layer.0.attention.self.query.bias"], torch.zeros(64))
    assert torch.equal(state["cls.predictions.bias"], torch.zeros(2000))
    assert torch.equal(state["bert.encoder.layer.1.output.LayerNorm.weight"], torch.ones(64))


def test_initial_weights_are_a_function_of_the_generator_seed():
    def weights(seed: int) -> dict[str, torch.Tensor]:
        return BertForPreTraining(TINY, torch.Generator().manual_seed(seed)).state_dict()

    first, again, other = weights(1), weights(1), weights(2)
    assert all(torch.equal(first[name], again[name]) for name in first)
    assert not torch.equal(
        first["bert.encoder.layer.0.attention.self.key.weight"],
        other["bert.encoder.layer.0.attention.self.key.weight"],
    )


def test_bf16_autocast_training_step_is_finite_and_close_to_fp32():
    ours = randomized(BertForPreTraining(TINY))
    batch = pretraining_batch()
    with torch.no_grad():
        fp32_loss = ours(**batch).loss
    with torch.autocast("cpu", dtype=torch.bfloat16):
        output = ours(**batch)
    output.loss.backward()
    assert output.loss.dtype == torch.float32
    assert abs(output.loss.item() - fp32_loss.item()) < 0.05 * fp32_loss.item()
    assert all(torch.isfinite(p.grad).all() for p in ours.parameters() if p.grad is not None)


def test_bf16_weights_training_step_is_finite_and_close_to_fp32():
    # the stage's bf16 (DeepSpeed's engine casts the module's weights to bf16), here on a CPU
    ours = randomized(BertForPreTraining(TINY))
    batch = pretraining_batch()
    with torch.no_grad():
        fp32_loss = ours(**batch).loss
    bf16 = copy.deepcopy(ours).to(torch.bfloat16)
    output = bf16(**batch)
    output.loss.backward()
    assert output.loss.dtype == torch.float32
    assert abs(output.loss.item() - fp32_loss.item()) < 0.05 * fp32_loss.item()
    grads = [p.grad for p in bf16.parameters() if p.grad is not None]
    assert grads and all(g.dtype == torch.bfloat16 and torch.isfinite(g).all() for g in grads)


def test_bf16_attention_on_a_cpu_is_close_to_float32_and_returns_bf16():
    # torch's CPU flash kernel is several times slower backward in bf16: attend_padded upcasts
    generator = torch.Generator().manual_seed(0)
    qkv = torch.randn(2, 7, 3 * 16, generator=generator)
    key_mask = (torch.arange(7) < torch.tensor([[7], [4]]))[:, None, None, :]
    expected = attend_padded(qkv, key_mask, num_heads=2, dropout_p=0.0)
    low = qkv.to(torch.bfloat16).requires_grad_()
    context = attend_padded(low, key_mask, num_heads=2, dropout_p=0.0)
    assert context.dtype == torch.bfloat16
    torch.testing.assert_close(context.float(), expected, atol=0.03, rtol=0.03)
    context.sum().backward()
    assert low.grad.dtype == torch.bfloat16 and torch.isfinite(low.grad).all()


def test_pretraining_step_compiles_as_one_graph():
    torch._dynamo.reset()
    compiled = torch.compile(BertForPreTraining(TINY), backend="eager", fullgraph=True)
    compiled(**pretraining_batch()).loss.backward()
