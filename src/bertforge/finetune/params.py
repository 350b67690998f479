"""The ``finetune`` section of params.yaml, validated once at stage start."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Literal

from bertforge.errors import BertforgeError
from bertforge.finetune.pooling import Pooling
from bertforge.finetune.tasks import TaskSpec
from bertforge.params import parse, require

Init = Literal["pretrained", "scratch"]
Schedule = Literal["linear", "cosine", "constant"]


@dataclass(frozen=True)
class TaskTraining:
    """The knobs one task may set for itself (``finetune.tasks.<name>.training``), each in place
    of the section's: a small task's epochs, a task's own learning rates. Those a run needs the
    same across tasks (seeds, inits, sequence length) are not among them."""

    learning_rate: float | list[float] | None = None
    epochs: int | None = None
    batch_size: int | None = None
    weight_decay: float | None = None
    warmup_fraction: float | None = None
    schedule: Schedule | None = None
    hidden_dropout: float | None = None
    attention_dropout: float | None = None


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
    epochs: int = 6
    # one peak rate, or several: each (init, seed) trained at every rate, and per init the rate
    # with the best mean dev score over the seeds kept (`choose_learning_rate`)
    learning_rate: float | list[float] = 1e-3
    weight_decay: float = 0.01
    warmup_fraction: float = 0.1
    schedule: Schedule = "linear"
    max_grad_norm: float | None = 1.0
    strategy: Literal["full", "freeze", "head_only"] = "full"
    frozen_layers: int = 0
    hidden_dropout: float = 0.0
    attention_dropout: float = 0.0
    pooling: Pooling = "cls"
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
        for name in specs:
            self.for_task_training(name)  # each task's own knobs checked up front, as the rest
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
        rates = self.learning_rates
        require(len(rates) >= 1, "learning_rate", "must list at least one rate", rates)
        require(len(set(rates)) == len(rates), "learning_rate", "must not repeat", rates)
        require(all(r > 0 for r in rates), "learning_rate", "must be positive", self.learning_rate)
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

    @property
    def learning_rates(self) -> list[float]:
        """The rates to try: one, or the listed ones (chosen between on dev)."""
        rate = self.learning_rate
        return list(rate) if isinstance(rate, list | tuple) else [rate]

    def at_rate(self, learning_rate: float) -> FinetuneParams:
        """These params with the one rate a run trains at."""
        return dataclasses.replace(self, learning_rate=learning_rate)

    def for_task_training(self, name: str) -> FinetuneParams:
        """These params as task `name` trains: its `training` knobs in place of the section's
        (and its spec the only task, its knobs applied). A bad knob is a one-line error."""
        spec = self.task(name)
        where = f"params.yaml: finetune.tasks.{name}.training"
        knobs = dataclasses.asdict(parse(TaskTraining, spec.training, where))
        # the knobs the task sets replace the section's; seeds, inits and length stay shared
        changes = {knob: value for knob, value in knobs.items() if value is not None}
        if not changes:
            return self
        values = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        applied = {name: dataclasses.replace(spec, training={})}
        return parse(FinetuneParams, values | changes | {"tasks": applied}, where)

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
