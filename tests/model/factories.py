"""Model-test builders: a tiny config, randomised weights, a padded pretraining batch, and
transformers' model of the same architecture.

Here rather than in tests/factories.py so that the GPU tests (tests/gpu) import nothing beyond
torch, transformers and bertforge.model: tests/factories.py pulls in every stage.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import transformers

from bertforge.model import IGNORE_INDEX, BertConfig

TINY = BertConfig(
    vocab_size=97,
    hidden_size=32,
    num_hidden_layers=2,
    num_attention_heads=4,
    intermediate_size=64,
    max_position_embeddings=48,
)
LENGTHS = [20, 13, 6]  # a padded batch: each row a different real length
PREDICTIONS = [3, 2, 1]  # masked positions per row; the rest of the [B, P] slots are padding
TOLERANCE = 1e-5
REFERENCE_CLASSES = {
    False: (transformers.BertForPreTraining, transformers.BertForSequenceClassification),
    True: (
        transformers.MegatronBertForPreTraining,
        transformers.MegatronBertForSequenceClassification,
    ),
}


def randomized(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Every parameter random (biases and LayerNorms too, so a miswired one shows), eval mode."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.copy_(0.1 * torch.randn(parameter.shape, generator=generator))
    return model.eval()


def reference_for(model: torch.nn.Module, head: int) -> torch.nn.Module:
    """transformers' model of the same architecture holding our weights (strict load)."""
    config = model.config
    reference_cls = REFERENCE_CLASSES[config.pre_layer_norm][head]
    hf_config = reference_cls.config_class.from_dict(model.hf_config())
    reference = reference_cls(hf_config).eval()
    reference.load_state_dict(model.state_dict(), strict=True)
    return reference


def pretraining_batch(
    seed: int = 1,
    lengths: Sequence[int] = LENGTHS,
    predictions: Sequence[int] = PREDICTIONS,
    vocab_size: int = TINY.vocab_size,
) -> dict[str, torch.Tensor]:
    """Rows of different lengths, two segments each, masked positions padded with 0/-100;
    NSP labels cycle through next, random and none."""
    generator = torch.Generator().manual_seed(seed)
    shape = (len(lengths), max(lengths))
    input_ids = torch.randint(5, vocab_size, shape, generator=generator)
    token_type_ids = torch.zeros_like(input_ids)
    attention_mask = torch.zeros_like(input_ids)
    positions = torch.zeros(len(lengths), max(predictions), dtype=torch.long)
    ids = torch.full_like(positions, IGNORE_INDEX)
    for row, (real, predicted) in enumerate(zip(lengths, predictions, strict=True)):
        input_ids[row, real:] = 0
        token_type_ids[row, real // 2 : real] = 1
        attention_mask[row, :real] = 1
        chosen = torch.randperm(real - 1, generator=generator)[:predicted] + 1
        positions[row, :predicted] = chosen
        ids[row, :predicted] = torch.randint(5, vocab_size, (predicted,), generator=generator)
    return {
        "input_ids": input_ids,
        "token_type_ids": token_type_ids,
        "attention_mask": attention_mask,
        "masked_lm_positions": positions,
        "masked_lm_ids": ids,
        "next_sentence_label": torch.tensor([0, 1, -1] * len(lengths))[: len(lengths)],
    }


def encoder_inputs(batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {key: batch[key] for key in ("input_ids", "token_type_ids", "attention_mask")}


def dense_mlm_labels(batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """transformers' MLM labels: the target id at masked positions, -100 everywhere else."""
    labels = torch.full_like(batch["input_ids"], IGNORE_INDEX)
    valid = batch["masked_lm_ids"] != IGNORE_INDEX
    rows = torch.arange(len(labels))[:, None].expand_as(valid)
    labels[rows[valid], batch["masked_lm_positions"][valid]] = batch["masked_lm_ids"][valid]
    return labels


def real_tokens(batch: dict[str, torch.Tensor]) -> torch.Tensor:
    return batch["attention_mask"].bool()
