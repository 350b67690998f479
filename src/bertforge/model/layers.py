"""BERT's building blocks, one small module per idea, each named as in transformers' BERT.

Every `forward` works per token except attention, which asks the batch's layout (`Padded` or
`Unpadded`, bertforge.model.layout) how to attend: the same modules run on padded [B, T, H]
states and on the concatenated real tokens [N, H] of an unpadded batch.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from bertforge.model.config import BertConfig
from bertforge.model.layout import Layout


def layer_norm_where(enabled: bool, config: BertConfig) -> nn.Module:
    """A LayerNorm where this variant (post- or pre-LN) has one, else a parameterless identity.

    Post-LN BERT normalises the embeddings and each residual sum; pre-LN normalises each
    sublayer's input and the encoder's output. Swapping modules rather than branching in
    `forward` keeps every forward identical for both variants and the state_dict names exact.
    """
    if enabled:
        return nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
    return nn.Identity()


class Embeddings(nn.Module):
    """Sum of word, learned absolute position and token-type (segment) embeddings."""

    def __init__(self, config: BertConfig) -> None:
        super().__init__()
        self.word_embeddings = nn.Embedding(
            config.vocab_size, config.hidden_size, padding_idx=config.pad_token_id
        )
        self.position_embeddings = nn.Embedding(config.max_position_embeddings, config.hidden_size)
        self.token_type_embeddings = nn.Embedding(config.type_vocab_size, config.hidden_size)
        self.LayerNorm = layer_norm_where(not config.pre_layer_norm, config)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)

    def forward(self, input_ids: Tensor, token_type_ids: Tensor, layout: Layout) -> Tensor:
        positions = layout.positions(input_ids)  # restart at 0 with every sequence
        embeddings = (
            self.word_embeddings(input_ids)
            + self.token_type_embeddings(token_type_ids)
            + self.position_embeddings(positions)
        )
        return self.dropout(self.LayerNorm(embeddings))


class SelfAttention(nn.Module):
    """Multi-head self-attention of each token over the real tokens of its own sequence.

    `query`, `key` and `value` keep transformers' names, but run as one matmul on their
    concatenated weights: one [H, 3H] product instead of three [H, H] ones, forward and backward.
    """

    def __init__(self, config: BertConfig) -> None:
        super().__init__()
        self.num_heads = config.num_attention_heads
        self.query = nn.Linear(config.hidden_size, config.hidden_size)
        self.key = nn.Linear(config.hidden_size, config.hidden_size)
        self.value = nn.Linear(config.hidden_size, config.hidden_size)
        self.dropout_prob = config.attention_probs_dropout_prob

    def forward(self, hidden_states: Tensor, layout: Layout) -> Tensor:
        projections = (self.query, self.key, self.value)
        weight = torch.cat([projection.weight for projection in projections])
        bias = torch.cat([projection.bias for projection in projections])
        qkv = F.linear(hidden_states, weight, bias)
        dropout_p = self.dropout_prob if self.training else 0.0
        return layout.attend(qkv, self.num_heads, dropout_p)


class ResidualOutput(nn.Module):
    """Project back to the hidden size, dropout and residual (post-LN: normalised).

    The output of both sublayers: `attention.output` (from the hidden size) and `output`
    (from the intermediate size).
    """

    def __init__(self, config: BertConfig, in_features: int) -> None:
        super().__init__()
        self.dense = nn.Linear(in_features, config.hidden_size)
        self.LayerNorm = layer_norm_where(not config.pre_layer_norm, config)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)

    def forward(self, projected: Tensor, residual: Tensor) -> Tensor:
        return self.LayerNorm(self.dropout(self.dense(projected)) + residual)


class Attention(nn.Module):
    """The attention sublayer: (pre-LN: normalise), attend, project, add the residual."""

    def __init__(self, config: BertConfig) -> None:
        super().__init__()
        self.ln = layer_norm_where(config.pre_layer_norm, config)
        self.self = SelfAttention(config)
        self.output = ResidualOutput(config, config.hidden_size)

    def forward(self, hidden_states: Tensor, layout: Layout) -> Tensor:
        return self.output(self.self(self.ln(hidden_states), layout), hidden_states)


class Intermediate(nn.Module):
    """Feed-forward expansion with exact (erf) GELU, as the original BERT."""

    def __init__(self, config: BertConfig) -> None:
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.intermediate_size)

    def forward(self, hidden_states: Tensor) -> Tensor:
        return F.gelu(self.dense(hidden_states))


class Layer(nn.Module):
    """One transformer block: attention sublayer, then feed-forward sublayer."""

    def __init__(self, config: BertConfig) -> None:
        super().__init__()
        self.attention = Attention(config)
        self.ln = layer_norm_where(config.pre_layer_norm, config)
        self.intermediate = Intermediate(config)
        self.output = ResidualOutput(config, config.intermediate_size)

    def forward(self, hidden_states: Tensor, layout: Layout) -> Tensor:
        attended = self.attention(hidden_states, layout)
        return self.output(self.intermediate(self.ln(attended)), attended)


class Encoder(nn.Module):
    """The stack of blocks (pre-LN: followed by a final LayerNorm)."""

    def __init__(self, config: BertConfig) -> None:
        super().__init__()
        self.layer = nn.ModuleList(Layer(config) for _ in range(config.num_hidden_layers))
        self.ln = layer_norm_where(config.pre_layer_norm, config)

    def forward(self, hidden_states: Tensor, layout: Layout) -> Tensor:
        for layer in self.layer:
            hidden_states = layer(hidden_states, layout)
        return self.ln(hidden_states)


class Pooler(nn.Module):
    """Sentence representation: dense + tanh on each sequence's [CLS] (first) token."""

    def __init__(self, config: BertConfig) -> None:
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.hidden_size)

    def forward(self, first_tokens: Tensor) -> Tensor:
        return torch.tanh(self.dense(first_tokens))


class PredictionHeadTransform(nn.Module):
    """MLM transform before the vocabulary projection: dense, GELU, LayerNorm."""

    def __init__(self, config: BertConfig) -> None:
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.hidden_size)
        self.LayerNorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)

    def forward(self, hidden_states: Tensor) -> Tensor:
        return self.LayerNorm(F.gelu(self.dense(hidden_states)))


class LMPredictionHead(nn.Module):
    """Vocabulary logits: transform, then the word embeddings transposed plus an output bias.

    `decoder` is a Linear whose weight *is* the word-embedding matrix and whose bias *is*
    `bias` (`tie_to`), exactly as transformers ties them; both names appear in the state_dict
    but export writes each tensor once, under `bias` and the embedding's name.
    """

    def __init__(self, config: BertConfig) -> None:
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(config.vocab_size))
        self.transform = PredictionHeadTransform(config)
        self.decoder = nn.Linear(config.hidden_size, config.vocab_size)

    def tie_to(self, word_embeddings: nn.Embedding) -> None:
        self.decoder.weight = word_embeddings.weight
        self.decoder.bias = self.bias

    def forward(self, hidden_states: Tensor) -> Tensor:
        return self.decoder(self.transform(hidden_states))


class PreTrainingHeads(nn.Module):
    """MLM head (on whatever positions it is given) and NSP head (on the pooled output)."""

    def __init__(self, config: BertConfig) -> None:
        super().__init__()
        self.predictions = LMPredictionHead(config)
        self.seq_relationship = nn.Linear(config.hidden_size, 2)
