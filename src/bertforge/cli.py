"""The `bertforge` command: what is not a pipeline stage — promotion, rollback, lineage, predict.

    bertforge versions NAME                       versions, aliases and primary metric
    bertforge promote NAME [--version N] [--margin X] [--force --reason "..."]
    bertforge rollback NAME                       swap @champion and @previous
    bertforge lineage models:/NAME@ALIAS          commit, params, data hashes, runs, how to rebuild
    bertforge predict models:/NAME@ALIAS "text" ["text b"] [--top-k K]
    bertforge results                             the pipeline's headline, from metrics/

`results` reads only metrics/eval.json and metrics/pretrain.json (`make repro` prints it last);
the other commands use the registry: the project's MLflow store
(`bertforge.tracking.tracking_uri`: the repo's mlflow.db unless MLFLOW_TRACKING_URI is set).
Bad input — an unknown model, version or alias, a malformed ``models:/`` URI, a promotion the
gate refuses, a missing metrics/eval.json — is one ``error:`` line and exit code 2, with the
registry unchanged. Runs as ``bertforge ...`` or ``python -m bertforge.cli ...``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from bertforge.errors import BertforgeError
from bertforge.finetune.params import FinetuneParams
from bertforge.io import read_json
from bertforge.params import PARAMS_FILE, load_section
from bertforge.registry.lineage import lineage_report
from bertforge.registry.params import RegisterParams
from bertforge.registry.predict import predict
from bertforge.registry.promote import promote, rollback
from bertforge.registry.store import Registry, parse_model_uri
from bertforge.registry.summary import EVAL_METRICS, EvalSummary
from bertforge.tracking import TAG_PREFIX

PRETRAIN_METRICS = Path("metrics/pretrain.json")
REPORT = Path("reports/eval.md")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="bertforge",
        description="Promote, roll back, trace and try registered models; show the results.",
    )
    commands = parser.add_subparsers(dest="command", required=True)

    versions_command = commands.add_parser("versions", help="list a model's versions and aliases")
    versions_command.add_argument("name")

    promote_command = commands.add_parser(
        "promote", help="make a version @champion if it beats the current one"
    )
    promote_command.add_argument("name")
    promote_command.add_argument("--version", help="version number (default: the latest)")
    promote_command.add_argument(
        "--margin",
        type=float,
        help="required gain in the primary metric (default: register.promotion_margin)",
    )
    promote_command.add_argument("--force", action="store_true", help="promote despite the gate")
    promote_command.add_argument("--reason", help="why --force: stored as a tag on the version")

    rollback_command = commands.add_parser("rollback", help="swap @champion and @previous")
    rollback_command.add_argument("name")

    lineage_command = commands.add_parser(
        "lineage", help="where a version came from, how to rebuild it"
    )
    lineage_command.add_argument("uri", metavar="models:/NAME@ALIAS")

    predict_command = commands.add_parser("predict", help="run a registered model on one input")
    predict_command.add_argument("uri", metavar="models:/NAME@ALIAS")
    predict_command.add_argument(
        "texts", nargs="+", metavar="TEXT", help="a text, or two for pair tasks"
    )
    predict_command.add_argument("--top-k", type=int, help="fill-mask: how many tokens to show")

    commands.add_parser(
        "results", help="each model's scores on the report's headline split, from metrics/"
    )
    return parser


def promotion_margin(override: float | None) -> float:
    """--margin if given, else params.yaml's register.promotion_margin, else the default."""
    if override is not None:
        if override < 0:
            raise BertforgeError(f"--margin must be >= 0, got {override}")
        return override
    if Path(PARAMS_FILE).is_file():
        return load_section(RegisterParams, "register").promotion_margin
    return RegisterParams().promotion_margin


def run(args: argparse.Namespace) -> None:
    """Check the arguments that need no registry, then run the command against it."""
    if args.command == "results":  # files only, no registry
        print(results_summary())
        return
    if args.command == "lineage":
        parse_model_uri(args.uri)
    if args.command == "predict":
        parse_model_uri(args.uri)
        if args.top_k is not None and args.top_k < 1:
            raise BertforgeError(f"--top-k must be at least 1, got {args.top_k}")
    if args.command == "promote":
        if args.reason and not args.force:
            raise BertforgeError("--reason goes with --force")
        if args.version is not None and not args.version.isdigit():
            raise BertforgeError(f"--version must be a version number, got {args.version!r}")
    margin = promotion_margin(args.margin) if args.command == "promote" else 0.0
    models = Registry()

    if args.command == "versions":
        print(versions_table(models, args.name))
    elif args.command == "promote":
        promote(models, args.name, args.version, margin, force=args.force, reason=args.reason)
    elif args.command == "rollback":
        rollback(models, args.name)
    elif args.command == "lineage":
        print(lineage_report(models, args.uri))
    elif args.command == "predict":
        os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
        result = predict(models, args.uri, args.texts, top_k=args.top_k)
        for record in result.to_dict(orient="records"):
            print(json.dumps(record, ensure_ascii=False, default=float))


def versions_table(models: Registry, name: str) -> str:
    """One line per version: number, aliases, primary metric, commit."""
    aliases_by_version: dict[str, list[str]] = {}
    for alias, version in models.aliases(name).items():
        aliases_by_version.setdefault(version, []).append(f"@{alias}")
    lines = [f"{name}"]
    for version in models.versions(name):
        summary = EvalSummary.from_tags(version.tags)
        metric = (
            f"{summary.primary_metric} {summary.primary.mean:.4f} ± {summary.primary.std:.4f}"
            if summary
            else "no eval metrics"
        )
        commit = version.tags.get(f"{TAG_PREFIX}git_commit", "unknown")[:10]
        tags = " ".join(sorted(aliases_by_version.get(str(version.version), [])))
        lines.append(f"  v{version.version:<4} {tags:<22} {metric:<34} commit {commit}")
    return "\n".join(lines)


def params_task_order(params_path: Path = PARAMS_FILE) -> list[str]:
    """The tasks in params.yaml's order (the report's), or none when it cannot be read."""
    try:
        return list(load_section(FinetuneParams, "finetune", params_path).tasks)
    except BertforgeError:
        return []


def results_summary(
    eval_path: Path = EVAL_METRICS,
    pretrain_path: Path = PRETRAIN_METRICS,
    params_path: Path = PARAMS_FILE,
) -> str:
    """The pipeline's headline for a terminal: every model's average and task scores on the
    report's headline split (± standard error), the tasks at floor, pretrained − scratch, and
    the pretraining's held-out accuracies (when metrics/pretrain.json is there). Tasks come in
    params.yaml's order, as in the report (eval.json keeps them sorted by name)."""
    evaluation = read_json(eval_path, "evaluate")
    order = params_task_order(params_path)
    try:
        split, tasks = evaluation["headline_split"], evaluation["tasks"]
        named = [name for name in order if name in tasks] + sorted(set(tasks) - set(order))
        tasks = {name: tasks[name] for name in named}
        models = [*evaluation["inits"], *evaluation["baselines"]]
        average = evaluation["average"]
        names = [f"{name}*" if task["at_floor"] else name for name, task in tasks.items()]
        rows = [["model", "average", *names]]
        for model in models:
            mean, error = average[split][model]["mean"], average["standard_error"][model]
            scores = [f"{task[split][model]['score']['mean']:.3f}" for task in tasks.values()]
            rows.append([model, f"{mean:.3f} ± {error:.3f}", *scores])
    except (KeyError, TypeError) as error:
        raise BertforgeError(
            f"{eval_path}: not the evaluate stage's output (no {error}); re-run `dvc repro`"
        ) from None
    widths = [max(len(row[column]) for row in rows) for column in range(len(rows[0]))]
    lines = [
        f"{eval_path}, {split} split: mean over seeds ± standard error (every metric: {REPORT})",
        "",
        *(
            "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
            for row in rows
        ),
        "",
    ]
    if {"pretrained", "scratch"} <= set(models):
        spread = average[split]["pretrained"]["std"]
        lines.append(
            f"pretrained - scratch on the average: {average[split]['delta']:+.3f} "
            f"(seed std of pretrained: {spread:.3f})"
        )
    if any(task["at_floor"] for task in tasks.values()):
        lines.append("* at floor: no model beats the majority baseline by two standard errors")
    if pretrain_path.is_file():
        heldout = read_json(pretrain_path, "pretrain").get("heldout", {})
        if "mlm_accuracy" in heldout:
            lines.append(
                f"pretraining ({pretrain_path}): held-out MLM accuracy "
                f"{heldout['mlm_accuracy']:.2%} ({heldout['mlm_accuracy_over_unigram']:.2f}x "
                f"unigram), NSP {heldout['nsp_accuracy']:.1%} "
                f"(majority {heldout['nsp_majority_accuracy']:.1%})"
            )
    lines.append("runs: .venv/bin/mlflow ui --backend-store-uri sqlite:///mlflow.db")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``bertforge`` console script; returns the exit code."""
    args = build_parser().parse_args(argv)
    try:
        run(args)
        sys.stdout.flush()
    except BertforgeError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except BrokenPipeError:
        # the reader left (`bertforge results | head -3`): no traceback, and none at exit when
        # Python flushes stdout again (the recipe of Python's signal module docs)
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
