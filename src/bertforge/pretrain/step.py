"""One optimizer step: forward/backward over the accumulation micro-batches, then the update,
cancelled on every rank alike when a loss anywhere was not finite."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from bertforge.constants import IGNORE_INDEX
from bertforge.pretrain.data import real_tokens

STATS = (
    "loss",
    "mlm_loss",
    "nsp_loss",
    "mlm_correct",
    "mlm_total",
    "nsp_correct",
    "nsp_total",
    "tokens",
    "flops",
    "micro_batches",
    "nonfinite",
)


@dataclass
class StepResult:
    """Sums over the step's micro-batches and ranks, and what happened to the update."""

    sums: dict[str, float]
    grad_norm: float
    skipped: bool


def train_step(
    engine: Any,
    optimizer: torch.optim.Optimizer,
    micro_batches: Sequence[Mapping[str, torch.Tensor]],
    lr: float,
    flops_of: Callable[[Mapping[str, torch.Tensor]], float],
    mlm_loss_normalisation: str,
) -> StepResult:
    """One optimizer step over `micro_batches`, skipped on every rank if any loss is not finite.

    The step's sums are all-reduced once, after the last backward and before the boundary
    `engine.step()`; a non-finite loss anywhere cancels the optimizer step everywhere, so the
    ranks stay identical. DeepSpeed's own overflow detection (non-finite gradients under ZeRO)
    also counts as skipped, except with fp16, where skipping is loss scaling at work.

    `mlm_loss_normalisation` ``micro_batch`` backpropagates each micro-batch's mean MLM loss
    (DeepSpeed then averages over accumulation steps and ranks, so a short micro-batch's tokens
    weigh more); ``global_batch`` divides each micro-batch's summed MLM loss by the masked-token
    count of the whole global batch, counted over every micro-batch and rank before the first
    backward, so every masked token of the step weighs the same.
    """
    for group in optimizer.param_groups:
        group["lr"] = lr
    sums = torch.zeros(len(STATS), dtype=torch.float64, device=engine.device)
    grad_norm = None
    token_weight = None
    if mlm_loss_normalisation == "global_batch":
        # the masked tokens of the whole global batch: every micro-batch here, then every rank
        masked = sum(int((b["masked_lm_ids"] != IGNORE_INDEX).sum()) for b in micro_batches)
        count = torch.tensor(float(masked), dtype=torch.float64, device=engine.device)
        torch.distributed.all_reduce(count)
        # DeepSpeed averages over accumulation steps and ranks: undo that, divide by the count
        contributions = engine.gradient_accumulation_steps() * torch.distributed.get_world_size()
        token_weight = contributions / max(float(count), 1.0)
    for index, batch in enumerate(micro_batches):
        output = engine(**batch)
        loss = output.loss
        if token_weight is not None:
            # this micro-batch's summed MLM loss over the global batch's masked-token count
            loss = output.mlm_loss * (output.mlm_total * token_weight) + output.nsp_loss
        finite = torch.isfinite(loss)
        sums += torch.stack(
            [
                torch.where(finite, output.loss.detach(), 0.0).double(),
                torch.where(finite, output.mlm_loss.detach(), 0.0).double(),
                torch.where(finite, output.nsp_loss.detach(), 0.0).double(),
                output.mlm_correct.double(),
                output.mlm_total.double(),
                output.nsp_correct.double(),
                output.nsp_total.double(),
                real_tokens(batch).double(),
                torch.tensor(flops_of(batch), dtype=torch.float64, device=engine.device),
                torch.tensor(1.0, dtype=torch.float64, device=engine.device),
                (~finite).double(),
            ]
        )
        engine.backward(loss)
        if index == len(micro_batches) - 1:
            torch.distributed.all_reduce(sums)
            # a non-finite loss on any rank cancels the update on every rank
            optimizer.skip_next_step = bool(sums[STATS.index("nonfinite")] > 0)
            if not (
                engine.zero_optimization() or engine.bfloat16_enabled() or engine.fp16_enabled()
            ):
                grad_norm = gradient_norm(engine.module)
        skipped_before = engine.skipped_steps
        engine.step()  # at the boundary: clip the gradient norm (deepspeed_config), update
    overflowed = engine.skipped_steps > skipped_before and not engine.fp16_enabled()
    skipped = optimizer.skip_next_step or overflowed
    optimizer.skip_next_step = False
    if grad_norm is None:
        norm = engine.get_global_grad_norm()
        grad_norm = float(norm) if norm is not None else float("nan")
    return StepResult(dict(zip(STATS, sums.tolist(), strict=True)), grad_norm, skipped)


def gradient_norm(module: torch.nn.Module) -> float:
    """L2 norm of all gradients (ZeRO-0 keeps whole, already averaged gradients)."""
    norms = [p.grad.detach().float().norm() for p in module.parameters() if p.grad is not None]
    return float(torch.linalg.vector_norm(torch.stack(norms))) if norms else 0.0
