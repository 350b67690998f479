"""Registering: each candidate becomes a new version, logged from code, with its lineage.

Each model (the pretrained encoder as fill-mask, each task's best fine-tuned seed) is logged as
a pyfunc model *from code* (``bertforge/serving.py`` + the HF-format model directory as an
artifact + the bertforge package as code) in its own run nested under the register stage run,
and becomes a new version of its registered model with tags that say where it came from:

* ``bertforge.git_commit``, ``bertforge.git_dirty``, ``bertforge.params_digest``,
  ``bertforge.dvc_exp_name`` (in an experiment), ``bertforge.pipeline_run_id``;
* ``bertforge.input.<name>``: content hashes of what the version was made from (the model
  directory, the metrics files), and ``bertforge.data.<path>``: the md5 DVC recorded in dvc.lock
  for each source input of the pipeline (raw data that no stage produces);
* ``bertforge.parent.<key>``: the checkpoint pretraining continued from, if any (path and
  sha256, or hub id and revision), read from the pretrained export's lineage.json;
* ``bertforge.pretrain_run_id``, ``bertforge.finetune_run_id``, ``bertforge.register_run_id``:
  the MLflow runs that trained and logged it;
* ``bertforge.primary_metric``, ``bertforge.num_seeds`` and ``bertforge.metric.<m>.mean`` /
  ``.std`` for every eval metric (mean and standard deviation over fine-tuning seeds).
"""

from __future__ import annotations

import math
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from bertforge.parent import exported_parent, parent_tags
from bertforge.registry.candidates import Candidate, validate_candidates
from bertforge.registry.store import registered_model_exists, registry_client
from bertforge.tracking import INPUT_TAG_PREFIX, TAG_PREFIX, lineage_tags

# the bertforge package (logged as code with every model) and the model's definition in it
PACKAGE_DIR = Path(__file__).parents[1]
SERVING_FILE = PACKAGE_DIR / "serving.py"

KIND_TAG = f"{TAG_PREFIX}kind"
PAIR_TAG = f"{TAG_PREFIX}pair"
DATA_TAG_PREFIX = f"{TAG_PREFIX}data."


def signature_for(kind: str, pair: bool, top_k: int) -> Any:
    """The model's MLflow signature: text (or text pairs) in; label/scores, value or tokens out."""
    from mlflow.models import ModelSignature
    from mlflow.types.schema import Array, ColSpec, Map, ParamSchema, ParamSpec, Schema

    inputs = [ColSpec("string", "text")] + ([ColSpec("string", "text_pair")] if pair else [])
    if kind == "fill-mask":
        outputs = [
            ColSpec(Array("string"), "tokens"),
            ColSpec(Array("double"), "scores"),
            ColSpec("string", "sequence"),
        ]
        return ModelSignature(
            Schema(inputs), Schema(outputs), ParamSchema([ParamSpec("top_k", "long", top_k)])
        )
    if kind == "regression":
        return ModelSignature(Schema(inputs), Schema([ColSpec("double", "value")]))
    outputs = [
        ColSpec("string", "label"),
        ColSpec("double", "score"),
        ColSpec(Map("double"), "scores"),
    ]
    return ModelSignature(Schema(inputs), Schema(outputs))


def input_example_for(kind: str, pair: bool) -> dict[str, list[str]]:
    """A request the logged model answers at log time (MLflow runs it: a smoke test)."""
    if kind == "fill-mask":
        return {"text": ["the [MASK] of the story."]}
    example = {"text": ["the first sentence."]}
    if pair:
        example["text_pair"] = ["the second sentence."]
    return example


def pip_requirements() -> list[str]:
    """What the served model imports, pinned to this environment's versions."""
    from importlib.metadata import version

    pins = []
    packages = ("mlflow", "torch", "tokenizers", "safetensors", "numpy", "pandas", "pyyaml", "tqdm")
    for package in packages:
        pins.append(f"{package}=={version(package).split('+')[0]}")
    return pins


def source_data_hashes(lock_file: Path = Path("dvc.lock")) -> dict[str, str]:
    """md5 of each pipeline source input recorded in dvc.lock: deps no stage produces, not code."""
    if not lock_file.is_file():
        return {}
    lock = yaml.safe_load(lock_file.read_text(encoding="utf-8")) or {}
    stages = lock.get("stages", {}) or {}
    produced = {out["path"] for stage in stages.values() for out in stage.get("outs", []) or []}
    hashes = {}
    for stage in stages.values():
        for dep in stage.get("deps", []) or []:
            path = dep.get("path", "")
            digest = dep.get("md5") or dep.get("etag") or dep.get("checksum") or ""
            if path and digest and path not in produced and not path.endswith(".py"):
                hashes[path] = str(digest)
    return dict(sorted(hashes.items()))


def register_candidates(
    candidates: Sequence[Candidate], base_tags: Mapping[str, str], top_k: int
) -> list[Any]:
    """Log and register each candidate as a new version; returns the ModelVersions.

    Must run inside an active MLflow run (the register stage run): each model is logged in a
    nested run of its own, so that each run's params are one model's config. The bertforge
    package goes with each model as code (without caches), so a served model runs the code that
    registered it.
    """
    validate_candidates(candidates)
    with tempfile.TemporaryDirectory(prefix="bertforge-code-") as code_dir:
        package = Path(code_dir) / PACKAGE_DIR.name
        shutil.copytree(PACKAGE_DIR, package, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        return [register_one(candidate, base_tags, top_k, package) for candidate in candidates]


def register_one(
    candidate: Candidate, base_tags: Mapping[str, str], top_k: int, package: Path
) -> Any:
    """Log one candidate from code in a nested run and create its registered version."""
    import mlflow

    tags = dict(base_tags) | lineage_tags(candidate.inputs) | dict(candidate.tags)
    parent = exported_parent(Path(candidate.inputs.get("pretrained", candidate.model_dir)))
    if parent:  # continued pretraining: the checkpoint it started from
        tags |= parent_tags(parent)
    tags[KIND_TAG] = candidate.kind
    tags[PAIR_TAG] = str(candidate.pair).lower()
    same = version_of_same_content(candidate.name, tags)
    if same is not None:  # an identical re-run: the registry already holds these inputs
        return same
    if candidate.summary is not None:
        tags |= candidate.summary.to_tags()
    model_config: dict[str, Any] = {"kind": candidate.kind, "top_k": top_k}
    if candidate.max_length:
        model_config["max_length"] = candidate.max_length
    with mlflow.start_run(run_name=f"register-{candidate.name}", nested=True) as run:
        tags[f"{TAG_PREFIX}register_run_id"] = run.info.run_id
        mlflow.set_tags(tags)
        info = mlflow.pyfunc.log_model(
            name=candidate.name,
            python_model=str(SERVING_FILE),
            artifacts={"model": str(candidate.model_dir)},  # serving.MODEL_ARTIFACT
            model_config=model_config,
            code_paths=[str(package)],
            signature=signature_for(candidate.kind, candidate.pair, top_k),
            input_example=input_example_for(candidate.kind, candidate.pair),
            pip_requirements=pip_requirements(),
        )
        if candidate.summary is not None:
            mlflow.log_metrics(
                {
                    f"{name}.{part}": getattr(stat, part)
                    for name, stat in candidate.summary.metrics.items()
                    for part in ("mean", "std")
                    if math.isfinite(getattr(stat, part))
                },
                model_id=info.model_id,
            )
    client = registry_client()
    if not registered_model_exists(client, candidate.name):
        client.create_registered_model(
            candidate.name, tags={KIND_TAG: candidate.kind}, description=candidate.model_description
        )
    return client.create_model_version(
        candidate.name,
        info.model_uri,
        run_id=run.info.run_id,
        tags=tags,
        description=candidate.description,
        model_id=info.model_id,
    )


def version_of_same_content(name: str, tags: Mapping[str, str]) -> Any | None:
    """The latest version of `name` if it was made from the same inputs (content hashes)."""
    client = registry_client()
    if not registered_model_exists(client, name):
        return None
    latest = client.search_model_versions(
        f"name = '{name}'", order_by=["version_number DESC"], max_results=1
    )

    def inputs(version_tags: Mapping[str, str]) -> dict[str, str]:
        return {k: v for k, v in version_tags.items() if k.startswith(INPUT_TAG_PREFIX)}

    return latest[0] if latest and inputs(latest[0].tags) == inputs(tags) else None


def registry_summary(versions: Sequence[Any]) -> dict[str, Any]:
    """metrics/registry.json: what each registered model holds, by content.

    Version numbers count the versions in one MLflow store (a fresh clone starts at 1), so they
    stay out of this git-tracked file: the stage prints them and logs them to the pipeline run.
    The model's content hash (its ``bertforge.input.model`` tag) finds its version in any store.
    """
    return {
        "models": {
            version.name: {
                "kind": version.tags.get(KIND_TAG, ""),
                "model_sha256": version.tags.get(f"{INPUT_TAG_PREFIX}model", ""),
            }
            for version in versions
        }
    }


def registered_metrics(
    candidates: Sequence[Candidate], versions: Sequence[Any]
) -> dict[str, float]:
    """Each registered model's version and primary metric, for the pipeline run: the numbers
    that compare pipeline variants (``register.<model>.<metric>.mean`` / ``.std``)."""
    metrics: dict[str, float] = {}
    for candidate, version in zip(candidates, versions, strict=True):
        metrics[f"register.{candidate.name}.version"] = float(version.version)
        if candidate.summary is not None:
            primary = candidate.summary.primary
            key = f"register.{candidate.name}.{candidate.summary.primary_metric}"
            metrics |= {f"{key}.mean": primary.mean, f"{key}.std": primary.std}
    return metrics
