"""Promotion to ``@champion`` through the gate, the alias moves, and rollback.

A version becomes ``@champion`` only if it beats the current champion's mean primary metric by
more than the margin *and* by more than the seed spread (max of both stds); the champion it
replaces becomes ``@previous``. `--force` overrides the gate with a recorded reason, never the
need for eval metrics. Every refusal is a `BertforgeError`: one line, nothing changed.
"""

from __future__ import annotations

import math
import sys
from typing import Any

from bertforge.errors import BertforgeError
from bertforge.registry.store import Registry
from bertforge.registry.summary import PRIMARY_METRIC_TAG, EvalSummary
from bertforge.tracking import TAG_PREFIX

CHAMPION = "champion"
PREVIOUS = "previous"
REASON_TAG = f"{TAG_PREFIX}promotion_reason"


def promote(
    registry: Registry,
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
    candidate = registry.version(name, version)
    summary = EvalSummary.from_tags(candidate.tags)
    aliases = registry.aliases(name)
    champion = registry.version(name, aliases[CHAMPION]) if CHAMPION in aliases else None
    champion_summary = EvalSummary.from_tags(champion.tags) if champion else None
    print(comparison_table(name, champion, champion_summary, candidate, summary), file=out)
    # no eval metrics, no promotion: not even --force skips this
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
        registry.client.set_model_version_tag(
            name, str(candidate.version), REASON_TAG, reason.strip()
        )
    # the champion steps down to @previous, the candidate becomes @champion
    if champion is not None:
        registry.client.set_registered_model_alias(name, PREVIOUS, str(champion.version))
    registry.client.set_registered_model_alias(name, CHAMPION, str(candidate.version))
    replaced = f" (version {champion.version} is now @{PREVIOUS})" if champion else ""
    print(f"{name} version {candidate.version} is now @{CHAMPION}{replaced}", file=out)
    return candidate


def rollback(registry: Registry, name: str, out: Any = None) -> Any:
    """Swap @champion and @previous; returns the version that is champion again."""
    out = out or sys.stdout
    aliases = registry.aliases(name)
    if CHAMPION not in aliases or PREVIOUS not in aliases:
        missing = CHAMPION if CHAMPION not in aliases else PREVIOUS
        raise BertforgeError(f"model {name!r} has no @{missing} version to roll back to")
    current, previous = aliases[CHAMPION], aliases[PREVIOUS]
    # swap @champion and @previous: rolling back twice restores
    registry.client.set_registered_model_alias(name, CHAMPION, previous)
    registry.client.set_registered_model_alias(name, PREVIOUS, current)
    print(
        f"{name} version {previous} is @{CHAMPION} again (version {current} is now @{PREVIOUS})",
        file=out,
    )
    return registry.version(name, previous)


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
    # beat the champion's mean by more than the margin ...
    if difference <= margin:
        return (
            f"{metric} {new.mean:.4f} does not beat the champion's {old.mean:.4f} "
            f"by more than the margin {margin:g} (difference {difference:+.4f})"
        )
    # ... and by more than the seed spread, max(std_candidate, std_champion)
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
