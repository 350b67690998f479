"""What a training loop needs besides `forward`: FLOPs per token, parameter counts, AdamW groups."""

from __future__ import annotations

from typing import Any

from torch import nn

from bertforge.model.config import BertConfig


def flops_per_token(config: BertConfig, seq_len: int, masked_fraction: float) -> float:
    """Training FLOPs (forward + backward) per real token, for model FLOPs utilisation.

    Matmuls only, each counted 2 FLOPs per multiply-add forward and twice that backward (6 per
    weight per token in all): the encoder's weights (4·H² attention + 2·H·I feed-forward per
    layer), attention scores and weighted sum (2·2·T·H per layer forward, 12·L·H·T for training),
    the MLM head (H² transform + H·V decoder) only on the `masked_fraction` of tokens that are
    predicted, and the pooler + NSP head once per sequence. Embedding lookups and elementwise
    work are not counted. `seq_len` is the number of keys a token attends to: the mean real
    length for model FLOPs (useful work), the padded length for the work the hardware does.
    """
    hidden, intermediate = config.hidden_size, config.intermediate_size
    layers, vocab = config.num_hidden_layers, config.vocab_size
    encoder_weights = layers * (4 * hidden * hidden + 2 * hidden * intermediate)
    attention = 12 * layers * hidden * seq_len
    mlm_head_weights = hidden * hidden + hidden * vocab
    sequence_head_weights = hidden * hidden + 2 * hidden
    return (
        6 * encoder_weights
        + attention
        + 6 * mlm_head_weights * masked_fraction
        + 6 * sequence_head_weights / seq_len
    )


def optimizer_parameter_groups(model: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """AdamW parameter groups as BERT trains: no weight decay on biases and LayerNorm parameters.

    Each parameter appears once (the tied embedding / decoder matrix is decayed, as in BERT).
    """
    # no weight decay on LayerNorm parameters and biases
    no_decay = {
        id(parameter)
        for module in model.modules()
        if isinstance(module, nn.LayerNorm)
        for parameter in module.parameters()
    }
    no_decay |= {id(p) for name, p in model.named_parameters() if name.endswith("bias")}
    parameters = list(model.parameters())
    return [
        {"params": [p for p in parameters if id(p) not in no_decay], "weight_decay": weight_decay},
        {"params": [p for p in parameters if id(p) in no_decay], "weight_decay": 0.0},
    ]


def count_parameters(model: nn.Module) -> int:
    """Distinct trainable parameters (a tied matrix counts once)."""
    return sum(parameter.numel() for parameter in model.parameters())
