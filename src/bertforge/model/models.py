"""The models: the encoder (`BertModel`) and BERT with its pretraining or classification heads.

Parameter names are exactly transformers' `BertForPreTraining` / `BertForSequenceClassification`
state_dict names (Megatron-BERT's with ``pre_layer_norm``), so an export is a file write.

Each model takes a padded batch ([B, T] tensors and mask) or an unpadded one (1-D [N] tensors
and an `Unpadded` as `attention_mask`, bertforge.model.layout); the parameters, and so the
exports, are the same either way. What keeps a step fast without changing the maths: the MLM
head runs only on the gathered ``masked_lm_positions`` (about 15% of tokens), and `forward` has
no data-dependent Python control flow or host synchronisation (accuracy counts come back as
tensors for the loop to reduce when it logs), so the step is `torch.compile`-able.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar, NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from bertforge.constants import IGNORE_INDEX
from bertforge.errors import BertforgeError
from bertforge.model.config import BertConfig
from bertforge.model.layers import Embeddings, Encoder, LMPredictionHead, Pooler, PreTrainingHeads
from bertforge.model.layout import Layout, layout_of


class BertModel(nn.Module):
    """Embeddings, encoder and pooler: token states and each sequence's pooled [CLS] state [B, H].

    Token states are [B, T, H] for a padded batch and [N, H] for an unpadded one.
    """

    def __init__(self, config: BertConfig) -> None:
        super().__init__()
        self.embeddings = Embeddings(config)
        self.encoder = Encoder(config)
        self.pooler = Pooler(config)

    def forward(
        self,
        input_ids: Tensor,
        token_type_ids: Tensor | None = None,
        attention_mask: Tensor | Layout | None = None,
    ) -> tuple[Tensor, Tensor]:
        """`attention_mask` [B, T], 1/True = real token (default: all real), or an `Unpadded`
        with `input_ids` [N]."""
        layout = layout_of(input_ids, attention_mask)
        if token_type_ids is None:
            token_type_ids = torch.zeros_like(input_ids)
        sequence_output = self.encoder(self.embeddings(input_ids, token_type_ids, layout), layout)
        return sequence_output, self.pooler(layout.first_tokens(sequence_output))


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
    # a hit: the label's logit is the row's largest (argmax but for exact ties, counted as hits)
    label_logits = logits.gather(1, labels.clamp(min=0)[:, None]).squeeze(1)
    correct = ((label_logits >= logits.amax(dim=-1)) & labelled).sum()
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
        attention_mask: Tensor | Layout,
        masked_lm_positions: Tensor,
        masked_lm_ids: Tensor,
        next_sentence_label: Tensor,
    ) -> PreTrainingOutput:
        """Loss, logits and accuracy counts of one pretraining batch.

        input_ids, token_type_ids, attention_mask: [B, T] (attention_mask 1/True = real token),
        or input_ids and token_type_ids [N] with an `Unpadded` attention_mask;
        masked_lm_positions [B, P] int64 (positions within each sequence), padded with 0;
        masked_lm_ids [B, P], padded with -100; next_sentence_label [B]: 0 = next, 1 = random,
        negative (-1 or -100) = none. Only the P gathered positions go through the MLM head
        (sparse prediction).
        """
        layout = layout_of(input_ids, attention_mask)
        sequence_output, pooled_output = self.bert(input_ids, token_type_ids, layout)
        masked_states = layout.gather(sequence_output, masked_lm_positions)
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
        attention_mask: Tensor | Layout | None = None,
    ) -> Tensor:
        """Dense MLM logits at every position, [B, T, V] (unpadded: [N, V]): for fill-mask and
        parity checks only."""
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
        attention_mask: Tensor | Layout | None = None,
        labels: Tensor | None = None,
    ) -> SequenceClassificationOutput:
        """Logits [B, num_labels]; with `labels` ([B] class ids, or [B] floats for regression)
        also the mean loss."""
        _, pooled_output = self.bert(input_ids, token_type_ids, attention_mask)
        return self.classify(pooled_output, labels)

    def classify(self, pooled: Tensor, labels: Tensor | None) -> SequenceClassificationOutput:
        """The head on a pooled representation: dropout, classifier, and the loss if labelled."""
        logits = self.classifier(self.dropout(pooled))
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
