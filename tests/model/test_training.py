"""What the training loop takes from the model: AdamW's weight-decay groups, FLOPs per token."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from bertforge.model import BertForPreTraining, flops_per_token, optimizer_parameter_groups
from tests.model.factories import TINY


@pytest.mark.parametrize("pre_layer_norm", [False, True], ids=["bert", "pre-ln"])
def test_weight_decay_skips_biases_and_layer_norms_and_covers_each_parameter_once(
    pre_layer_norm,
):
    model = BertForPreTraining(dataclasses.replace(TINY, pre_layer_norm=pre_layer_norm))
    decayed, not_decayed = optimizer_parameter_groups(model, weight_decay=0.01)
    assert decayed["weight_decay"] == 0.01 and not_decayed["weight_decay"] == 0.0
    names = {id(p): name for name, p in model.named_parameters()}
    decayed_names = {names[id(p)] for p in decayed["params"]}
    assert len(decayed["params"]) + len(not_decayed["params"]) == len(names)
    assert "bert.embeddings.word_embeddings.weight" in decayed_names
    assert "bert.encoder.layer.0.attention.self.query.weight" in decayed_names
    assert all(not name.endswith("bias") for name in decayed_names)
    assert all(p.dim() == 2 for p in decayed["params"])  # LayerNorm weights are 1-D


def test_flops_per_token_counts_six_flops_per_matmul_weight_plus_attention():
    model = BertForPreTraining(TINY)
    encoder_weights = sum(
        module.weight.numel()
        for module in model.bert.encoder.modules()
        if isinstance(module, torch.nn.Linear)
    )
    head = model.cls.predictions
    head_weights = head.transform.dense.weight.numel() + head.decoder.weight.numel()
    pooled_weights = (
        model.bert.pooler.dense.weight.numel() + model.cls.seq_relationship.weight.numel()
    )
    seq_len, fraction = 64, 0.15
    expected = (
        6 * encoder_weights
        + 12 * TINY.num_hidden_layers * TINY.hidden_size * seq_len
        + 6 * head_weights * fraction
        + 6 * pooled_weights / seq_len
    )
    assert flops_per_token(TINY, seq_len, fraction) == pytest.approx(expected)
