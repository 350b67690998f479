"""What every task card.md ends with, from its card.json: sources and licences, the label balance
per split, and the baselines with their protocol. Shared by build_embedded_data.py and
build_chinese_data.py, whose cards differ only above these sections."""

from __future__ import annotations

from bertforge.constants import TASK_SPLITS


def card_tail(card: dict) -> list[str]:
    """The "Sources", "Label balance" and "Baselines" sections, as lines (a blank one last)."""
    lines = ["## Sources", ""]
    for source in card["sources"]:
        lines.append(
            f"- Debian package `{source['package']}` {source['version']}: {source['upstream']}. "
            f"Licence: {source['licence']}."
        )
    lines += ["", "## Label balance", "", "| label | train | dev | test |", "|---|---|---|---|"]
    balance = card["label_statistics"]
    if card["task_type"] == "sentence_pair_regression":
        for score_bin in sorted(balance["train"]["bins"]):
            counts = [balance[split]["bins"].get(score_bin, 0) for split in TASK_SPLITS]
            lines.append(f"| score {score_bin} | {' | '.join(map(str, counts))} |")
        means = [str(balance[split]["mean"]) for split in TASK_SPLITS]
        lines.append(f"| mean score | {' | '.join(means)} |")
    else:
        for label in card["labels"]:
            counts = [balance[split].get(label, 0) for split in TASK_SPLITS]
            lines.append(f"| {label} | {' | '.join(map(str, counts))} |")
    lines += ["", "## Baselines (test split)", ""]
    for name, scores in card["baselines"].items():
        shown = ", ".join(f"{metric} {value}" for metric, value in scores.items())
        lines.append(f"- {name}: {shown}")
    lines += ["", f"Protocol: {card['baseline_protocol']}.", ""]
    return lines
