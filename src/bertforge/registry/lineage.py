"""Where a registered version came from, and the commands that rebuild it.

Everything comes from the version's tags (written by `bertforge.registry.register`) and from the
params.yaml logged on the pipeline run its registration belongs to.
"""

from __future__ import annotations

from typing import Any

from bertforge.parent import PARENT_TAG_PREFIX
from bertforge.registry.register import DATA_TAG_PREFIX
from bertforge.registry.store import Registry, parse_model_uri
from bertforge.registry.summary import EvalSummary
from bertforge.tracking import INPUT_TAG_PREFIX, TAG_PREFIX


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
    inputs = {key: value for key, value in sorted(tags.items()) if key.startswith(INPUT_TAG_PREFIX)}
    for key, value in [*data.items(), *inputs.items()]:
        lines.append(f"  {key.removeprefix(TAG_PREFIX):<28} {value}")
    if not data and not inputs:
        lines.append("  (none recorded)")
    parent = {
        key.removeprefix(PARENT_TAG_PREFIX): value
        for key, value in sorted(tags.items())
        if key.startswith(PARENT_TAG_PREFIX)
    }
    lines += ["", "parent checkpoint (continued pretraining)"]
    lines += [f"  {key:<14} {value}" for key, value in parent.items()] or [
        "  (none: pretrained from random weights)"
    ]
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
