"""register: the pretrained encoder and each task's best fine-tuned model into the MLflow registry.

Reads data/pretrained/model, data/finetuned/<task>/ and metrics/eval.json; registers a new
version of `register.encoder_model_name` (fill-mask) and of `register.task_model_name` for every
task in finetune.tasks (the init=pretrained seed with the best dev score), each a pyfunc model
logged from code with its lineage and eval metrics as tags (docs/registry.md). Writes
metrics/registry.json (names, kinds and content hashes; the version numbers are printed).
Promotion to @champion is a separate, human step: `bertforge promote <name>`.
"""

from __future__ import annotations

from pathlib import Path

from bertforge.finetune.params import FinetuneParams
from bertforge.io import write_json_atomic
from bertforge.params import load_section
from bertforge.registry.candidates import (
    FINETUNED,
    PRETRAINED_MODEL,
    pipeline_candidates,
    validate_candidates,
)
from bertforge.registry.params import RegisterParams
from bertforge.registry.register import (
    DATA_TAG_PREFIX,
    register_candidates,
    registered_metrics,
    registry_summary,
    source_data_hashes,
)
from bertforge.registry.summary import EVAL_METRICS
from bertforge.stage import run_stage
from bertforge.tracking import TAG_PREFIX, stage_run

REGISTRY_METRICS = Path("metrics/registry.json")


def main() -> None:
    params = load_section(RegisterParams, "register")
    finetune = load_section(FinetuneParams, "finetune")
    candidates = pipeline_candidates(params, list(finetune.tasks), finetune.max_seq_length)
    validate_candidates(candidates)
    inputs = {"pretrained": PRETRAINED_MODEL, "finetuned": FINETUNED, "eval": EVAL_METRICS}
    with stage_run("register", params, inputs=inputs) as run:
        base_tags = {f"{DATA_TAG_PREFIX}{path}": md5 for path, md5 in source_data_hashes().items()}
        base_tags[f"{TAG_PREFIX}pipeline_run_id"] = run.pipeline_run_id or "unknown"
        versions = register_candidates(candidates, base_tags, params.fill_mask_top_k)
        summary = registry_summary(versions)
        write_json_atomic(REGISTRY_METRICS, summary)
        run.log_artifact(REGISTRY_METRICS)
        run.log_pipeline_metrics(registered_metrics(candidates, versions))
    for version in versions:
        uri = f"models:/{version.name}/{version.version}"
        print(f"registered {version.name} version {version.version}  ({uri})")


if __name__ == "__main__":
    run_stage(main)
