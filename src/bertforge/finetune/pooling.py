"""How a sentence becomes one vector for the classifier: [CLS] through the pooler, or a mean.

``cls`` is BERT's own (transformers' BertForSequenceClassification: the last layer's [CLS] state
through the pretrained pooler, dense + tanh). ``mean`` averages the last layer over each row's
real tokens, which needs no pooler trained by NSP. transformers' BertForSequenceClassification
cannot express ``mean``, so a model fine-tuned with it is refused at export (`check_exportable`):
every model the finetune stage writes loads in transformers and predicts what the stage
predicted. ``mean`` is for measurements (benchmarks/finetune_grid.py).
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor

from bertforge.errors import BertforgeError
from bertforge.model import BertForSequenceClassification, SequenceClassificationOutput

Pooling = Literal["cls", "mean"]


class MeanPooledClassifier(BertForSequenceClassification):
    """BERT with dropout + a linear classifier on the masked mean of the last layer."""

    def forward(
        self,
        input_ids: Tensor,
        token_type_ids: Tensor | None = None,
        attention_mask: Tensor | None = None,
        labels: Tensor | None = None,
    ) -> SequenceClassificationOutput:
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids, dtype=torch.bool)
        sequence_output, _ = self.bert(input_ids, token_type_ids, attention_mask)
        real = attention_mask.unsqueeze(-1).to(sequence_output.dtype)
        # the mean of the last layer over each row's real tokens (padding left out)
        pooled = (sequence_output * real).sum(dim=1) / real.sum(dim=1).clamp(min=1.0)
        return self.classify(pooled, labels)


def classifier_class(pooling: Pooling) -> type[BertForSequenceClassification]:
    """The model class fine-tuning builds for a pooling."""
    return MeanPooledClassifier if pooling == "mean" else BertForSequenceClassification


def check_exportable(pooling: str) -> None:
    """Refuse a pooling that transformers' BertForSequenceClassification cannot load as trained."""
    if pooling != "cls":
        raise BertforgeError(
            f"params.yaml: finetune.pooling {pooling!r} cannot be exported: transformers' "
            "BertForSequenceClassification classifies the pooled [CLS] state, so the model "
            "would not predict what it was trained to; use 'cls' (mean is for "
            "benchmarks/finetune_grid.py)"
        )
