"""BERT encoder and heads, with parameter names identical to transformers' BERT.

Read top to bottom: the config, one small module per idea (embeddings, self-attention, the
residual outputs, layer, encoder, pooler, pretraining heads), the three models, then export and
the FLOPs formula. Every parameter is named exactly as in transformers' `BertForPreTraining` /
`BertForSequenceClassification` state_dict, so an export is config.json + model.safetensors with
no conversion table, and transformers' `from_pretrained` loads it with no missing or unexpected
keys. With ``pre_layer_norm`` the LayerNorms move in front of each sublayer (plus one final
LayerNorm, none on the embeddings) under the names transformers' Megatron-BERT uses, so that
variant exports as ``model_type: megatron-bert`` and loads there just as well.

What makes training fast without changing the maths:
- attention is `torch.nn.functional.scaled_dot_product_attention` (fused kernels, no [T, T]
  probabilities kept for backward where the kernel allows), fed by one Q/K/V matmul;
- the MLM head (transform + the vocabulary projection, the largest matmul of a small BERT) runs
  only on the gathered ``masked_lm_positions``, about 15% of tokens, instead of on every position;
- padding: the model takes padded [B, T] batches with a key mask; compute spent on padding is
  avoided by the batches, not the model: batch examples of similar length together (length
  buckets) and pad each batch only to its longest row. Padded positions never influence real
  ones (keys are masked), so outputs of real tokens do not depend on how much padding a batch has.
- no data-dependent Python control flow or host synchronisation in `forward`: the step is
  `torch.compile`-able, and accuracy counts come back as tensors for the loop to reduce when it
  logs.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, ClassVar, Literal, NamedTuple

import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torch import Tensor, nn

from bertforge.errors import BertforgeError
from bertforge.io import write_json_atomic
from bertforge.params import require

IGNORE_INDEX = -100
"""Label value that takes no part in a loss: padded MLM slots, examples without an NSP label."""

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"


@dataclass(frozen=True)
class BertConfig:
    """The shape and regularisation of a BERT; defaults are BERT-base (uncased vocabulary).

    Field names and meanings are transformers' `BertConfig`, so `to_hf_dict` is a plain copy.
    The class also parses as a params.yaml section (`bertforge.params.load_section`).
    """

    vocab_size: int = 30522
    hidden_size: int = 768
    num_hidden_layers: int = 12
    num_attention_heads: int = 12
    intermediate_size: int = 3072
    hidden_act: Literal["gelu"] = "gelu"
    hidden_dropout_prob: float = 0.1
    attention_probs_dropout_prob: float = 0.1
    max_position_embeddings: int = 512
    type_vocab_size: int = 2
    layer_norm_eps: float = 1e-12
    initializer_range: float = 0.02
    pad_token_id: int = 0
    pre_layer_norm: bool = False

    def __post_init__(self) -> None:
        sizes = (
            "vocab_size",
            "hidden_size",
            "num_hidden_layers",
            "num_attention_heads",
            "intermediate_size",
            "max_position_embeddings",
            "type_vocab_size",
        )
        for name in sizes:
            require(getattr(self, name) >= 1, name, "must be at least 1", getattr(self, name))
        require(
            self.hidden_size % self.num_attention_heads == 0,
            "hidden_size",
            f"must be a multiple of num_attention_heads ({self.num_attention_heads})",
            self.hidden_size,
        )
        require(self.hidden_act == "gelu", "hidden_act", "must be 'gelu'", self.hidden_act)
        for name in ("hidden_dropout_prob", "attention_probs_dropout_prob"):
            require(0 <= getattr(self, name) < 1, name, "must be in [0, 1)", getattr(self, name))
        require(self.layer_norm_eps > 0, "layer_norm_eps", "must be positive", self.layer_norm_eps)
        require(
            self.initializer_range > 0,
            "initializer_range",
            "must be positive",
            self.initializer_range,
        )
        require(
            0 <= self.pad_token_id < self.vocab_size,
            "pad_token_id",
            f"must be a token id in [0, {self.vocab_size})",
            self.pad_token_id,
        )

    @property
    def hf_class_prefix(self) -> str:
        """Prefix of the transformers classes that hold this architecture."""
        return "MegatronBert" if self.pre_layer_norm else "Bert"

    def to_hf_dict(self, architectures: Sequence[str] | None = None) -> dict[str, Any]:
        """A transformers config.json for this architecture (default: the pretraining model)."""
        hf = {name: value for name, value in asdict(self).items() if name != "pre_layer_norm"}
        hf |= {
            "model_type": "megatron-bert" if self.pre_layer_norm else "bert",
            "architectures": list(architectures or [f"{self.hf_class_prefix}ForPreTraining"]),
            "is_decoder": False,
            "add_cross_attention": False,
            "tie_word_embeddings": True,
            "dtype": "float32",
        }
        if not self.pre_layer_norm:
            hf["classifier_dropout"] = None
        return hf

    @classmethod
    def from_hf_dict(cls, hf: Mapping[str, Any]) -> BertConfig:
        """Read a transformers BERT / Megatron-BERT config.json; other architectures are errors.

        Keys this model has no use for (label maps, versions) are ignored; settings it does not
        implement (decoder mode, relative positions, another activation) are refused.
        """
        model_type = hf.get("model_type")
        if model_type not in ("bert", "megatron-bert"):
            raise BertforgeError(
                f"model_type must be 'bert' or 'megatron-bert', got {model_type!r}"
            )
        unsupported = {
            "is_decoder": False,
            "add_cross_attention": False,
            "position_embedding_type": "absolute",
        }
        for key, supported in unsupported.items():
            if hf.get(key, supported) != supported:
                raise BertforgeError(f"{key} must be {supported!r}, got {hf[key]!r}")
        known = {field.name for field in fields(cls)} - {"pre_layer_norm"}
        values = {key: hf[key] for key in known if key in hf}
        return cls(**values, pre_layer_norm=model_type == "megatron-bert")


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

    def forward(self, input_ids: Tensor, token_type_ids: Tensor) -> Tensor:
        positions = torch.arange(input_ids.shape[1], device=input_ids.device)
        embeddings = (
            self.word_embeddings(input_ids)
            + self.token_type_embeddings(token_type_ids)
            + self.position_embeddings(positions)
        )
        return self.dropout(self.LayerNorm(embeddings))


class SelfAttention(nn.Module):
    """Multi-head self-attention over the real tokens of each row (padding keys are masked).

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

    def forward(self, hidden_states: Tensor, key_mask: Tensor) -> Tensor:
        """`key_mask` [B, 1, 1, T] bool: True where a key is a real token."""
        batch, length, hidden = hidden_states.shape
        projections = (self.query, self.key, self.value)
        weight = torch.cat([projection.weight for projection in projections])
        bias = torch.cat([projection.bias for projection in projections])
        qkv = F.linear(hidden_states, weight, bias)
        qkv = qkv.view(batch, length, 3, self.num_heads, hidden // self.num_heads)
        query, key, value = qkv.permute(2, 0, 3, 1, 4).unbind(0)  # each [B, heads, T, head_dim]
        context = F.scaled_dot_product_attention(
            query,
            key,
            value,
            attn_mask=key_mask,
            dropout_p=self.dropout_prob if self.training else 0.0,
        )
        return context.transpose(1, 2).reshape(batch, length, hidden)


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

    def forward(self, hidden_states: Tensor, key_mask: Tensor) -> Tensor:
        return self.output(self.self(self.ln(hidden_states), key_mask), hidden_states)


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

    def forward(self, hidden_states: Tensor, key_mask: Tensor) -> Tensor:
        attended = self.attention(hidden_states, key_mask)
        return self.output(self.intermediate(self.ln(attended)), attended)


class Encoder(nn.Module):
    """The stack of blocks (pre-LN: followed by a final LayerNorm)."""

    def __init__(self, config: BertConfig) -> None:
        super().__init__()
        self.layer = nn.ModuleList(Layer(config) for _ in range(config.num_hidden_layers))
        self.ln = layer_norm_where(config.pre_layer_norm, config)

    def forward(self, hidden_states: Tensor, key_mask: Tensor) -> Tensor:
        for layer in self.layer:
            hidden_states = layer(hidden_states, key_mask)
        return self.ln(hidden_states)


class Pooler(nn.Module):
    """Sentence representation: dense + tanh on the [CLS] (first) position."""

    def __init__(self, config: BertConfig) -> None:
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.hidden_size)

    def forward(self, sequence_output: Tensor) -> Tensor:
        return torch.tanh(self.dense(sequence_output[:, 0]))


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


class BertModel(nn.Module):
    """Embeddings, encoder and pooler: token states [B, T, H] and the pooled [CLS] state [B, H]."""

    def __init__(self, config: BertConfig) -> None:
        super().__init__()
        self.embeddings = Embeddings(config)
        self.encoder = Encoder(config)
        self.pooler = Pooler(config)

    def forward(
        self,
        input_ids: Tensor,
        token_type_ids: Tensor | None = None,
        attention_mask: Tensor | None = None,
    ) -> tuple[Tensor, Tensor]:
        """`attention_mask` [B, T], 1/True = real token (default: all real)."""
        if token_type_ids is None:
            token_type_ids = torch.zeros_like(input_ids)
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids, dtype=torch.bool)
        key_mask = attention_mask.bool()[:, None, None, :]
        sequence_output = self.encoder(self.embeddings(input_ids, token_type_ids), key_mask)
        return sequence_output, self.pooler(sequence_output)


def init_weights(module: nn.Module, std: float, generator: torch.Generator | None) -> None:
    """BERT's initialisation: normal(0, std) weights, zero biases, LayerNorm 1/0, zero [PAD] row.

    `generator` makes the initial weights a function of its seed (None: torch's global one).
    """
    if isinstance(module, nn.Linear):
        nn.init.normal_(module.weight, mean=0.0, std=std, generator=generator)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.Embedding):
        nn.init.normal_(module.weight, mean=0.0, std=std, generator=generator)
        if module.padding_idx is not None:
            nn.init.zeros_(module.weight[module.padding_idx])
    elif isinstance(module, nn.LayerNorm):
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)
    elif isinstance(module, LMPredictionHead):
        nn.init.zeros_(module.bias)


def cross_entropy_with_counts(logits: Tensor, labels: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Mean cross-entropy over labelled rows, plus (correct, total) for accuracy.

    Rows labelled `IGNORE_INDEX` take no part. A batch with no labelled row gives loss 0 and
    total 0 rather than NaN, so a step with no NSP labels is harmless. The loss is computed in
    float32 whatever the logits' dtype (bf16 logits lose too much in a vocabulary-wide softmax).
    """
    logits = logits.reshape(-1, logits.shape[-1]).float()
    labels = labels.reshape(-1)
    labelled = labels != IGNORE_INDEX
    total = labelled.sum()
    loss_sum = F.cross_entropy(logits, labels, ignore_index=IGNORE_INDEX, reduction="sum")
    correct = ((logits.argmax(dim=-1) == labels) & labelled).sum()
    return loss_sum / total.clamp(min=1), correct, total


class PreTrainingOutput(NamedTuple):
    """What a pretraining step needs: the loss to backprop and what to log.

    Losses are means over this batch's labelled positions / examples; the counts are 0-dim
    int64 tensors so the loop can sum them across steps and ranks and divide when it logs.
    """

    loss: Tensor  # mlm_loss + nsp_loss
    mlm_loss: Tensor
    nsp_loss: Tensor
    mlm_logits: Tensor  # [B, P, V], at masked_lm_positions (padded slots included)
    nsp_logits: Tensor  # [B, 2]: 0 = B follows A, 1 = B is random
    mlm_correct: Tensor
    mlm_total: Tensor
    nsp_correct: Tensor
    nsp_total: Tensor


class SequenceClassificationOutput(NamedTuple):
    loss: Tensor | None  # None when no labels were given
    logits: Tensor  # [B, num_labels]


class BertForPreTraining(nn.Module):
    """BERT with its two pretraining heads: masked language model and next-sentence prediction."""

    hf_architecture: ClassVar[str] = "ForPreTraining"
    tied_parameters: ClassVar[Mapping[str, str]] = {
        "cls.predictions.decoder.weight": "bert.embeddings.word_embeddings.weight",
        "cls.predictions.decoder.bias": "cls.predictions.bias",
    }

    def __init__(self, config: BertConfig, generator: torch.Generator | None = None) -> None:
        super().__init__()
        self.config = config
        self.bert = BertModel(config)
        self.cls = PreTrainingHeads(config)
        self.apply(lambda module: init_weights(module, config.initializer_range, generator))
        self.cls.predictions.tie_to(self.bert.embeddings.word_embeddings)

    @classmethod
    def for_loading(
        cls,
        config: BertConfig,
        hf: Mapping[str, Any],
        num_labels: int | None,
        generator: torch.Generator | None,
    ) -> BertForPreTraining:
        """The model to load an export into (`load_pretrained`); `num_labels` does not apply."""
        return cls(config, generator)

    def forward(
        self,
        input_ids: Tensor,
        token_type_ids: Tensor,
        attention_mask: Tensor,
        masked_lm_positions: Tensor,
        masked_lm_ids: Tensor,
        next_sentence_label: Tensor,
    ) -> PreTrainingOutput:
        """Loss, logits and accuracy counts of one pretraining batch.

        input_ids, token_type_ids, attention_mask: [B, T] (attention_mask 1/True = real token);
        masked_lm_positions [B, P] int64, padded with 0; masked_lm_ids [B, P], padded with
        -100; next_sentence_label [B]: 0 = next, 1 = random, negative (-1 or -100) = none.
        Only the P gathered positions go through the MLM head (sparse prediction).
        """
        sequence_output, pooled_output = self.bert(input_ids, token_type_ids, attention_mask)
        gather_index = masked_lm_positions[:, :, None].expand(-1, -1, sequence_output.shape[-1])
        masked_states = sequence_output.gather(1, gather_index)
        mlm_logits = self.cls.predictions(masked_states)
        nsp_logits = self.cls.seq_relationship(pooled_output)
        mlm_loss, mlm_correct, mlm_total = cross_entropy_with_counts(mlm_logits, masked_lm_ids)
        nsp_labels = torch.where(next_sentence_label < 0, IGNORE_INDEX, next_sentence_label.long())
        nsp_loss, nsp_correct, nsp_total = cross_entropy_with_counts(nsp_logits, nsp_labels)
        return PreTrainingOutput(
            loss=mlm_loss + nsp_loss,
            mlm_loss=mlm_loss,
            nsp_loss=nsp_loss,
            mlm_logits=mlm_logits,
            nsp_logits=nsp_logits,
            mlm_correct=mlm_correct,
            mlm_total=mlm_total,
            nsp_correct=nsp_correct,
            nsp_total=nsp_total,
        )

    def prediction_logits(
        self,
        input_ids: Tensor,
        token_type_ids: Tensor | None = None,
        attention_mask: Tensor | None = None,
    ) -> Tensor:
        """Dense MLM logits [B, T, V] at every position: for fill-mask and parity checks only."""
        sequence_output, _ = self.bert(input_ids, token_type_ids, attention_mask)
        return self.cls.predictions(sequence_output)

    def hf_config(self) -> dict[str, Any]:
        return self.config.to_hf_dict([self.config.hf_class_prefix + self.hf_architecture])


class BertForSequenceClassification(nn.Module):
    """BERT with dropout + a linear classifier on the pooled [CLS] state.

    One label means regression (mean squared error on the single logit); more labels mean
    single-label classification (cross-entropy), as transformers decides it.
    """

    hf_architecture: ClassVar[str] = "ForSequenceClassification"
    tied_parameters: ClassVar[Mapping[str, str]] = {}

    def __init__(
        self,
        config: BertConfig,
        num_labels: int,
        label_names: Sequence[str] | None = None,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__()
        if num_labels < 1:
            raise BertforgeError(f"num_labels must be at least 1, got {num_labels}")
        if label_names is not None and len(label_names) != num_labels:
            raise BertforgeError(
                f"label_names must have num_labels ({num_labels}) entries, got {len(label_names)}"
            )
        self.config = config
        self.num_labels = num_labels
        self.label_names = tuple(label_names or (f"LABEL_{i}" for i in range(num_labels)))
        self.bert = BertModel(config)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)
        self.classifier = nn.Linear(config.hidden_size, num_labels)
        self.apply(lambda module: init_weights(module, config.initializer_range, generator))

    @classmethod
    def for_loading(
        cls,
        config: BertConfig,
        hf: Mapping[str, Any],
        num_labels: int | None,
        generator: torch.Generator | None,
    ) -> BertForSequenceClassification:
        """The model to load an export into: its own labels, or a new head of `num_labels`."""
        architectures = hf.get("architectures") or []
        id2label = hf.get("id2label") or {}
        has_head = any(name.endswith(cls.hf_architecture) for name in architectures)
        label_names = [id2label[key] for key in sorted(id2label, key=int)] if has_head else None
        if num_labels is None:
            if label_names is None:
                raise BertforgeError("has no classification head; pass num_labels for a new one")
            num_labels = len(label_names)
        if label_names is not None and len(label_names) != num_labels:
            label_names = None
        return cls(config, num_labels, label_names, generator)

    @property
    def is_regression(self) -> bool:
        return self.num_labels == 1

    def forward(
        self,
        input_ids: Tensor,
        token_type_ids: Tensor | None = None,
        attention_mask: Tensor | None = None,
        labels: Tensor | None = None,
    ) -> SequenceClassificationOutput:
        """Logits [B, num_labels]; with `labels` ([B] class ids, or [B] floats for regression)
        also the mean loss."""
        _, pooled_output = self.bert(input_ids, token_type_ids, attention_mask)
        logits = self.classifier(self.dropout(pooled_output))
        if labels is None:
            return SequenceClassificationOutput(loss=None, logits=logits)
        if self.is_regression:
            loss = F.mse_loss(logits.squeeze(-1).float(), labels.float())
        else:
            loss = F.cross_entropy(logits.float(), labels.long())
        return SequenceClassificationOutput(loss=loss, logits=logits)

    def hf_config(self) -> dict[str, Any]:
        hf = self.config.to_hf_dict([self.config.hf_class_prefix + self.hf_architecture])
        hf["id2label"] = {str(index): name for index, name in enumerate(self.label_names)}
        hf["label2id"] = {name: index for index, name in enumerate(self.label_names)}
        hf["problem_type"] = "regression" if self.is_regression else "single_label_classification"
        return hf


PretrainedBert = BertForPreTraining | BertForSequenceClassification


class LoadReport(NamedTuple):
    """What `load_pretrained` did not take from the file, by parameter name."""

    initialized: list[str]  # in the model, not in the file: freshly initialised (a new head)
    unused: list[str]  # in the file, not in the model (e.g. pretraining heads for a classifier)


def save_pretrained(
    model: PretrainedBert, directory: Path, state_dict: Mapping[str, Tensor] | None = None
) -> None:
    """Write `directory`/config.json and model.safetensors (float32) in transformers' layout.

    Tied aliases (the MLM decoder's weight and bias) are not written: safetensors cannot hold
    shared tensors, and transformers re-ties them from the embedding and `cls.predictions.bias`
    on load, as it does for its own exports. `state_dict` overrides the model's own weights
    (e.g. the float32 master weights gathered from a DeepSpeed checkpoint). The files are
    written in place; wrap the call in `bertforge.io.atomic_directory` for an atomic export.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    weights = model.state_dict() if state_dict is None else state_dict
    tensors = {
        name: tensor.detach().to(device="cpu", dtype=torch.float32).contiguous()
        for name, tensor in weights.items()
        if name not in model.tied_parameters
    }
    save_file(tensors, directory / WEIGHTS_FILE, metadata={"format": "pt"})
    write_json_atomic(directory / CONFIG_FILE, model.hf_config())


def load_pretrained(
    directory: Path,
    model_cls: type[PretrainedBert],
    num_labels: int | None = None,
    generator: torch.Generator | None = None,
) -> tuple[PretrainedBert, LoadReport]:
    """Build `model_cls` from an export (ours or transformers') and load its weights.

    Embedding and encoder weights must all be in the file; heads missing from it (a classifier
    on a pretraining export, a pooler on an MLM-only export) keep their fresh initialisation and
    are listed in the report. For `BertForSequenceClassification`, `num_labels` defaults to the
    export's own label count and is required when the export has no classification head;
    `generator` seeds the initialisation of what the file does not hold.
    """
    directory = Path(directory)
    config_path = directory / CONFIG_FILE
    weights_path = directory / WEIGHTS_FILE
    try:
        hf = json.loads(config_path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise BertforgeError(f"{config_path}: not found") from None
    except json.JSONDecodeError as error:
        raise BertforgeError(f"{config_path}: not valid JSON: {error}") from None
    if not weights_path.is_file():
        raise BertforgeError(f"{weights_path}: not found")
    try:
        model = model_cls.for_loading(BertConfig.from_hf_dict(hf), hf, num_labels, generator)
    except BertforgeError as error:
        raise BertforgeError(f"{config_path}: {error}") from None

    saved = load_file(weights_path)
    expected = {
        name: tensor
        for name, tensor in model.state_dict().items()
        if name not in model.tied_parameters
    }
    for name, tensor in saved.items():
        if name in expected and tensor.shape != expected[name].shape:
            raise BertforgeError(
                f"{weights_path}: {name} has shape {list(tensor.shape)}, the model expects "
                f"{list(expected[name].shape)}"
            )
    initialized = sorted(set(expected) - set(saved))
    required = [
        name for name in initialized if name.startswith(("bert.embeddings.", "bert.encoder."))
    ]
    if required:
        raise BertforgeError(f"{weights_path}: {required[0]} is missing ({len(required)} in all)")
    unused = sorted(set(saved) - set(expected) - set(model.tied_parameters))
    model.load_state_dict({name: saved[name] for name in expected if name in saved}, strict=False)
    return model, LoadReport(initialized=initialized, unused=unused)


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


__all__ = [
    "IGNORE_INDEX",
    "BertConfig",
    "BertForPreTraining",
    "BertForSequenceClassification",
    "BertModel",
    "LoadReport",
    "PreTrainingOutput",
    "SequenceClassificationOutput",
    "count_parameters",
    "flops_per_token",
    "load_pretrained",
    "optimizer_parameter_groups",
    "save_pretrained",
]
