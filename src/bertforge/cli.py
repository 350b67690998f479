"""The `bertforge` command: what is not a pipeline stage — promotion, rollback, lineage, predict.

    bertforge versions NAME                       versions, aliases and primary metric
    bertforge promote NAME [--version N] [--margin X] [--force --reason "..."]
    bertforge rollback NAME                       swap @champion and @previous
    bertforge lineage models:/NAME@ALIAS          commit, params, data hashes, runs, how to rebuild
    bertforge predict models:/NAME@ALIAS "text" ["text b"] [--top-k K]

The registry is the project's MLflow store (`bertforge.tracking.tracking_uri`: the repo's
mlflow.db unless MLFLOW_TRACKING_URI is set). Bad input — an unknown model, version or alias, a
malformed ``models:/`` URI, a promotion the gate refuses — is one ``error:`` line and exit code 2,
with the registry unchanged. Runs as ``bertforge ...`` or ``python -m bertforge.cli ...``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from bertforge.errors import BertforgeError
from bertforge.params import PARAMS_FILE, load_section
from bertforge.registry.lineage import lineage_report
from bertforge.registry.params import RegisterParams
from bertforge.registry.predict import predict
from bertforge.registry.promote import promote, rollback
from bertforge.registry.store import Registry, parse_model_uri
from bertforge.registry.summary import EvalSummary
from bertforge.tracking import TAG_PREFIX


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="bertforge", description="Promote, roll back, trace and try registered models."
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


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``bertforge`` console script; returns the exit code."""
    args = build_parser().parse_args(argv)
    try:
        run(args)
    except BertforgeError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
