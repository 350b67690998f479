"""The BERT fine-tuning recipe for one (init, seed), as a chain of named steps.

`build_model` (the export's encoder and a fresh head — or, for the ``scratch`` baseline, the same
architecture from random weights), `freeze` (full fine-tuning, frozen embeddings and first K
layers, or head only), `make_optimizer` (AdamW without decay on biases and LayerNorm) and
`make_schedule` (warmup, then linear, cosine or constant), then `train_seed`: epochs of
shuffled, length-bucketed, dynamically padded batches (`train_epoch`) with gradient clipping,
the dev score after each epoch, the best epoch kept and early stopping after
`early_stopping_patience` epochs without improvement. Regression trains on targets standardised
with the train split's mean and spread (`TargetScale`); the kept model has the scale folded into
its head, so it predicts raw targets. `pooling` picks the sentence vector ([CLS] or a mean).

Determinism: a seed fixes everything random in a run — head and scratch initialisation (a torch
generator), dropout (torch's global generator, seeded inside `torch.random.fork_rng` so the
caller's state is untouched) and batch order (a numpy generator passed down) — so a run repeats
to the same bytes on the same machine and thread count.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from bertforge.errors import BertforgeError
from bertforge.finetune.data import EncodedSplit, TargetScale, length_bucketed_batches, pad_batch
from bertforge.finetune.metrics import compute_metrics
from bertforge.finetune.params import FinetuneParams, Init
from bertforge.finetune.pooling import classifier_class
from bertforge.finetune.tasks import TaskData
from bertforge.model import (
    BertConfig,
    BertForSequenceClassification,
    load_pretrained,
    optimizer_parameter_groups,
)

DEVICE = torch.device("cuda" if torch.cuda.is_available() else "cpu")
"""Where fine-tuning runs, chosen once: the GPU when there is one (runs then go one at a time)."""


def to_device(batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {name: tensor.to(DEVICE) for name, tensor in batch.items()}


def build_model(
    init: Init,
    model_dir: Path,
    config: BertConfig,
    task: TaskData,
    params: FinetuneParams,
    seed: int,
) -> BertForSequenceClassification:
    """The export's embeddings and encoder (and pooler) with a fresh head, or all random.

    `seed` fixes the initialisation of everything the export does not provide: the head, and
    for ``scratch`` every weight (the same architecture, BERT's initialisation).
    """
    config = dataclasses.replace(
        config,
        hidden_dropout_prob=params.hidden_dropout,
        attention_probs_dropout_prob=params.attention_dropout,
    )
    num_labels = 1 if task.kind == "regression" else len(task.labels)
    generator = torch.Generator().manual_seed(seed)
    model_class = classifier_class(params.pooling)  # [CLS] through the pooler, or a mean
    model = model_class(config, num_labels, task.labels or None, generator)
    if init == "pretrained":
        loaded, report = load_pretrained(
            model_dir, BertForSequenceClassification, num_labels, torch.Generator()
        )
        fresh = set(report.initialized)
        # the export's weights everywhere but in the new classifier head
        weights = {
            name: tensor
            for name, tensor in loaded.state_dict().items()
            if name not in fresh and not name.startswith("classifier.")
        }
        model.load_state_dict(weights, strict=False)
    return model


def freeze(model: BertForSequenceClassification, strategy: str, frozen_layers: int) -> None:
    """Fix the parameters a strategy does not train (``requires_grad = False``).

    ``full`` trains everything; ``freeze`` fixes the embeddings and the first `frozen_layers`
    encoder layers; ``head_only`` (a linear probe) trains only the classifier.
    """
    layers = len(model.bert.encoder.layer)
    if frozen_layers > layers:
        raise BertforgeError(
            f"params.yaml: finetune.frozen_layers must be at most the model's {layers} layers, "
            f"got {frozen_layers}"
        )
    if strategy == "full":
        return
    if strategy == "head_only":
        # a linear probe: the whole encoder fixed
        frozen: list[torch.nn.Module] = [model.bert]
    else:
        # the embeddings and the first frozen_layers encoder layers fixed
        frozen = [model.bert.embeddings, *model.bert.encoder.layer[:frozen_layers]]
    for module in frozen:
        for parameter in module.parameters():
            parameter.requires_grad_(False)


def make_optimizer(model: torch.nn.Module, params: FinetuneParams) -> torch.optim.AdamW:
    """AdamW over the trainable parameters; biases and LayerNorm weights get no weight decay.

    The fused kernel (CPU and GPU) updates all parameters in one pass.
    """
    # weight decay on the weight matrices only, not on biases and LayerNorm (BERT's groups)
    groups = optimizer_parameter_groups(model, params.weight_decay)
    for group in groups:  # only what `freeze` left trainable
        group["params"] = [p for p in group["params"] if p.requires_grad]
    (learning_rate,) = params.learning_rates  # a run trains at one rate (`at_rate`)
    return torch.optim.AdamW(groups, lr=learning_rate, betas=(0.9, 0.999), eps=1e-8, fused=True)


def make_schedule(
    optimizer: torch.optim.Optimizer, kind: str, warmup_steps: int, total_steps: int
) -> torch.optim.lr_scheduler.LambdaLR:
    """Linear warmup from 0 over `warmup_steps`, then linear decay to 0, cosine to 0, or flat."""

    def factor(step: int) -> float:
        # 1) linear warmup from 0 to the peak rate over warmup_steps
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
        # 2) then linear decay to 0 at the last step,
        if kind == "linear":
            return max(0.0, 1.0 - progress)
        # or half a cosine down to 0,
        if kind == "cosine":
            return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))
        # or the peak rate to the end
        return 1.0

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


# --- training and prediction -----------------------------------------------------------------


@torch.no_grad()
def predict(
    model: BertForSequenceClassification, split: EncodedSplit, batch_size: int, pad_id: int
) -> np.ndarray:
    """Logits for every example, in order (batched by length to spend little on padding)."""
    model.eval()
    order = np.argsort([len(ids) for ids in split.input_ids], kind="stable")
    logits = np.zeros((len(split), model.num_labels), dtype=np.float32)
    for start in range(0, len(order), batch_size):
        rows = order[start : start + batch_size]
        batch = to_device(pad_batch(split, rows, pad_id))
        output = model(batch["input_ids"], batch["token_type_ids"], batch["attention_mask"])
        logits[rows] = output.logits.float().cpu().numpy()
    return logits


def decode(
    task: TaskData, logits: np.ndarray, scale: TargetScale | None = None
) -> list[str | float]:
    """Predicted labels (names) or scores from logits (standardised scores: `scale` undoes it)."""
    if task.kind == "regression":
        return [float(value) for value in (scale or TargetScale()).restore(logits[:, 0])]
    return [task.labels[int(index)] for index in logits.argmax(axis=1)]


@dataclass
class SeedResult:
    """One trained (init, seed): the best model's weights, its predictions and metrics."""

    init: str
    seed: int
    learning_rate: float
    best_epoch: int
    history: list[dict[str, float]]
    state_dict: dict[str, torch.Tensor]
    predictions: dict[str, list[str | float]]
    metrics: dict[str, dict[str, float]]
    seconds: float

    def scores(self) -> dict[str, float]:
        """The score (the primary metric, GLUE-averaged) of each split."""
        return {split: metrics["score"] for split, metrics in self.metrics.items()}


def train_epoch(
    model: BertForSequenceClassification,
    split: EncodedSplit,
    batches: list[np.ndarray],
    optimizer: torch.optim.Optimizer,
    schedule: torch.optim.lr_scheduler.LRScheduler,
    max_grad_norm: float | None,
    pad_id: int,
) -> float:
    """One optimizer and schedule step per batch of rows of `split`; the mean training loss."""
    model.train()
    trainable = [p for p in model.parameters() if p.requires_grad]
    losses = []
    for rows in batches:
        batch = to_device(pad_batch(split, rows, pad_id))
        loss = model(**batch).loss
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if max_grad_norm is not None:
            # clip the global norm of all gradients to max_grad_norm
            torch.nn.utils.clip_grad_norm_(trainable, max_grad_norm)
        optimizer.step()
        schedule.step()
        losses.append(loss.item())
    return float(np.mean(losses))


def train_seed(
    task: TaskData,
    encoded: Mapping[str, EncodedSplit],
    init: Init,
    seed: int,
    model_dir: Path,
    config: BertConfig,
    params: FinetuneParams,
) -> tuple[BertForSequenceClassification, SeedResult]:
    """Fine-tune one (init, seed) and keep the epoch with the best dev score.

    Each epoch's train loss, final learning rate and dev metrics go into the result's
    `history`. Training stops early after `early_stopping_patience` epochs without a
    better dev score. The dev predictions are those of the best epoch; test is predicted once,
    with the best weights (and not at all when test is a copy of dev).
    """
    started = time.perf_counter()
    pad_id, eval_batch = config.pad_token_id, params.eval_batch_size
    # regression: train on targets standardised with the train split's mean and spread
    scale = TargetScale.of(encoded["train"], task.kind == "regression")
    train_split = scale.standardise(encoded["train"])
    batch_order = np.random.default_rng(seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)  # dropout draws from torch's global generator
        model = build_model(init, model_dir, config, task, params, seed)
        freeze(model, params.strategy, params.frozen_layers)
        model.to(DEVICE)
        optimizer = make_optimizer(model, params)
        train_lengths = np.array([len(ids) for ids in encoded["train"].input_ids])
        steps_per_epoch = math.ceil(len(encoded["train"]) / params.batch_size)
        total_steps = steps_per_epoch * params.epochs
        warmup_steps = int(params.warmup_fraction * total_steps)  # a fraction of all steps
        schedule = make_schedule(optimizer, params.schedule, warmup_steps, total_steps)
        best_score, best_epoch, best_state = -math.inf, 0, None
        predictions: dict[str, list[str | float]] = {}
        history: list[dict[str, float]] = []
        for epoch in range(1, params.epochs + 1):
            batches = length_bucketed_batches(train_lengths, params.batch_size, batch_order)
            train_loss = train_epoch(
                model, train_split, batches, optimizer, schedule, params.max_grad_norm, pad_id
            )
            dev_logits = predict(model, encoded["dev"], eval_batch, pad_id)
            dev_predictions = decode(task, dev_logits, scale)
            dev_metrics = compute_metrics(task, task.dev, dev_predictions)
            lr = schedule.get_last_lr()[0]
            history.append({"epoch": epoch, "train_loss": train_loss, "lr": lr, **dev_metrics})
            # keep the epoch with the best dev score (the first of equal ones)
            if dev_metrics["score"] > best_score:
                best_score, best_epoch = dev_metrics["score"], epoch
                best_state = {
                    k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()
                }
                predictions = {"dev": dev_predictions}
            # stop after early_stopping_patience epochs without a better dev score
            elif (
                params.early_stopping_patience is not None
                and epoch - best_epoch >= params.early_stopping_patience
            ):
                break
    assert best_state is not None
    model.load_state_dict(best_state)
    # the head outputs raw targets from here on: what is written predicts what we predicted
    scale.fold_into(model.classifier.weight, model.classifier.bias)
    best_state = {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}
    if task.test_is_dev:
        predictions["test"] = predictions["dev"]
    else:
        predictions["test"] = decode(task, predict(model, encoded["test"], eval_batch, pad_id))
    model.to("cpu")  # written and returned on the CPU
    metrics = {
        split: compute_metrics(task, task.split(split), predictions[split]) for split in predictions
    }
    result = SeedResult(
        init=init,
        seed=seed,
        learning_rate=optimizer.defaults["lr"],
        best_epoch=best_epoch,
        history=history,
        state_dict=best_state,
        predictions=predictions,
        metrics=metrics,
        seconds=time.perf_counter() - started,
    )
    return model, result
