"""BERT encoder and heads, with parameter names identical to transformers' BERT.

Modules, each about one thing, read top to bottom:

- `config`: `BertConfig`, the shape of a BERT, convertible to and from transformers' config.json;
- `layers`: one small `nn.Module` per idea (embeddings, self-attention, residual outputs, layer,
  encoder, pooler, pretraining heads);
- `layout`: how a batch lies in memory, `Padded` rows or `Unpadded` concatenated real tokens with
  cumulative sequence lengths, and `unpad_batch` to turn one into the other;
- `attention`: the attention kernels (masked SDPA; padded-sdpa, nested-sdpa and flash-attn for
  unpadded batches);
- `models`: `BertModel`, `BertForPreTraining` (sparse MLM head + NSP) and
  `BertForSequenceClassification`, with their outputs and BERT's initialisation;
- `export`: `save_pretrained` / `load_pretrained` in transformers' layout (safetensors);
- `training`: FLOPs per token (for MFU), parameter counts, AdamW's weight-decay groups.

Every public name is importable from `bertforge.model` itself, as callers have always done.
"""

from bertforge.constants import IGNORE_INDEX
from bertforge.model.attention import VARLEN_KERNELS
from bertforge.model.config import BertConfig
from bertforge.model.export import (
    CONFIG_FILE,
    WEIGHTS_FILE,
    LoadReport,
    load_pretrained,
    save_pretrained,
)
from bertforge.model.layers import (
    Attention,
    Embeddings,
    Encoder,
    Intermediate,
    Layer,
    LMPredictionHead,
    Pooler,
    PredictionHeadTransform,
    PreTrainingHeads,
    ResidualOutput,
    SelfAttention,
    layer_norm_where,
)
from bertforge.model.layout import Padded, Unpadded, unpad_batch
from bertforge.model.models import (
    BertForPreTraining,
    BertForSequenceClassification,
    BertModel,
    PretrainedBert,
    PreTrainingOutput,
    SequenceClassificationOutput,
    cross_entropy_with_counts,
    init_weights,
)
from bertforge.model.training import count_parameters, flops_per_token, optimizer_parameter_groups

__all__ = [
    "CONFIG_FILE",
    "IGNORE_INDEX",
    "VARLEN_KERNELS",
    "WEIGHTS_FILE",
    "Attention",
    "BertConfig",
    "BertForPreTraining",
    "BertForSequenceClassification",
    "BertModel",
    "Embeddings",
    "Encoder",
    "Intermediate",
    "LMPredictionHead",
    "Layer",
    "LoadReport",
    "Padded",
    "Pooler",
    "PreTrainingHeads",
    "PreTrainingOutput",
    "PredictionHeadTransform",
    "PretrainedBert",
    "ResidualOutput",
    "SelfAttention",
    "SequenceClassificationOutput",
    "Unpadded",
    "count_parameters",
    "cross_entropy_with_counts",
    "flops_per_token",
    "init_weights",
    "layer_norm_where",
    "load_pretrained",
    "optimizer_parameter_groups",
    "save_pretrained",
    "unpad_batch",
]
