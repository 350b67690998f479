"""Held-out evaluation: MLM/NSP loss and accuracy, next to baselines on the same targets.

The unigram baseline always predicts the train split's most frequent masked-LM target
(accuracy) and scores each target by its add-one-smoothed train frequency (loss); the NSP
baseline always predicts the held-out split's more frequent label. Every rank evaluates its
share of the held-out batches (`eval_batches`), and one all-reduce sums them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pyarrow.compute as pc
import torch

from bertforge.constants import IGNORE_INDEX
from bertforge.pretrain.data import Collator, ExampleSplit

EVAL_SUMS = (
    "mlm_loss",
    "mlm_correct",
    "mlm_total",
    "nsp_loss",
    "nsp_correct",
    "nsp_total",
    "nsp_random_next",
    "unigram_correct",
    "unigram_nll",
)


def eval_batches(
    lengths: np.ndarray, batch_size: int, rank: int, world_size: int
) -> list[tuple[np.ndarray, bool]]:
    """Held-out batches of `rank` as (indices, counted): sorted by length, dealt round-robin.

    Every rank must run the same number of forward passes (ZeRO-3 gathers weights in them), so
    a rank short of a batch repeats the first one with counted=False and discards the result.
    """
    order = np.argsort(-lengths, kind="stable")
    batches = [order[start : start + batch_size] for start in range(0, len(order), batch_size)]
    per_rank = -(-len(batches) // world_size)
    mine = [(batch, True) for batch in batches[rank::world_size]]
    return mine + [(batches[0], False)] * (per_rank - len(mine))


def unigram_counts(split: ExampleSplit, meta: Mapping[str, Any]) -> np.ndarray:
    """How often each id is a masked-LM target in the train split (what a unigram model knows).

    Static masking: the stored `masked_lm_ids`. Dynamic masking: every maskable token, since
    the masks are drawn uniformly over them.
    """
    vocab_size = meta["vocab_size"]
    if meta["masking"] == "static":
        values = pc.list_flatten(split.table["masked_lm_ids"]).to_numpy()
    else:
        values = pc.list_flatten(split.table["input_ids"]).to_numpy()
        special = meta["special_token_ids"]
        values = values[~np.isin(values, [special["[CLS]"], special["[SEP]"], special["[PAD]"]])]
    return np.bincount(values.astype(np.int64), minlength=vocab_size)


def unigram_log_probabilities(counts: np.ndarray, device: torch.device) -> torch.Tensor:
    """Add-one smoothed log unigram probabilities of the train targets."""
    smoothed = counts.astype(np.float64) + 1.0
    return torch.from_numpy(np.log(smoothed / smoothed.sum())).to(device)


def evaluate(
    engine: Any,
    collate: Collator,
    batches: Sequence[tuple[np.ndarray, bool]],
    unigram_log_probs: torch.Tensor,
) -> dict[str, float]:
    """Held-out MLM/NSP loss and accuracy, and the baselines (every rank calls it)."""
    engine.eval()
    sums = torch.zeros(len(EVAL_SUMS), dtype=torch.float64, device=engine.device)
    top_token = int(unigram_log_probs.argmax())
    with torch.no_grad():
        for indices, counted in batches:
            batch = collate(indices)
            output = engine(**batch)
            if not counted:
                continue
            labels = batch["masked_lm_ids"]
            labelled = labels != IGNORE_INDEX
            sums += torch.stack(
                [
                    output.mlm_loss.double() * output.mlm_total,
                    output.mlm_correct.double(),
                    output.mlm_total.double(),
                    output.nsp_loss.double() * output.nsp_total,
                    output.nsp_correct.double(),
                    output.nsp_total.double(),
                    (batch["next_sentence_label"] == 1).sum().double(),
                    ((labels == top_token) & labelled).sum().double(),
                    -unigram_log_probs[labels[labelled]].double().sum(),
                ]
            )
    torch.distributed.all_reduce(sums)
    engine.train()
    total = dict(zip(EVAL_SUMS, sums.tolist(), strict=True))
    masked = max(total["mlm_total"], 1)
    metrics = {
        "mlm_loss": total["mlm_loss"] / masked,
        "mlm_accuracy": total["mlm_correct"] / masked,
        "masked_tokens": int(total["mlm_total"]),
        "unigram_mlm_accuracy": total["unigram_correct"] / masked,
        "unigram_mlm_loss": total["unigram_nll"] / masked,
    }
    metrics["mlm_accuracy_over_unigram"] = total["mlm_correct"] / max(total["unigram_correct"], 1)
    if total["nsp_total"]:
        random_next = total["nsp_random_next"] / total["nsp_total"]
        metrics |= {
            "nsp_loss": total["nsp_loss"] / total["nsp_total"],
            "nsp_accuracy": total["nsp_correct"] / total["nsp_total"],
            "nsp_majority_accuracy": max(random_next, 1 - random_next),
        }
    return metrics
