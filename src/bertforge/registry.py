"""The MLflow Model Registry side of bertforge: register with lineage, promote, roll back, trace.

Registering: each model (the pretrained encoder as fill-mask, each task's best fine-tuned seed)
is logged as a pyfunc model *from code* (`bertforge/serving.py` + the HF-format model directory as
an artifact + the bertforge package as code) in its own run nested under the register stage run,
and becomes a new version of its registered model with tags that say where it came from:

* ``bertforge.git_commit``, ``bertforge.git_dirty``, ``bertforge.params_digest``,
  ``bertforge.dvc_exp_name`` (in an experiment), ``bertforge.pipeline_run_id``;
* ``bertforge.input.<name>``: content hashes of what the version was made from (the model
  directory, the metrics files), and ``bertforge.data.<path>``: the md5 DVC recorded in dvc.lock
  for each source input of the pipeline (raw data that no stage produces);
* ``bertforge.pretrain_run_id``, ``bertforge.finetune_run_id``, ``bertforge.register_run_id``:
  the MLflow runs that trained and logged it;
* ``bertforge.primary_metric``, ``bertforge.num_seeds`` and ``bertforge.metric.<m>.mean`` /
  ``.std`` for every eval metric (mean and standard deviation over fine-tuning seeds).

Promoting: a version becomes ``@champion`` only if it beats the current champion's mean primary
metric by more than the margin *and* by more than the seed spread (max of both stds); the
champion it replaces becomes ``@previous``. `--force` overrides the gate with a recorded reason,
never the need for eval metrics. Every refusal is a `BertforgeError`: one line, nothing changed.
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import sys
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from bertforge.errors import BertforgeError
from bertforge.params import require
from bertforge.tracking import EXPERIMENT_NAME, TAG_PREFIX, tracking_uri

CHAMPION = "champion"
PREVIOUS = "previous"
SERVING_FILE = Path(__file__).with_name("serving.py")
PACKAGE_DIR = Path(__file__).parent
MODEL_FILES = ("config.json", "model.safetensors", "tokenizer.json")

PRETRAINED_MODEL = Path("data/pretrained/model")
FINETUNED = Path("data/finetuned")
EVAL_METRICS = Path("metrics/eval.json")
INIT = "pretrained"

PRIMARY_METRIC_TAG = f"{TAG_PREFIX}primary_metric"
NUM_SEEDS_TAG = f"{TAG_PREFIX}num_seeds"
METRIC_TAG_PREFIX = f"{TAG_PREFIX}metric."
DATA_TAG_PREFIX = f"{TAG_PREFIX}data."
KIND_TAG = f"{TAG_PREFIX}kind"
REASON_TAG = f"{TAG_PREFIX}promotion_reason"

MODEL_NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


# --- parameters --------------------------------------------------------------------------------


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


# --- eval metrics as version tags ----------------------------------------------------------------


@dataclass(frozen=True)
class MetricStat:
    """One metric over fine-tuning seeds."""

    mean: float
    std: float


@dataclass(frozen=True)
class EvalSummary:
    """What promotion compares: every metric's mean and std over seeds, and which one decides.

    All primary metrics of bertforge tasks (accuracy, F1, Matthews, Pearson, Spearman, and the
    average of task scores) are better when higher.
    """

    primary_metric: str
    metrics: Mapping[str, MetricStat]
    num_seeds: int

    def __post_init__(self) -> None:
        if self.primary_metric not in self.metrics:
            raise BertforgeError(
                f"primary metric {self.primary_metric!r} is not among the metrics "
                f"({', '.join(sorted(self.metrics))})"
            )

    @property
    def primary(self) -> MetricStat:
        return self.metrics[self.primary_metric]

    def to_tags(self) -> dict[str, str]:
        tags = {PRIMARY_METRIC_TAG: self.primary_metric, NUM_SEEDS_TAG: str(self.num_seeds)}
        for name, stat in sorted(self.metrics.items()):
            tags[f"{METRIC_TAG_PREFIX}{name}.mean"] = repr(float(stat.mean))
            tags[f"{METRIC_TAG_PREFIX}{name}.std"] = repr(float(stat.std))
        return tags

    @classmethod
    def from_tags(cls, tags: Mapping[str, str]) -> EvalSummary | None:
        """The summary stored on a version, or None when its primary metric is missing."""
        primary = tags.get(PRIMARY_METRIC_TAG)
        metrics: dict[str, MetricStat] = {}
        for key, value in tags.items():
            if key.startswith(METRIC_TAG_PREFIX) and key.endswith(".mean"):
                name = key[len(METRIC_TAG_PREFIX) : -len(".mean")]
                std = tags.get(f"{METRIC_TAG_PREFIX}{name}.std", "nan")
                try:
                    metrics[name] = MetricStat(float(value), float(std))
                except ValueError:
                    continue
        if not primary or primary not in metrics or not math.isfinite(metrics[primary].mean):
            return None
        seeds = tags.get(NUM_SEEDS_TAG, "0")
        return cls(primary, metrics, int(seeds) if seeds.isdigit() else 0)


# --- what gets registered ------------------------------------------------------------------------


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


def validate_candidates(candidates: Sequence[Candidate]) -> None:
    """Everything that can be wrong with the inputs, checked before anything is registered."""
    for candidate in candidates:
        for required in MODEL_FILES:
            if not (candidate.model_dir / required).is_file():
                raise BertforgeError(
                    f"{candidate.model_dir / required}: not found (needed to register "
                    f"{candidate.name})"
                )


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

    from bertforge.tracking import lineage_tags

    tags = dict(base_tags) | lineage_tags(candidate.inputs) | dict(candidate.tags)
    tags[KIND_TAG] = candidate.kind
    tags[f"{TAG_PREFIX}pair"] = str(candidate.pair).lower()
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
    if not _registered_model_exists(client, candidate.name):
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


def registry_uri() -> str:
    """The registry lives in the tracking store unless MLFLOW_REGISTRY_URI says otherwise.

    (Never call ``mlflow.set_registry_uri`` in-process: it also writes MLFLOW_REGISTRY_URI into
    the environment, which would then outlive the call.)
    """
    return os.environ.get("MLFLOW_REGISTRY_URI") or tracking_uri()


def registry_client() -> Any:
    """A client bound to the project's store and registry, whatever MLflow's globals say."""
    import mlflow

    return mlflow.MlflowClient(tracking_uri=tracking_uri(), registry_uri=registry_uri())


def _registered_model_exists(client: Any, name: str) -> bool:
    from mlflow.exceptions import MlflowException

    try:
        client.get_registered_model(name)
    except MlflowException as error:
        if error.error_code == "RESOURCE_DOES_NOT_EXIST":
            return False
        raise
    return True


# --- the pipeline's outputs as candidates ----------------------------------------------------


def read_json(path: Path, producer: str) -> Any:
    """A JSON output of an earlier stage; missing or malformed is one line naming it."""
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise BertforgeError(f"{path}: not found; run the {producer} stage first") from None
    except json.JSONDecodeError as error:
        raise BertforgeError(f"{path}: not valid JSON: {error.msg}") from None


def _stats(table: Mapping[str, Any], where: str) -> dict[str, MetricStat]:
    try:
        return {
            name: MetricStat(float(value["mean"]), float(value["std"]))
            for name, value in table.items()
        }
    except (KeyError, TypeError, ValueError, AttributeError):
        raise BertforgeError(f"{where}: expected {{metric: {{mean, std}}}}") from None


def task_summary(
    evaluation: Mapping[str, Any], task: str, where: Path = EVAL_METRICS
) -> EvalSummary:
    """A task's metrics for init=pretrained on the report's headline split, from eval.json."""
    try:
        split = evaluation["headline_split"]
        entry = evaluation["tasks"][task]
        table = entry[split][INIT]
        primary = entry["primary_metric"]
        seeds = len(evaluation["seeds"])
    except (KeyError, TypeError):
        raise BertforgeError(
            f"{where}: has no {INIT!r} results for task {task!r}; re-run the evaluate stage"
        ) from None
    metrics = _stats(table, f"{where}: tasks.{task}.{split}.{INIT}")
    if primary not in metrics:
        raise BertforgeError(f"{where}: task {task!r} has no primary metric {primary!r}")
    return EvalSummary(primary, metrics, seeds)


def encoder_summary(evaluation: Mapping[str, Any], where: Path = EVAL_METRICS) -> EvalSummary:
    """The encoder's metrics: the GLUE-style average score (primary) and each task's metrics."""
    try:
        split = evaluation["headline_split"]
        average = evaluation["average"][split][INIT]
        tasks = list(evaluation["tasks"])
    except (KeyError, TypeError):
        raise BertforgeError(
            f"{where}: has no {INIT!r} average; re-run the evaluate stage"
        ) from None
    metrics = _stats({"average_score": average}, f"{where}: average.{split}.{INIT}")
    for task in tasks:
        summary = task_summary(evaluation, task, where)
        for name in dict.fromkeys([summary.primary_metric, "score"]):
            if name in summary.metrics:
                metrics[f"{task}.{name}"] = summary.metrics[name]
    return EvalSummary("average_score", metrics, len(evaluation.get("seeds", [])))


def best_seed(task_dir: Path) -> dict[str, Any]:
    """metrics.json of the init=pretrained seed with the best dev score (lowest seed on ties)."""
    from bertforge.finetune import read_seed_metrics

    seeds = [metrics for metrics in read_seed_metrics(task_dir) if metrics.get("init") == INIT]
    if not seeds:
        raise BertforgeError(f"{task_dir}/{INIT}: no seed-*/metrics.json; run finetune first")
    try:
        return max(seeds, key=lambda metrics: (metrics["dev"]["score"], -metrics["seed"]))
    except (KeyError, TypeError):
        raise BertforgeError(f"{task_dir}/{INIT}: a metrics.json has no dev score") from None


def finetune_run_id(task: str, seed: int, pretrain_run: str | None, seed_dir: Path) -> str:
    """The MLflow run that fine-tuned this seed: from its lineage.json, else found by its tags.

    The fallback is the newest run tagged with this task, init and pretraining run whose
    ``seed`` param matches; "unknown" when the store has none (e.g. a copied directory).
    """
    lineage = seed_dir / "lineage.json"
    if lineage.is_file():
        run_id = read_json(lineage, "finetune").get("mlflow_run_id")
        if run_id:
            return str(run_id)
    client = registry_client()
    experiment = client.get_experiment_by_name(EXPERIMENT_NAME)
    if experiment is None:
        return "unknown"
    query = (
        f"tags.`{TAG_PREFIX}task` = '{task}' and tags.`{TAG_PREFIX}init` = '{INIT}' "
        f"and params.seed = '{seed}'"
    )
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
    from bertforge.finetune import pretrain_run_id

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
                        task, best["seed"], pretrain_run, seed_dir
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


def registry_summary(versions: Sequence[Any]) -> dict[str, Any]:
    """metrics/registry.json: each registered model's new version."""
    return {
        "models": {
            version.name: {
                "version": int(version.version),
                "uri": f"models:/{version.name}/{version.version}",
                "kind": version.tags.get(KIND_TAG, ""),
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


# --- addressing versions -------------------------------------------------------------------------


@dataclass(frozen=True)
class ModelRef:
    """A parsed ``models:/`` URI: a model name and either a version or an alias."""

    name: str
    version: str | None = None
    alias: str | None = None


def parse_model_uri(uri: str) -> ModelRef:
    """``models:/<name>@<alias or version>``, ``models:/<name>/<version>`` or ``/latest``."""
    expected = "expected models:/<name>@<alias or version> or models:/<name>/<version>"
    if not uri.startswith("models:/"):
        raise BertforgeError(f"{uri!r} is not a models:/ URI ({expected})")
    path = uri[len("models:/") :]
    if "@" in path:
        name, _, suffix = path.partition("@")
        if "/" in name or "/" in suffix:
            raise BertforgeError(f"{uri!r} is malformed ({expected})")
    elif path.count("/") == 1:
        name, _, suffix = path.partition("/")
    else:
        raise BertforgeError(f"{uri!r} is malformed ({expected})")
    if not MODEL_NAME_PATTERN.match(name) or not suffix:
        raise BertforgeError(f"{uri!r} is malformed ({expected})")
    if suffix.isdigit() or re.fullmatch(r"[vV]\d+", suffix):
        return ModelRef(name, version=str(int(suffix.lstrip("vV"))))
    if suffix == "latest":
        return ModelRef(name)
    if not re.fullmatch(r"[\w-]+", suffix):
        raise BertforgeError(f"{uri!r} has an invalid alias {suffix!r}")
    return ModelRef(name, alias=suffix)


class Registry:
    """The registry operations bertforge needs, each failing in one line on bad input."""

    def __init__(self, client: Any | None = None) -> None:
        import mlflow

        if client is None:
            mlflow.set_tracking_uri(tracking_uri())
            client = registry_client()
        self.client = client

    def registered_model(self, name: str) -> Any:
        from mlflow.exceptions import MlflowException

        try:
            return self.client.get_registered_model(name)
        except MlflowException as error:
            if error.error_code != "RESOURCE_DOES_NOT_EXIST":
                raise
        known = sorted(model.name for model in self.client.search_registered_models())
        listing = ", ".join(known) if known else "none registered yet"
        raise BertforgeError(f"unknown model {name!r} (registered: {listing})")

    def versions(self, name: str) -> list[Any]:
        self.registered_model(name)
        found = self.client.search_model_versions(f"name = '{name}'")
        return sorted(found, key=lambda version: int(version.version))

    def version(self, name: str, version: str | int | None = None) -> Any:
        """A version by number, or the latest when `version` is None."""
        versions = self.versions(name)
        if not versions:
            raise BertforgeError(f"model {name!r} has no versions")
        if version is None:
            return versions[-1]
        for candidate in versions:
            if str(candidate.version) == str(version):
                return candidate
        numbers = ", ".join(str(v.version) for v in versions)
        raise BertforgeError(f"model {name!r} has no version {version} (versions: {numbers})")

    def aliases(self, name: str) -> dict[str, str]:
        """alias → version number of a registered model."""
        return {
            alias: str(version)
            for alias, version in (self.registered_model(name).aliases or {}).items()
        }

    def resolve(self, ref: ModelRef) -> Any:
        if ref.alias is None:
            return self.version(ref.name, ref.version)
        aliases = self.aliases(ref.name)
        if ref.alias not in aliases:
            elsewhere = self._models_with_alias(ref.alias, exclude=ref.name)
            hint = f"; {ref.alias!r} is an alias of {', '.join(elsewhere)}" if elsewhere else ""
            have = ", ".join(f"@{alias}" for alias in sorted(aliases)) or "none"
            raise BertforgeError(
                f"model {ref.name!r} has no alias {ref.alias!r} (its aliases: {have}){hint}"
            )
        return self.version(ref.name, aliases[ref.alias])

    def _models_with_alias(self, alias: str, exclude: str) -> list[str]:
        return sorted(
            model.name
            for model in self.client.search_registered_models()
            if model.name != exclude and alias in (model.aliases or {})
        )

    # --- promotion --------------------------------------------------------------------------

    def promote(
        self,
        name: str,
        version: str | int | None,
        margin: float,
        force: bool = False,
        reason: str | None = None,
        out: Any = None,
    ) -> Any:
        """Make `version` (default: latest) the champion if it wins; return the new champion.

        Prints both versions' metrics side by side to `out` (stdout) before deciding, so a
        refusal shows why. Raises `BertforgeError` on refusal, with the registry unchanged.
        """
        out = out or sys.stdout
        if force and not (reason and reason.strip()):
            raise BertforgeError('--force needs --reason "..." (it is stored on the version)')
        candidate = self.version(name, version)
        summary = EvalSummary.from_tags(candidate.tags)
        aliases = self.aliases(name)
        champion = self.version(name, aliases[CHAMPION]) if CHAMPION in aliases else None
        champion_summary = EvalSummary.from_tags(champion.tags) if champion else None
        print(comparison_table(name, champion, champion_summary, candidate, summary), file=out)
        if summary is None:
            raise BertforgeError(
                f"{name} version {candidate.version} has no eval metrics "
                f"({PRIMARY_METRIC_TAG} and its mean): refusing to promote it"
            )
        if champion is not None and str(champion.version) == str(candidate.version):
            print(f"{name} version {candidate.version} is already @{CHAMPION}", file=out)
            return candidate
        if champion is not None:
            verdict = gate(summary, champion_summary, margin)
            if verdict and not force:
                raise BertforgeError(
                    f"not promoting {name} version {candidate.version}: {verdict} "
                    f'(override with --force --reason "...")'
                )
            if verdict:
                print(f"forced past the gate ({verdict})", file=out)
        if force:
            self.client.set_model_version_tag(
                name, str(candidate.version), REASON_TAG, reason.strip()
            )
        if champion is not None:
            self.client.set_registered_model_alias(name, PREVIOUS, str(champion.version))
        self.client.set_registered_model_alias(name, CHAMPION, str(candidate.version))
        replaced = f" (version {champion.version} is now @{PREVIOUS})" if champion else ""
        print(f"{name} version {candidate.version} is now @{CHAMPION}{replaced}", file=out)
        return candidate

    def rollback(self, name: str, out: Any = None) -> Any:
        """Swap @champion and @previous; returns the version that is champion again."""
        out = out or sys.stdout
        aliases = self.aliases(name)
        if CHAMPION not in aliases or PREVIOUS not in aliases:
            missing = CHAMPION if CHAMPION not in aliases else PREVIOUS
            raise BertforgeError(f"model {name!r} has no @{missing} version to roll back to")
        current, previous = aliases[CHAMPION], aliases[PREVIOUS]
        self.client.set_registered_model_alias(name, CHAMPION, previous)
        self.client.set_registered_model_alias(name, PREVIOUS, current)
        print(
            f"{name} version {previous} is @{CHAMPION} again "
            f"(version {current} is now @{PREVIOUS})",
            file=out,
        )
        return self.version(name, previous)


def gate(candidate: EvalSummary, champion: EvalSummary | None, margin: float) -> str | None:
    """Why `candidate` may not replace `champion`, or None when it clearly beats it.

    Clearly: its mean primary metric exceeds the champion's by more than `margin` and by more
    than the seed spread max(std_candidate, std_champion) — a difference within one standard
    deviation of seed noise is not evidence of a better model.
    """
    metric = candidate.primary_metric
    if champion is None or metric not in champion.metrics:
        return f"the champion has no {metric!r} metric to compare with"
    new, old = candidate.metrics[metric], champion.metrics[metric]
    difference = new.mean - old.mean
    spread = max(_finite(new.std), _finite(old.std))
    if difference <= margin:
        return (
            f"{metric} {new.mean:.4f} does not beat the champion's {old.mean:.4f} "
            f"by more than the margin {margin:g} (difference {difference:+.4f})"
        )
    if abs(difference) <= spread:
        return (
            f"{metric} difference {difference:+.4f} is within the seed spread "
            f"(max std {spread:.4f})"
        )
    return None


def _finite(value: float) -> float:
    return value if math.isfinite(value) else 0.0


def comparison_table(
    name: str,
    champion: Any | None,
    champion_summary: EvalSummary | None,
    candidate: Any,
    candidate_summary: EvalSummary | None,
) -> str:
    """Both versions' metrics (mean ± std over seeds) side by side, primary metric first."""
    columns = [
        (
            f"@{CHAMPION} v{champion.version}" if champion else f"@{CHAMPION} (none)",
            champion_summary,
        ),
        (f"candidate v{candidate.version}", candidate_summary),
    ]
    primary = (
        (candidate_summary or champion_summary).primary_metric
        if (candidate_summary or champion_summary)
        else None
    )
    names = sorted(
        {metric for _, summary in columns if summary for metric in summary.metrics},
        key=lambda metric: (metric != primary, metric),
    )
    rows = [["metric", *(title for title, _ in columns), "difference"]]
    for metric in names:
        cells = []
        stats = []
        for _, summary in columns:
            stat = summary.metrics.get(metric) if summary else None
            stats.append(stat)
            cells.append(f"{stat.mean:.4f} ± {stat.std:.4f}" if stat else "-")
        difference = f"{stats[1].mean - stats[0].mean:+.4f}" if all(stats) else "-"
        label = f"{metric} (primary)" if metric == primary else metric
        rows.append([label, *cells, difference])
    seeds = [str(summary.num_seeds) if summary else "-" for _, summary in columns]
    rows.append(["seeds", *seeds, ""])
    if len(rows) == 2:
        rows.insert(1, ["(no eval metrics)", "-", "-", ""])
    widths = [max(len(row[index]) for row in rows) for index in range(len(rows[0]))]
    lines = [f"{name}: promotion candidate vs champion"]
    for number, row in enumerate(rows):
        lines.append("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)))
        if number == 0:
            lines.append("  ".join("-" * width for width in widths))
    return "\n".join(line.rstrip() for line in lines)


# --- lineage -------------------------------------------------------------------------------------


def lineage_report(registry: Registry, uri: str) -> str:
    """Where a registered version came from, and the commands that rebuild it."""
    ref = parse_model_uri(uri)
    version = registry.resolve(ref)
    tags = dict(version.tags)

    def tag(key: str, default: str = "-") -> str:
        return tags.get(f"{TAG_PREFIX}{key}", default)

    commit = tag("git_commit", "unknown")
    dirty = tag("git_dirty", "unknown")
    exp_name = tags.get(f"{TAG_PREFIX}dvc_exp_name")
    lines = [f"{uri} -> {version.name} version {version.version}"]
    if version.description:
        lines.append(f"  {version.description}")
    lines += [
        "",
        "code",
        f"  git commit      {commit}"
        + ("  (working tree had uncommitted changes)" if dirty == "true" else ""),
        f"  dvc experiment  {exp_name or '-'}",
        f"  params digest   {tag('params_digest')}  (first 16 hex of sha256 of params.yaml)",
        "",
        "data (content hashes)",
    ]
    data = {key: value for key, value in sorted(tags.items()) if key.startswith(DATA_TAG_PREFIX)}
    inputs = {
        key: value for key, value in sorted(tags.items()) if key.startswith(f"{TAG_PREFIX}input.")
    }
    for key, value in [*data.items(), *inputs.items()]:
        lines.append(f"  {key.removeprefix(TAG_PREFIX):<28} {value}")
    if not data and not inputs:
        lines.append("  (none recorded)")
    lines += ["", "runs"]
    for label, key in (
        ("pretraining", "pretrain_run_id"),
        ("fine-tuning", "finetune_run_id"),
        ("registration", "register_run_id"),
    ):
        lines.append(f"  {label:<14} {tag(key)}")
    summary = EvalSummary.from_tags(tags)
    lines += ["", "eval metrics (mean ± std over seeds)"]
    if summary is None:
        lines.append("  (none recorded: this version cannot be promoted)")
    else:
        for name, stat in sorted(
            summary.metrics.items(), key=lambda item: (item[0] != summary.primary_metric, item[0])
        ):
            marker = "  (primary)" if name == summary.primary_metric else ""
            lines.append(f"  {name:<20} {stat.mean:.4f} ± {stat.std:.4f}{marker}")
        lines.append(f"  seeds                {summary.num_seeds}")
    params = pipeline_params(
        registry.client, tags.get(f"{TAG_PREFIX}register_run_id") or version.run_id
    )
    lines += ["", "params" + (" (params.yaml of the pipeline run)" if params else "")]
    lines += [f"  {key} = {value}" for key, value in sorted(params.items())] or ["  (not recorded)"]
    lines += ["", "reproduce", f"  git checkout {commit}"]
    if exp_name:
        lines.append(f"  dvc exp apply {exp_name}   # the experiment's params and outputs")
    lines.append("  dvc repro")
    if dirty == "true":
        lines.append(
            "  # the commit alone may differ: the working tree was dirty when it was built"
        )
    lines.append(f"  # check: params.yaml digest must be {tag('params_digest')}")
    return "\n".join(lines)


def pipeline_params(client: Any, run_id: str | None) -> dict[str, str]:
    """The flattened params.yaml logged on the pipeline run above `run_id` (or its own params)."""
    if not run_id:
        return {}
    from mlflow.exceptions import MlflowException

    try:
        run = client.get_run(run_id)
        seen = {run.info.run_id}
        while run.data.tags.get(f"{TAG_PREFIX}kind") != "pipeline":
            parent_id = run.data.tags.get("mlflow.parentRunId")
            if not parent_id or parent_id in seen:
                return dict(run.data.params)
            seen.add(parent_id)
            run = client.get_run(parent_id)
    except MlflowException:
        return {}
    return dict(run.data.params)


# --- quick prediction ----------------------------------------------------------------------------


def predict(registry: Registry, uri: str, texts: Iterable[str], top_k: int | None = None) -> Any:
    """Load a registered version as pyfunc and run it on one text (or one pair of texts)."""
    import mlflow
    import pandas as pd
    from mlflow.exceptions import MlflowException

    version = registry.resolve(parse_model_uri(uri))
    texts = list(texts)
    pair = version.tags.get(f"{TAG_PREFIX}pair") == "true"
    kind = version.tags.get(KIND_TAG, "")
    if pair and len(texts) != 2:
        raise BertforgeError(f"{version.name} is a text-pair model: give two texts")
    if not pair and len(texts) != 1:
        raise BertforgeError(f"{version.name} takes one text, got {len(texts)}")
    frame = pd.DataFrame({"text": [texts[0]]} | ({"text_pair": [texts[1]]} if pair else {}))
    model = mlflow.pyfunc.load_model(f"models:/{version.name}/{version.version}")
    params = {"top_k": top_k} if top_k and kind == "fill-mask" else None
    try:
        return model.predict(frame, params=params)
    except MlflowException as error:
        raise BertforgeError(str(error.message).splitlines()[0]) from None
