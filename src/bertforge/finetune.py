"""Fine-tuning: a pretrained (or randomly initialised) BERT plus a new head, on one task.

The BERT recipe, as a chain of named steps: `check_pretrained_export` (model and tokenizer
belong together), `encode_split` (WordPiece, [CLS] A [SEP] B [SEP], truncated to
`max_seq_length`), `build_model` (the export's encoder and a fresh head — or, for the ``scratch``
baseline, the same architecture from random weights), `freeze` (full fine-tuning, frozen
embeddings and first K layers, or head only), `make_optimizer` (AdamW without decay on biases
and LayerNorm) and `make_schedule` (warmup, then linear, cosine or constant), then `train_seed`:
epochs of shuffled, length-bucketed, dynamically padded batches with gradient clipping, the dev
score after each epoch, the best epoch kept and early stopping after `early_stopping_patience`
epochs without improvement. `write_seed` saves the best model in transformers' layout (loadable by
`AutoModelForSequenceClassification`), the tokenizer files, dev and test predictions and metrics.

Determinism: a seed fixes everything random in a run — head and scratch initialisation (a torch
generator), dropout (torch's global generator, seeded inside `torch.random.fork_rng` so the
caller's state is untouched) and batch order (a numpy generator passed down) — so a run repeats
to the same bytes on the same machine and thread count.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import shutil
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from tokenizers import Tokenizer
from tqdm import tqdm

from bertforge import vocab
from bertforge.errors import BertforgeError
from bertforge.io import write_json_atomic
from bertforge.model import (
    CONFIG_FILE,
    BertConfig,
    BertForSequenceClassification,
    load_pretrained,
    save_pretrained,
)
from bertforge.parallel import ordered_parallel_map
from bertforge.params import parse, require
from bertforge.tasks import Example, TaskData, TaskSpec, compute_metrics

Init = Literal["pretrained", "scratch"]
TOKENIZER_FILES = (
    "vocab.txt",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
)
PRETRAIN_RUN_TAG = "bertforge.pretrain_run_id"


@dataclass(frozen=True)
class FinetuneParams:
    """The ``finetune`` section of params.yaml (docs/finetune.md explains each knob).

    `tasks` maps each task name to its `TaskSpec`; it is a plain mapping in YAML so that
    dvc.yaml's ``foreach`` gives one ``finetune@<task>`` stage per key, and is parsed here.
    """

    tasks: dict[str, Any]
    inits: list[Init] = field(default_factory=lambda: ["pretrained", "scratch"])
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2])
    max_seq_length: int = 64
    batch_size: int = 32
    eval_batch_size: int = 256
    epochs: int = 3
    learning_rate: float = 5e-5
    weight_decay: float = 0.01
    warmup_fraction: float = 0.1
    schedule: Literal["linear", "cosine", "constant"] = "linear"
    max_grad_norm: float | None = 1.0
    strategy: Literal["full", "freeze", "head_only"] = "full"
    frozen_layers: int = 0
    hidden_dropout: float = 0.1
    attention_dropout: float = 0.1
    early_stopping_patience: int | None = None
    processes: int = 0
    threads: int = 0

    def __post_init__(self) -> None:
        require(len(self.tasks) >= 1, "tasks", "must name at least one task", self.tasks)
        specs = {
            str(name): spec
            if isinstance(spec, TaskSpec)
            else parse(TaskSpec, spec, f"tasks.{name}")
            for name, spec in self.tasks.items()
        }
        object.__setattr__(self, "tasks", specs)
        require(len(self.inits) >= 1, "inits", "must list at least one init", self.inits)
        require(len(set(self.inits)) == len(self.inits), "inits", "must not repeat", self.inits)
        require(len(self.seeds) >= 1, "seeds", "must list at least one seed", self.seeds)
        require(len(set(self.seeds)) == len(self.seeds), "seeds", "must not repeat", self.seeds)
        require(all(s >= 0 for s in self.seeds), "seeds", "must be non-negative", self.seeds)
        require(
            self.max_seq_length >= 8, "max_seq_length", "must be at least 8", self.max_seq_length
        )
        for name in ("batch_size", "eval_batch_size", "epochs"):
            require(getattr(self, name) >= 1, name, "must be at least 1", getattr(self, name))
        require(self.learning_rate > 0, "learning_rate", "must be positive", self.learning_rate)
        require(self.weight_decay >= 0, "weight_decay", "must be non-negative", self.weight_decay)
        require(
            0 <= self.warmup_fraction < 1,
            "warmup_fraction",
            "must be in [0, 1)",
            self.warmup_fraction,
        )
        require(
            self.max_grad_norm is None or self.max_grad_norm > 0,
            "max_grad_norm",
            "must be positive or null (no clipping)",
            self.max_grad_norm,
        )
        require(
            self.frozen_layers >= 0, "frozen_layers", "must be non-negative", self.frozen_layers
        )
        require(
            self.frozen_layers == 0 or self.strategy == "freeze",
            "frozen_layers",
            "must be 0 unless strategy is 'freeze'",
            self.frozen_layers,
        )
        for name in ("hidden_dropout", "attention_dropout"):
            require(0 <= getattr(self, name) < 1, name, "must be in [0, 1)", getattr(self, name))
        require(
            self.early_stopping_patience is None or self.early_stopping_patience >= 1,
            "early_stopping_patience",
            "must be at least 1 or null (never stop early)",
            self.early_stopping_patience,
        )
        require(
            self.processes >= 0, "processes", "must be 0 (one per core) or more", self.processes
        )
        require(self.threads >= 0, "threads", "must be 0 (share the cores) or more", self.threads)

    def task(self, name: str) -> TaskSpec:
        """The spec of task `name`; an unknown name is a one-line error listing the known ones."""
        if name not in self.tasks:
            known = ", ".join(sorted(self.tasks))
            raise BertforgeError(
                f"params.yaml: finetune.tasks has no task {name!r} (known: {known})"
            )
        return self.tasks[name]

    def for_task(self, name: str) -> dict[str, Any]:
        """The params one ``finetune@<name>`` run depends on, for logging."""
        values = {
            f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "tasks"
        }
        return values | {"task": dataclasses.asdict(self.task(name))}


# --- the pretrained export -------------------------------------------------------------------


def sha256_file(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def check_pretrained_export(
    model_dir: Path, reference_vocab: Path | None, max_seq_length: int
) -> BertConfig:
    """Check that the export's model, vocabulary and tokenizer belong together; its config.

    A model is only meaningful with the vocabulary it was trained with: the vocabulary size in
    config.json must equal the number of tokens in vocab.txt and in tokenizer.json, vocab.txt
    must be the pipeline's own (`reference_vocab`, data/tokenizer/vocab.txt, when it exists),
    and tokenizer.json must add [CLS]/[SEP] itself. Each mismatch is a one-line error.
    """
    model_dir = Path(model_dir)
    config_path, vocab_path = model_dir / CONFIG_FILE, model_dir / "vocab.txt"
    for path in (config_path, vocab_path, model_dir / "tokenizer.json"):
        if not path.is_file():
            raise BertforgeError(f"{path}: not found; run the pretrain stage first")
    try:
        hf = json.loads(config_path.read_text(encoding="utf-8"))
        config = BertConfig.from_hf_dict(hf)
    except json.JSONDecodeError as error:
        raise BertforgeError(f"{config_path}: not valid JSON: {error.msg}") from None
    except BertforgeError as error:
        raise BertforgeError(f"{config_path}: {error}") from None
    vocab_tokens = len(vocab_path.read_text(encoding="utf-8").splitlines())
    if vocab_tokens != config.vocab_size:
        raise BertforgeError(
            f"{config_path}: vocab_size {config.vocab_size} does not match {vocab_path} "
            f"({vocab_tokens} tokens): the model and its tokenizer do not belong together"
        )
    tokenizer = load_tokenizer(model_dir)
    if tokenizer.get_vocab_size() != config.vocab_size:
        raise BertforgeError(
            f"{model_dir / 'tokenizer.json'}: {tokenizer.get_vocab_size()} tokens, but "
            f"{config_path} has vocab_size {config.vocab_size}"
        )
    reference = Path(reference_vocab) if reference_vocab is not None else None
    if reference and reference.is_file() and sha256_file(vocab_path) != sha256_file(reference):
        raise BertforgeError(
            f"{vocab_path} differs from {reference}: the pretrained model was trained "
            "with another vocabulary; re-run pretrain"
        )
    if max_seq_length > config.max_position_embeddings:
        raise BertforgeError(
            f"params.yaml: finetune.max_seq_length must be at most the model's "
            f"max_position_embeddings ({config.max_position_embeddings}), got {max_seq_length}"
        )
    return config


def load_tokenizer(model_dir: Path) -> Tokenizer:
    """The export's tokenizer, checked as `bertforge.vocab.load_tokenizer` checks data/tokenizer
    (vocab.txt agrees, special tokens present, a literal "[SEP]" in a text is text, as in the
    original BERT); it must also wrap inputs as [CLS] A [SEP] (B [SEP])."""
    tokenizer = vocab.load_tokenizer(model_dir)
    encoding = tokenizer.encode("a", "b")
    if encoding.tokens[:1] != ["[CLS]"] or encoding.tokens[-1:] != ["[SEP]"]:
        path = Path(model_dir) / "tokenizer.json"
        raise BertforgeError(f"{path}: its post-processor does not add [CLS] and [SEP]")
    return tokenizer


def pretrain_run_id(model_dir: Path) -> str | None:
    """The MLflow run id of the pretraining run that made the export (lineage.json), if known."""
    path = Path(model_dir) / "lineage.json"
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8")).get("mlflow_run_id")
    except (json.JSONDecodeError, AttributeError):
        return None


# --- examples to tensors ---------------------------------------------------------------------


@dataclass(frozen=True)
class EncodedSplit:
    """Token ids and segment ids per example (unpadded), and targets (class ids or floats)."""

    input_ids: list[np.ndarray]
    token_type_ids: list[np.ndarray]
    targets: np.ndarray

    def __len__(self) -> int:
        return len(self.input_ids)


def encode_split(
    tokenizer: Tokenizer, task: TaskData, examples: Sequence[Example], max_seq_length: int
) -> EncodedSplit:
    """Tokenize a split: [CLS] A [SEP] (B [SEP]), longest-first truncation to `max_seq_length`."""
    tokenizer = Tokenizer.from_str(tokenizer.to_str())  # a copy: truncation is set on it
    tokenizer.encode_special_tokens = True  # not serialized: "[SEP]" in a text stays text
    tokenizer.no_padding()
    tokenizer.enable_truncation(max_length=max_seq_length)
    inputs = [e.texts[0] if len(e.texts) == 1 else (e.texts[0], e.texts[1]) for e in examples]
    encodings = tokenizer.encode_batch(inputs)
    if task.kind == "regression":
        targets = np.array([e.label for e in examples], dtype=np.float32)
    else:
        index = {label: i for i, label in enumerate(task.labels)}
        targets = np.array([index[e.label] for e in examples], dtype=np.int64)
    return EncodedSplit(
        input_ids=[np.array(e.ids, dtype=np.int64) for e in encodings],
        token_type_ids=[np.array(e.type_ids, dtype=np.int64) for e in encodings],
        targets=targets,
    )


def pad_batch(split: EncodedSplit, rows: np.ndarray, pad_id: int) -> dict[str, torch.Tensor]:
    """The rows as a [B, T] batch padded to its longest row (T ≤ max_seq_length)."""
    length = max(len(split.input_ids[row]) for row in rows)
    input_ids = np.full((len(rows), length), pad_id, dtype=np.int64)
    token_type_ids = np.zeros((len(rows), length), dtype=np.int64)
    attention_mask = np.zeros((len(rows), length), dtype=bool)
    for position, row in enumerate(rows):
        size = len(split.input_ids[row])
        input_ids[position, :size] = split.input_ids[row]
        token_type_ids[position, :size] = split.token_type_ids[row]
        attention_mask[position, :size] = True
    return {
        "input_ids": torch.from_numpy(input_ids),
        "token_type_ids": torch.from_numpy(token_type_ids),
        "attention_mask": torch.from_numpy(attention_mask),
        "labels": torch.from_numpy(split.targets[rows]),
    }


def length_bucketed_batches(
    lengths: np.ndarray, batch_size: int, rng: np.random.Generator, window: int = 50
) -> list[np.ndarray]:
    """One epoch of shuffled batches of rows of similar length (little compute on padding).

    Rows are shuffled, cut into windows of `window` batches, sorted by length inside each
    window and cut into batches; then the batches are shuffled. Every row appears once.
    """
    permutation = rng.permutation(len(lengths))
    batches = []
    for start in range(0, len(permutation), batch_size * window):
        chunk = permutation[start : start + batch_size * window]
        chunk = chunk[np.argsort(lengths[chunk], kind="stable")]
        batches += [chunk[i : i + batch_size] for i in range(0, len(chunk), batch_size)]
    return [batches[index] for index in rng.permutation(len(batches))]


# --- model, freezing, optimizer, schedule ----------------------------------------------------


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
    model = BertForSequenceClassification(config, num_labels, task.labels or None, generator)
    if init == "pretrained":
        loaded, report = load_pretrained(
            model_dir, BertForSequenceClassification, num_labels, torch.Generator()
        )
        fresh = set(report.initialized)
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
        frozen: list[torch.nn.Module] = [model.bert]
    else:
        frozen = [model.bert.embeddings, *model.bert.encoder.layer[:frozen_layers]]
    for module in frozen:
        for parameter in module.parameters():
            parameter.requires_grad_(False)


def make_optimizer(model: torch.nn.Module, params: FinetuneParams) -> torch.optim.AdamW:
    """AdamW over the trainable parameters; biases and LayerNorm weights get no weight decay.

    The fused kernel (CPU and GPU) updates all parameters in one pass: on CPU it takes a quarter
    of the time of the per-tensor loop, a fifth of a small model's step.
    """
    decay, no_decay = [], []
    for name, parameter in model.named_parameters():
        if not parameter.requires_grad:
            continue
        (no_decay if parameter.ndim < 2 or "LayerNorm" in name else decay).append(parameter)
    groups = [
        {"params": decay, "weight_decay": params.weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    return torch.optim.AdamW(
        groups, lr=params.learning_rate, betas=(0.9, 0.999), eps=1e-8, fused=True
    )


def make_schedule(
    optimizer: torch.optim.Optimizer, kind: str, warmup_steps: int, total_steps: int
) -> torch.optim.lr_scheduler.LambdaLR:
    """Linear warmup from 0 over `warmup_steps`, then linear decay to 0, cosine to 0, or flat."""

    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
        if kind == "linear":
            return max(0.0, 1.0 - progress)
        if kind == "cosine":
            return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))
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
        batch = pad_batch(split, rows, pad_id)
        output = model(batch["input_ids"], batch["token_type_ids"], batch["attention_mask"])
        logits[rows] = output.logits.float().numpy()
    return logits


def decode(task: TaskData, logits: np.ndarray) -> list[str | float]:
    """Predicted labels (names) or scores from logits."""
    if task.kind == "regression":
        return [float(value) for value in logits[:, 0]]
    return [task.labels[int(index)] for index in logits.argmax(axis=1)]


@dataclass
class SeedResult:
    """One trained (init, seed): the best model's weights, its predictions and metrics."""

    init: str
    seed: int
    best_epoch: int
    history: list[dict[str, float]]
    state_dict: dict[str, torch.Tensor]
    predictions: dict[str, list[str | float]]
    metrics: dict[str, dict[str, float]]
    seconds: float


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
    batch_order = np.random.default_rng(seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)  # dropout draws from torch's global generator
        model = build_model(init, model_dir, config, task, params, seed)
        freeze(model, params.strategy, params.frozen_layers)
        optimizer = make_optimizer(model, params)
        train_lengths = np.array([len(ids) for ids in encoded["train"].input_ids])
        steps_per_epoch = math.ceil(len(encoded["train"]) / params.batch_size)
        total_steps = steps_per_epoch * params.epochs
        warmup_steps = int(params.warmup_fraction * total_steps)
        schedule = make_schedule(optimizer, params.schedule, warmup_steps, total_steps)
        trainable = [p for p in model.parameters() if p.requires_grad]
        best_score, best_epoch, best_state = -math.inf, 0, None
        predictions: dict[str, list[str | float]] = {}
        history: list[dict[str, float]] = []
        for epoch in range(1, params.epochs + 1):
            model.train()
            losses = []
            for rows in length_bucketed_batches(train_lengths, params.batch_size, batch_order):
                batch = pad_batch(encoded["train"], rows, pad_id)
                loss = model(**batch).loss
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                if params.max_grad_norm is not None:
                    torch.nn.utils.clip_grad_norm_(trainable, params.max_grad_norm)
                optimizer.step()
                schedule.step()
                losses.append(loss.item())
            dev_predictions = decode(task, predict(model, encoded["dev"], eval_batch, pad_id))
            dev_metrics = compute_metrics(task, task.dev, dev_predictions)
            record = {
                "epoch": epoch,
                "train_loss": float(np.mean(losses)),
                "lr": schedule.get_last_lr()[0],
                **dev_metrics,
            }
            history.append(record)
            if dev_metrics["score"] > best_score:
                best_score, best_epoch = dev_metrics["score"], epoch
                best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
                predictions = {"dev": dev_predictions}
            elif (
                params.early_stopping_patience is not None
                and epoch - best_epoch >= params.early_stopping_patience
            ):
                break
    assert best_state is not None
    model.load_state_dict(best_state)
    if task.test_is_dev:
        predictions["test"] = predictions["dev"]
    else:
        predictions["test"] = decode(task, predict(model, encoded["test"], eval_batch, pad_id))
    metrics = {
        split: compute_metrics(task, task.split(split), predictions[split]) for split in predictions
    }
    result = SeedResult(
        init=init,
        seed=seed,
        best_epoch=best_epoch,
        history=history,
        state_dict=best_state,
        predictions=predictions,
        metrics=metrics,
        seconds=time.perf_counter() - started,
    )
    return model, result


# --- outputs ---------------------------------------------------------------------------------


def seed_directory(task_dir: Path, init: str, seed: int) -> Path:
    return Path(task_dir) / init / f"seed-{seed}"


def write_seed(
    seed_dir: Path,
    model: BertForSequenceClassification,
    result: SeedResult,
    task: TaskData,
    model_dir: Path,
) -> None:
    """The best model (transformers layout + tokenizer files), predictions and metrics of a seed.

    Predictions are JSON lines in split order: ``row`` (line or index in the source), ``subset``
    (MNLI), ``label`` (gold) and ``prediction``. Nothing here is time-dependent, so the files
    repeat to the byte.
    """
    model_out = Path(seed_dir) / "model"
    save_pretrained(model, model_out)
    for name in TOKENIZER_FILES:
        if (Path(model_dir) / name).is_file():
            shutil.copyfile(Path(model_dir) / name, model_out / name)
    predictions_dir = Path(seed_dir) / "predictions"
    predictions_dir.mkdir(parents=True)
    for split, predicted in result.predictions.items():
        lines = [
            json.dumps(
                {"row": e.row, "subset": e.subset, "label": e.label, "prediction": p},
                ensure_ascii=False,
            )
            for e, p in zip(task.split(split), predicted, strict=True)
        ]
        (predictions_dir / f"{split}.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    write_json_atomic(
        Path(seed_dir) / "metrics.json",
        {
            "init": result.init,
            "seed": result.seed,
            "best_epoch": result.best_epoch,
            "history": result.history,
            "dev": result.metrics["dev"],
            "test": result.metrics["test"],
        },
    )


def read_seed_metrics(task_dir: Path) -> list[dict[str, Any]]:
    """Every seed's metrics.json under a task's output directory, ordered by init and seed."""
    found = [
        json.loads(path.read_text(encoding="utf-8"))
        for path in Path(task_dir).glob("*/seed-*/metrics.json")
    ]
    return sorted(found, key=lambda m: (m["init"], m["seed"]))


def mean_std(values: Sequence[float]) -> dict[str, float]:
    """Mean and sample standard deviation (ddof 1; 0 for a single value) over seeds."""
    array = np.asarray(values, dtype=np.float64)
    std = float(np.std(array, ddof=1)) if len(array) > 1 else 0.0
    return {"mean": float(np.mean(array)), "std": std}


def summarize_seeds(
    task_info: Mapping[str, Any], seed_metrics: Sequence[Mapping[str, Any]]
) -> dict[str, Any]:
    """Per init and split, mean and std over seeds of every metric: metrics/finetune/<task>.json."""
    summary: dict[str, Any] = {
        "task": task_info["name"],
        "primary_metric": task_info["metric"],
        "test_is_dev": task_info["test_is_dev"],
    }
    for init in dict.fromkeys(m["init"] for m in seed_metrics):
        runs = [m for m in seed_metrics if m["init"] == init]
        summary[init] = {"seeds": [m["seed"] for m in runs]}
        for split in ("dev", "test"):
            names = runs[0][split].keys()
            summary[init][split] = {
                name: mean_std([m[split][name] for m in runs]) for name in names
            }
    return summary


# --- the whole task, with MLflow child runs --------------------------------------------------


@dataclass(frozen=True)
class TaskRuns:
    """What every (init, seed) run of a task shares; each worker process receives it once."""

    task: TaskData
    encoded: Mapping[str, EncodedSplit]
    model_dir: Path
    config: BertConfig
    params: FinetuneParams
    output_dir: Path
    threads: int


_TASK_RUNS: TaskRuns | None = None  # set in each worker by `_start_worker`


def _start_worker(runs: TaskRuns) -> None:
    global _TASK_RUNS
    _TASK_RUNS = runs
    torch.set_num_threads(runs.threads)


def _train_and_write(run: tuple[Init, int]) -> SeedResult:
    """One (init, seed) in a worker: train, write its directory, return the result (no weights)."""
    assert _TASK_RUNS is not None, "_start_worker was not called in this process"
    shared, (init, seed) = _TASK_RUNS, run
    model, result = train_seed(
        shared.task, shared.encoded, init, seed, shared.model_dir, shared.config, shared.params
    )
    write_seed(
        seed_directory(shared.output_dir, init, seed), model, result, shared.task, shared.model_dir
    )
    return dataclasses.replace(result, state_dict={})


def parallelism(params: FinetuneParams, runs: int) -> tuple[int, int]:
    """(processes, torch threads per process) for `runs` (init, seed) runs on this machine.

    `processes: 0` is one per core, never more than there are runs; `threads: 0` shares the
    cores between the processes. Small models use cores far better as separate processes with
    one thread each than as one process with many threads (docs/finetune.md, "Measured").
    """
    cores = len(os.sched_getaffinity(0))
    processes = min(params.processes or cores, runs)
    threads = params.threads or max(1, cores // processes)
    return processes, threads


def log_child_run(result: SeedResult, name: str, tags: Mapping[str, str]) -> None:
    """The MLflow child run of one (init, seed) under the active stage run, after the fact:
    per-epoch train loss and dev metrics, then the best epoch's dev and test metrics."""
    import mlflow

    if mlflow.active_run() is None:
        return
    with mlflow.start_run(run_name=name, nested=True, tags=dict(tags), log_system_metrics=False):
        mlflow.log_params({"init": result.init, "seed": result.seed})
        for record in result.history:
            epoch = int(record["epoch"])
            logged = {k: v for k, v in record.items() if k != "epoch"}
            mlflow.log_metrics(
                {
                    (k if k in ("train_loss", "lr") else f"dev_{k}"): float(v)
                    for k, v in logged.items()
                },
                step=epoch,
            )
        final = {
            f"{'best_dev' if split == 'dev' else split}_{metric}": value
            for split, metrics in result.metrics.items()
            for metric, value in metrics.items()
        }
        mlflow.log_metrics(final | {"best_epoch": result.best_epoch, "seconds": result.seconds})


def finetune_task(
    task: TaskData,
    model_dir: Path,
    config: BertConfig,
    params: FinetuneParams,
    output_dir: Path,
    tags: Mapping[str, str] | None = None,
) -> list[dict[str, Any]]:
    """Train every (init, seed) of a task into `output_dir` (the caller makes it atomic).

    Writes ``task.json`` and ``<init>/seed-<n>/``; returns the seed metrics. The runs are spread
    over `parallelism(...)` worker processes; each (init, seed) depends only on its seed, so the
    outputs do not depend on how many processes share the work (at a fixed thread count). Each
    run becomes an MLflow child run of the active run, tagged with `tags` (the pretraining
    run's id), logged from this process as the results arrive in order.
    """
    tokenizer = load_tokenizer(model_dir)
    encoded = {
        split: encode_split(tokenizer, task, task.split(split), params.max_seq_length)
        for split in ("train", "dev", "test")
    }
    write_json_atomic(Path(output_dir) / "task.json", task.describe())
    runs = [(init, seed) for init in params.inits for seed in params.seeds]
    processes, threads = parallelism(params, len(runs))
    shared = TaskRuns(task, encoded, Path(model_dir), config, params, Path(output_dir), threads)
    results = ordered_parallel_map(
        _train_and_write, runs, processes, initializer=_start_worker, initargs=(shared,)
    )
    seed_metrics = []
    progress = tqdm(total=len(runs), desc=f"finetune {task.name} ({processes} proc)", unit="run")
    with progress:
        for (init, seed), result in zip(runs, results, strict=True):
            run_tags = {"bertforge.task": task.name, "bertforge.init": init, **(tags or {})}
            log_child_run(result, f"{task.name}-{init}-seed{seed}", run_tags)
            metrics_path = seed_directory(output_dir, init, seed) / "metrics.json"
            seed_metrics.append(json.loads(metrics_path.read_text(encoding="utf-8")))
            progress.update()
    return seed_metrics


# --- evaluation: all tasks, pretrained vs scratch --------------------------------------------


@dataclass(frozen=True)
class EvaluateParams:
    """The ``evaluate`` section: which split the report leads with."""

    headline_split: Literal["test", "dev"] = "test"


def collect_results(
    output_root: Path, task_names: Sequence[str], inits: Sequence[str], seeds: Sequence[int]
) -> dict[str, tuple[dict[str, Any], list[dict[str, Any]]]]:
    """Each task's task.json and seed metrics; every (init, seed) of params must be there."""
    results = {}
    for name in task_names:
        task_dir = Path(output_root) / name
        info_path = task_dir / "task.json"
        if not info_path.is_file():
            raise BertforgeError(f"{info_path}: not found; run finetune@{name} first")
        seed_metrics = read_seed_metrics(task_dir)
        for init in inits:
            found = [m["seed"] for m in seed_metrics if m["init"] == init]
            if sorted(found) != sorted(seeds):
                raise BertforgeError(
                    f"{task_dir}: init {init!r} has seeds {sorted(found)}, params.yaml "
                    f"finetune.seeds is {sorted(seeds)}; re-run finetune@{name}"
                )
        seed_metrics = [m for m in seed_metrics if m["init"] in inits and m["seed"] in seeds]
        results[name] = (json.loads(info_path.read_text(encoding="utf-8")), seed_metrics)
    return results


def evaluate_results(
    results: Mapping[str, tuple[Mapping[str, Any], Sequence[Mapping[str, Any]]]],
    inits: Sequence[str],
    seeds: Sequence[int],
    headline_split: str,
) -> dict[str, Any]:
    """The evaluation table (metrics/eval.json): per task and init, mean ± std of every metric
    on dev and test, and the GLUE-style average — per seed, the mean of the tasks' scores —
    as mean ± std over seeds, with the pretrained − scratch difference."""
    tasks = {}
    for name, (info, seed_metrics) in results.items():
        summary = summarize_seeds(info, seed_metrics)
        tasks[name] = {
            "primary_metric": info["metric"],
            "test_is_dev": info["test_is_dev"],
            **{split: {init: summary[init][split] for init in inits} for split in ("test", "dev")},
        }
    average: dict[str, Any] = {}
    for split in ("test", "dev"):
        average[split] = {}
        for init in inits:
            per_seed = [
                np.mean(
                    [
                        next(m for m in metrics if m["init"] == init and m["seed"] == seed)[split][
                            "score"
                        ]
                        for _, metrics in results.values()
                    ]
                )
                for seed in seeds
            ]
            average[split][init] = mean_std(per_seed)
        if {"pretrained", "scratch"} <= set(inits):
            pretrained, scratch = average[split]["pretrained"], average[split]["scratch"]
            average[split]["delta"] = pretrained["mean"] - scratch["mean"]
    return {
        "headline_split": headline_split,
        "inits": list(inits),
        "seeds": list(seeds),
        "average": average,
        "tasks": tasks,
    }


def _cell(stats: Mapping[str, float]) -> str:
    return f"{stats['mean']:.3f} ± {stats['std']:.3f}"


def render_report(evaluation: Mapping[str, Any]) -> str:
    """reports/eval.md: the headline table, then every metric on test and dev."""
    headline = evaluation["headline_split"]
    inits = evaluation["inits"]
    compare = {"pretrained", "scratch"} <= set(inits)
    seeds = ", ".join(str(seed) for seed in evaluation["seeds"])
    lines = [
        "# Evaluation: pretrained vs from scratch",
        "",
        f"Headline split: **{headline}**. Each cell is the mean ± sample standard deviation over "
        f"seeds {seeds}. The dev split chose each run's best epoch, so dev numbers are "
        "optimistic; test numbers are the ones to quote.",
        "",
        "| task | metric | " + " | ".join(inits) + (" | Δ |" if compare else " |"),
        "| --- | --- | " + " | ".join("---:" for _ in inits) + (" | ---: |" if compare else " |"),
    ]
    daggers = False
    for name, task in evaluation["tasks"].items():
        metric = task["primary_metric"]
        stats = task[headline]
        mark = " †" if task["test_is_dev"] and headline == "test" else ""
        daggers = daggers or bool(mark)
        cells = [_cell(stats[init][metric]) for init in inits]
        if compare:
            cells.append(
                f"{stats['pretrained'][metric]['mean'] - stats['scratch'][metric]['mean']:+.3f}"
            )
        lines.append(f"| {name}{mark} | {metric} | " + " | ".join(cells) + " |")
    average = evaluation["average"][headline]
    cells = [_cell(average[init]) for init in inits] + (
        [f"{average['delta']:+.3f}"] if compare else []
    )
    lines.append("| **average** | score | " + " | ".join(f"**{c}**" for c in cells) + " |")
    lines += [
        "",
        "A task's *score* is its primary metric, averaged with its GLUE partner (F1 with accuracy, "
        "Pearson with Spearman) and over MNLI's matched and mismatched sets, as GLUE does; the "
        "average is the mean of the task scores, computed per seed.",
    ]
    if daggers:
        lines += [
            "",
            "† No labelled test split (GLUE): the test column repeats dev, which also chose the "
            "best epoch.",
        ]
    if compare:
        spread = max(average["pretrained"]["std"], average["scratch"]["std"])
        verdict = "more" if average["delta"] > spread else "no more"
        lines += [
            "",
            f"Pretrained − scratch on the average: {average['delta']:+.3f}, {verdict} than the "
            f"seed-to-seed standard deviation ({spread:.3f}).",
        ]
    for split in (headline, "dev" if headline == "test" else "test"):
        lines += ["", f"## All metrics, {split}", ""]
        lines.append("| task | metric | " + " | ".join(inits) + " |")
        lines.append("| --- | --- | " + " | ".join("---:" for _ in inits) + " |")
        for name, task in evaluation["tasks"].items():
            for metric in task[split][inits[0]]:
                cells = [_cell(task[split][init][metric]) for init in inits]
                lines.append(f"| {name} | {metric} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"
