"""Pretraining ablation at the default wall-clock budget: each row is one change from the default.

Usage:
    python benchmarks/ablate_pretrain.py                # every variant, 8 min of pretraining each
    python benchmarks/ablate_pretrain.py --variants default nsp_off
    python benchmarks/ablate_pretrain.py --write-docs   # and the table into docs/pretrain.md
    python benchmarks/ablate_pretrain.py --smoke --minutes 0.2   # checks the script runs

For each variant, in one temp copy of the project: a 30-step calibration run measures the
variant's seconds per step, `max_steps` is set to fill `--minutes` of pretraining (warmup stays
`warmup_steps`, capped at a tenth of the steps), then `dvc repro evaluate` pretrains, fine-tunes
every task (pretrained and scratch, every seed) and evaluates. The row holds held-out MLM loss
and accuracy, NSP accuracy, and the downstream test average of the pretrained model with its
seed std (the same fine-tuning for every row). Budget is wall clock on this machine, so run it
on a quiet one; expect about (calibration 1 min + pretraining --minutes + fine-tuning and
evaluation ~6 min + examples ~2 min when they change) per variant: ~3.5 hours for all 15 at 8 min.

The ``original`` preset is the seed algorithm exactly as Google's BERT defines it (MLM + NSP,
15 % of tokens masked, 80/10/10 [MASK]/random/kept, static masks, sequences of 128 with 10 %
short ones, at most 20 predictions, the MLM loss normalised over the whole (global) batch as on
a TPU); docs/pretrain.md lists where the default departs from it.
"""

from __future__ import annotations

import argparse
import platform
import sys
from datetime import date
from pathlib import Path

from pipeline_runs import (
    ROOT,
    average,
    project_copy,
    read_params,
    replace_section,
    repro,
    results,
    seconds_per_step,
    smoke_base,
    steps_for_budget,
    write_params,
)

# Google's create_pretraining_data.py + run_pretraining.py, as far as this pipeline has the knob
PRESETS: dict[str, dict[str, object]] = {
    "original": {
        "examples.nsp": True,
        "examples.masked_lm_prob": 0.15,
        "examples.max_seq_length": 128,
        "examples.max_predictions_per_seq": 20,
        "examples.short_seq_prob": 0.1,
        "examples.whole_word_mask": False,
        "examples.masking": "static",
        "pretrain.mlm_loss_normalisation": "global_batch",
    },
}

SHAPES = {
    "shape_small": {
        "hidden_size": 64,
        "num_hidden_layers": 4,
        "num_attention_heads": 2,
        "intermediate_size": 256,
    },
    "shape_wide": {
        "hidden_size": 256,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "intermediate_size": 1024,
    },
    "shape_deep": {
        "hidden_size": 128,
        "num_hidden_layers": 8,
        "num_attention_heads": 4,
        "intermediate_size": 512,
    },
}

# each variant: one change from the default (params.yaml as committed)
VARIANTS: dict[str, dict[str, object]] = {
    "default": {},
    "original": PRESETS["original"],
    "nsp_off": {"examples.nsp": False},
    "mask_30": {"examples.masked_lm_prob": 0.30, "examples.max_predictions_per_seq": 40},
    "mask_40": {"examples.masked_lm_prob": 0.40, "examples.max_predictions_per_seq": 52},
    "seq_64": {"examples.max_seq_length": 64, "examples.max_predictions_per_seq": 10},
    **{
        name: {f"pretrain.model.{k}": v for k, v in shape.items()} for name, shape in SHAPES.items()
    },
    "lr_3e-4": {"pretrain.lr": 3e-4},
    "lr_3e-3": {"pretrain.lr": 3e-3},
    "one_cycle": {"one_cycle": True},  # warmup over 30 % of the steps, then linear decay
    "global_batch_16": {"pretrain.global_batch_size": 16, "pretrain.micro_batch_size": 8},
    "global_batch_64": {"pretrain.global_batch_size": 64},
    "loss_global_batch": {"pretrain.mlm_loss_normalisation": "global_batch"},
}

# examples knobs that were 128-token defaults scale down with a smaller smoke budget
COLUMNS = (
    "variant",
    "steps",
    "MLM loss",
    "MLM acc",
    "× unigram",
    "NSP acc",
    "avg test (pretrained)",
    "avg test (scratch)",
)


def run_variant(project: Path, base: dict, name: str, minutes: float, fixed: dict) -> list[str]:
    """One row: calibrate, pretrain for `minutes`, fine-tune and evaluate."""
    overrides = {**fixed, **{k: v for k, v in VARIANTS[name].items() if k != "one_cycle"}}
    rate = seconds_per_step(project, base, overrides)
    steps = steps_for_budget(rate, minutes)
    warmup_default = int(fixed.get("pretrain.warmup_steps", base["pretrain"]["warmup_steps"]))
    # one-cycle: up for 30 % of the steps, down for the rest; otherwise warmup as the default
    warmup = (
        int(0.3 * steps)
        if VARIANTS[name].get("one_cycle")
        else min(warmup_default, steps // 10 or 1)
    )
    overrides |= {
        "pretrain.max_steps": steps,
        "pretrain.warmup_steps": warmup,
        "pretrain.checkpoint_every": steps,
    }
    write_params(project, base, overrides)
    seconds = repro(project, "evaluate")
    found = results(project)
    heldout = found["pretrain"]["heldout"]
    pretrained, pretrained_std = average(found["eval"], "pretrained")
    scratch, scratch_std = average(found["eval"], "scratch")
    print(f"{name}: {steps} steps, {seconds:.0f} s", file=sys.stderr, flush=True)
    return [
        name,
        str(steps),
        f"{heldout['mlm_loss']:.3f}",
        f"{heldout['mlm_accuracy']:.3f}",
        f"{heldout['mlm_accuracy_over_unigram']:.2f}",
        f"{heldout['nsp_accuracy']:.3f}" if heldout.get("nsp_accuracy") is not None else "–",
        f"{pretrained:.3f} ± {pretrained_std:.3f}",
        f"{scratch:.3f} ± {scratch_std:.3f}",
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), metavar="NAME")
    parser.add_argument(
        "--minutes", type=float, default=8.0, help="pretraining wall clock per variant"
    )
    parser.add_argument(
        "--smoke", action="store_true", help="a tiny pipeline: checks the script runs"
    )
    parser.add_argument(
        "--write-docs", action="store_true", help="put the table in docs/pretrain.md"
    )
    parser.add_argument("--keep", action="store_true", help="keep the temp project copy")
    args = parser.parse_args()
    unknown = [name for name in args.variants if name not in VARIANTS]
    if unknown:
        known = ", ".join(VARIANTS)
        print(f"error: unknown variant or preset {unknown[0]!r} (known: {known})", file=sys.stderr)
        sys.exit(2)
    rows = []
    with project_copy(args.keep) as project:
        base = read_params(project)
        fixed = smoke_base(base) if args.smoke else {}
        if args.smoke:
            fixed.pop("pretrain.max_steps")
        for name in args.variants:
            rows.append(run_variant(project, base, name, args.minutes, fixed))
    machine = f"{platform.node()} ({platform.processor() or platform.machine()})"
    smoke = " (SMOKE: meaningless)" if args.smoke else ""
    table = "\n".join(
        [
            f"Measured {date.today()} on {machine}, {args.minutes:g} min of pretraining per "
            f"variant{smoke}; `python benchmarks/ablate_pretrain.py --write-docs`.",
            "",
            "| " + " | ".join(COLUMNS) + " |",
            "| " + " | ".join("---" for _ in COLUMNS) + " |",
            *("| " + " | ".join(row) + " |" for row in rows),
        ]
    )
    print(table)
    if args.write_docs:
        replace_section(ROOT / "docs/pretrain.md", "ablate_pretrain", table)


if __name__ == "__main__":
    main()
