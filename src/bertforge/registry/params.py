"""The ``register:`` section of params.yaml, and what a registered model may be called."""

from __future__ import annotations

import re
from dataclasses import dataclass

from bertforge.params import require

MODEL_NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


@dataclass(frozen=True)
class RegisterParams:
    """The ``register:`` section of params.yaml.

    `task_model_name` contains ``{task}``; `promotion_margin` is how much a candidate's mean
    primary metric must exceed the champion's (in the metric's units) to replace it.
    """

    encoder_model_name: str = "bertforge-encoder"
    task_model_name: str = "bertforge-{task}"
    promotion_margin: float = 0.0
    fill_mask_top_k: int = 5

    def __post_init__(self) -> None:
        require(
            bool(MODEL_NAME_PATTERN.match(self.encoder_model_name)),
            "encoder_model_name",
            "must be letters, digits, '_', '.', '-'",
            self.encoder_model_name,
        )
        require(
            "{task}" in self.task_model_name
            and bool(MODEL_NAME_PATTERN.match(self.task_model_name.replace("{task}", "t"))),
            "task_model_name",
            "must contain {task} and otherwise letters, digits, '_', '.', '-'",
            self.task_model_name,
        )
        require(
            self.promotion_margin >= 0, "promotion_margin", "must be >= 0", self.promotion_margin
        )
        require(
            self.fill_mask_top_k >= 1, "fill_mask_top_k", "must be at least 1", self.fill_mask_top_k
        )

    def model_name(self, task: str) -> str:
        return self.task_model_name.replace("{task}", task)
