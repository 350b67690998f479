"""What the register stage registers, read from the pipeline's outputs.

The candidates are the pretrained encoder (as fill-mask, judged by the average task score) and,
for each task, the ``init=pretrained`` seed with the best dev score (lowest seed on ties), judged
by the task's metrics on the report's headline split. Each carries its model directory, its
eval summary, and the tags that say which runs made it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bertforge.errors import BertforgeError
from bertforge.finetune.summary import read_seed_metrics
from bertforge.io import read_json
from bertforge.registry.params import RegisterParams
from bertforge.registry.store import registry_client
from bertforge.registry.summary import (
    EVAL_METRICS,
    INIT,
    EvalSummary,
    encoder_summary,
    task_summary,
)
from bertforge.tracking import EXPERIMENT_NAME, TAG_PREFIX

PRETRAINED_MODEL = Path("data/pretrained/model")
FINETUNED = Path("data/finetuned")
MODEL_FILES = ("config.json", "model.safetensors", "tokenizer.json")


@dataclass(frozen=True)
class Candidate:
    """One model to register: its files, what it does, how well, and where it came from."""

    name: str
    kind: str  # "fill-mask", "classification" or "regression"
    model_dir: Path
    summary: EvalSummary | None
    pair: bool = False
    description: str = ""
    inputs: Mapping[str, Path] = field(default_factory=dict)
    tags: Mapping[str, str] = field(default_factory=dict)
    max_length: int | None = None
    model_description: str = ""  # of the registered model, set when it is first created


def validate_candidates(candidates: Sequence[Candidate]) -> None:
    """Everything that can be wrong with the inputs, checked before anything is registered."""
    for candidate in candidates:
        for required in MODEL_FILES:
            if not (candidate.model_dir / required).is_file():
                raise BertforgeError(
                    f"{candidate.model_dir / required}: not found (needed to register "
                    f"{candidate.name})"
                )


def best_seed(task_dir: Path) -> dict[str, Any]:
    """metrics.json of the init=pretrained seed with the best dev score (lowest seed on ties)."""
    seeds = [metrics for metrics in read_seed_metrics(task_dir) if metrics.get("init") == INIT]
    if not seeds:
        raise BertforgeError(f"{task_dir}/{INIT}: no seed-*/metrics.json; run finetune first")
    try:
        # the best dev score wins; on a tie, the lowest seed
        return max(seeds, key=lambda metrics: (metrics["dev"]["score"], -metrics["seed"]))
    except (KeyError, TypeError):
        raise BertforgeError(f"{task_dir}/{INIT}: a metrics.json has no dev score") from None


def finetune_run_id(
    task: str, seed: int, pretrain_run: str | None, learning_rate: float | None = None
) -> str:
    """The MLflow run that fine-tuned this seed, found by its tags (no run id is in its files).

    It is the newest run tagged with this task, init and pretraining run whose ``seed`` param
    matches, and its ``learning_rate`` param where the seed's metrics name one (a search over
    rates logs a run per rate); "unknown" when the store has none (e.g. a copied directory).
    """
    client = registry_client()
    experiment = client.get_experiment_by_name(EXPERIMENT_NAME)
    if experiment is None:
        return "unknown"
    query = (
        f"tags.`{TAG_PREFIX}task` = '{task}' and tags.`{TAG_PREFIX}init` = '{INIT}' "
        f"and params.seed = '{seed}'"
    )
    if learning_rate is not None:
        query += f" and params.learning_rate = '{learning_rate}'"
    if pretrain_run:
        query += f" and tags.`{TAG_PREFIX}pretrain_run_id` = '{pretrain_run}'"
    found = client.search_runs(
        [experiment.experiment_id], query, order_by=["attributes.start_time DESC"], max_results=1
    )
    return found[0].info.run_id if found else "unknown"


def pipeline_candidates(
    params: RegisterParams, tasks: Sequence[str], max_seq_length: int | None
) -> list[Candidate]:
    """The encoder and each task's best fine-tuned seed, read from the pipeline's outputs."""
    from bertforge.finetune.pretrained import pretrain_run_id  # imports torch: not for the CLI

    evaluation = read_json(EVAL_METRICS, "evaluate")
    split = evaluation.get("headline_split", "test")
    pretrain_run = pretrain_run_id(PRETRAINED_MODEL)
    common = {f"{TAG_PREFIX}pretrain_run_id": pretrain_run or "unknown"}
    common[f"{TAG_PREFIX}eval_split"] = split
    candidates = [
        Candidate(
            name=params.encoder_model_name,
            kind="fill-mask",
            model_dir=PRETRAINED_MODEL,
            summary=encoder_summary(evaluation),
            description=(
                "Pretrained BERT encoder (fill-mask). Primary metric: the average over tasks of "
                f"the fine-tuned score on {split}, mean over seeds."
            ),
            inputs={"model": PRETRAINED_MODEL, "eval": EVAL_METRICS},
            tags=common,
            model_description="The bertforge pretrained BERT encoder, served as fill-mask.",
        )
    ]
    for task in tasks:
        task_dir = FINETUNED / task
        info = read_json(task_dir / "task.json", f"finetune@{task}")
        best = best_seed(task_dir)
        seed_dir = task_dir / INIT / f"seed-{best['seed']}"
        summary = task_summary(evaluation, task)
        candidates.append(
            Candidate(
                name=params.model_name(task),
                kind=str(info.get("kind", "classification")),
                model_dir=seed_dir / "model",
                summary=summary,
                pair=bool(info.get("pair", False)),
                description=(
                    f"{task}: fine-tuned from the pretrained encoder; seed {best['seed']}, the "
                    f"best of {summary.num_seeds} on dev. Metrics: {split}, mean ± std over seeds."
                ),
                inputs={
                    "model": seed_dir / "model",
                    "pretrained": PRETRAINED_MODEL,
                    "eval": EVAL_METRICS,
                },
                tags=common
                | {
                    f"{TAG_PREFIX}task": task,
                    f"{TAG_PREFIX}init": INIT,
                    f"{TAG_PREFIX}best_seed": str(best["seed"]),
                    f"{TAG_PREFIX}finetune_run_id": finetune_run_id(
                        task, best["seed"], pretrain_run, best.get("learning_rate")
                    ),
                },
                max_length=max_seq_length,
                model_description=(
                    f"bertforge model for task {task} ({info.get('kind', 'classification')}"
                    f"{', text pairs' if info.get('pair') else ''}), fine-tuned from the "
                    "pretrained encoder."
                ),
            )
        )
    return candidates
