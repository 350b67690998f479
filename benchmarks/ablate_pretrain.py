"""Pretraining ablation at the default wall-clock budget: each row is one change from the default
(or a named combination of them).

Usage:
    python benchmarks/ablate_pretrain.py                # every variant not yet in the results
    python benchmarks/ablate_pretrain.py --variants default nsp_off
    python benchmarks/ablate_pretrain.py --write-docs   # and the table into docs/pretrain.md
    python benchmarks/ablate_pretrain.py --rerun mask_30  # measure a kept row again
    python benchmarks/ablate_pretrain.py --smoke --minutes 0.2   # checks the script runs

The budget is the default's: the wall clock the committed params' `pretrain.max_steps` take on
this machine (`--minutes` to set another). For each variant, in one temp copy of the project: a
30-step calibration run measures the variant's seconds per step (a variant that changes only
the learning rate, its schedule, the loss normalisation or the seed costs what the default
costs per step and takes the default's rate), `max_steps` is set to fill the
budget (the default row keeps its own `max_steps`; warmup stays `warmup_steps`, capped at a
tenth of the steps), then `dvc repro evaluate` pretrains, fine-tunes every task (every seed) and
evaluates. Scratch fine-tuning depends only on the model shape and the vocabulary, so it runs
for the default, the shape rows and the vocabulary rows; the other rows' scratch is the
default's. The row holds held-out MLM loss and accuracy, NSP accuracy, and the downstream test
average with its seed std. The ``pretrain_seed_*`` rows are not changes but replicates of the
default with other pretraining seeds: how much a row moves by the draw of its one pretraining run
(`row_spread`), which widens every row's standard error when it exceeds the fine-tuning seeds'.

Each finished row is written at once to reports/ablate_pretrain.tsv under its run (`run_key`:
a digest of the params the row's pipeline ran on and its budget), and a later run skips the
variants whose run is found there (`--rerun` to measure one again): the table fills over several
sittings, variants that run the same params share one row, and rows measured at an earlier
default still serve the variants that run their params at the current one.
Budget is wall clock on this machine, so run it on a quiet one; expect about (calibration 1 min
+ pretraining ~5.5 min + fine-tuning and evaluation ~3 min + examples ~1 min when they change)
per variant: ~4 hours for all 25.

The ``original`` preset is the seed algorithm exactly as Google's BERT defines it (MLM + NSP,
15 % of tokens masked, 80/10/10 [MASK]/random/kept, static masks, sequences of 128 with 10 %
short ones, at most 20 predictions, the MLM loss normalised over the whole (global) batch as on
a TPU); docs/pretrain.md lists where the default departs from it.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import statistics
import subprocess
import sys
from collections.abc import Iterable
from datetime import date
from pathlib import Path

from machine import machine
from pipeline_runs import (
    CALIBRATION_STEPS,
    ROOT,
    average,
    project_copy,
    read_params,
    read_tsv,
    replace_section,
    repro,
    results,
    seconds_per_step,
    setting,
    smoke_base,
    stage_env,
    with_overrides,
    write_params,
    write_tsv,
)

from bertforge.tracking import git_state

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

# single changes that the combination rows below reuse
NSP_OFF: dict[str, object] = {"examples.nsp": False}
SEQ_64: dict[str, object] = {"examples.max_seq_length": 64, "examples.max_predictions_per_seq": 10}
# warmup over 30 % of the steps, then linear decay (not a param: `run_variant` sets the warmup)
ONE_CYCLE: dict[str, object] = {"one_cycle": True}

# each variant: one change from the default (params.yaml as committed), or a named
# combination of them
VARIANTS: dict[str, dict[str, object]] = {
    "default": {},
    "original": PRESETS["original"],
    "nsp_off": NSP_OFF,
    "mask_30": {"examples.masked_lm_prob": 0.30, "examples.max_predictions_per_seq": 40},
    "mask_40": {"examples.masked_lm_prob": 0.40, "examples.max_predictions_per_seq": 52},
    "seq_64": SEQ_64,
    **{
        name: {f"pretrain.model.{k}": v for k, v in shape.items()} for name, shape in SHAPES.items()
    },
    "lr_3e-4": {"pretrain.lr": 3e-4},
    "lr_3e-3": {"pretrain.lr": 3e-3},
    "one_cycle": ONE_CYCLE,
    "global_batch_16": {"pretrain.global_batch_size": 16, "pretrain.micro_batch_size": 8},
    "global_batch_64": {"pretrain.global_batch_size": 64},
    # per micro-batch (the default until the first ablation, run against it, showed no gain)
    "loss_micro_batch": {"pretrain.mlm_loss_normalisation": "micro_batch"},
    # pre-LN blocks (LayerNorm before attention and MLP, as Megatron-BERT): said to train faster
    # early and to stand higher learning rates, hence its second row at the rate that diverged
    "pre_ln": {"pretrain.model.pre_layer_norm": True},
    "pre_ln_lr_3e-3": {"pretrain.model.pre_layer_norm": True, "pretrain.lr": 3e-3},
    # combinations of the single changes whose rows came out ahead (each within a standard
    # error on its own): do they add up? NSP off with 64-token sequences (the fine-tuning
    # length), then with one-cycle too
    "nsp_off+seq_64": NSP_OFF | SEQ_64,
    "nsp_off+seq_64+one_cycle": NSP_OFF | SEQ_64 | ONE_CYCLE,
    # bf16 on a CPU with AMX or AVX512-BF16 (refused elsewhere): more steps in the same budget,
    # and more for a wider model, whose larger matrices gain more from the bf16 units
    "bf16": {"pretrain.precision": "bf16"},
    "bf16_wide": {
        "pretrain.precision": "bf16",
        **{f"pretrain.model.{k}": v for k, v in SHAPES["shape_wide"].items()},
    },
    # the vocabulary: 70 % of the default model's weights are its 16,000 embeddings, and the
    # MLM head's projection onto them is over a quarter of a step's matmuls: half as many make
    # a step cheaper and each piece more frequent, twice as many each piece more of a word
    "vocab_8k": {"vocab.vocab_size": 8000},
    "vocab_32k": {"vocab.vocab_size": 32000},
    # not changes but replicates: the default with other pretraining seeds (weights, data order),
    # how far a row moves by the draw of its one pretraining run, which the fine-tuning seeds'
    # spread does not cover (`row_spread` uses them for every row's standard error)
    "pretrain_seed_1": {"pretrain.seed": 1},
    "pretrain_seed_2": {"pretrain.seed": 2},
}
# the default and its replicates: one draw each of the pretraining at the default's params
PRETRAINING_DRAWS = ("default", "pretrain_seed_1", "pretrain_seed_2")

# keys that leave the compute of a step as the default's: such a row gets the default's steps
# (no calibration run, whose timing would only add noise)
SAME_COST = frozenset(
    {
        "pretrain.lr",
        "pretrain.mlm_loss_normalisation",
        "one_cycle",
        "pretrain.model.pre_layer_norm",
        "pretrain.seed",
    }
)

RESULTS = ROOT / "reports/ablate_pretrain.tsv"
# the params sections a row's pipeline runs on (what identifies the run; not the names of
# registered models or how the report bootstraps its errors)
RUN_SECTIONS = ("ingest", "vocab", "examples", "pretrain", "finetune")
DVC_STATUS_TIMEOUT_S = 300
FIELDS = (
    "variant",
    "run",
    "date",
    "machine",
    "commit",
    "budget_s",
    "steps",
    "mlm_loss",
    "mlm_accuracy",
    "over_unigram",
    "nsp_accuracy",
    "pretrained",
    "pretrained_std",
    "scratch",
    "scratch_std",
)
COLUMNS = (
    "variant",
    "steps",
    "min",
    "MLM loss",
    "MLM acc",
    "× unigram",
    "NSP acc",
    "avg test (pretrained)",
    "Δ vs default",
    "avg test (scratch)",
)


def changes_scratch(name: str) -> bool:
    """Whether the variant changes what scratch fine-tunes, the model's shape or its
    vocabulary (then its scratch baseline differs too)."""
    return any(key.startswith(("pretrain.model.", "vocab.")) for key in VARIANTS[name])


def changes(name: str, base: dict) -> dict[str, object]:
    """What the variant sets that the default (`base`: params.yaml) does not already have."""
    return {
        key: value
        for key, value in VARIANTS[name].items()
        if key == "one_cycle" or setting(base, {}, key) != value
    }


def same_cost(name: str, base: dict) -> bool:
    """Whether a step of the variant costs what a step of the default costs."""
    return set(changes(name, base)) <= SAME_COST


def overrides_of(name: str, fixed: dict | None = None) -> dict[str, object]:
    """The dotted params.yaml settings the variant's pipeline runs with beyond the default's:
    the `fixed` overrides of a smoke run, then the variant's own (``one_cycle`` is not a param:
    it shapes the warmup `run_variant` sets)."""
    return {k: v for k, v in {**(fixed or {}), **VARIANTS[name]}.items() if k != "one_cycle"}


def run_key(name: str, base: dict, fixed: dict | None = None, minutes: float | None = None) -> str:
    """What the variant's row measures, as a short digest: the params its pipeline runs on (the
    default's, `base`, with the variant's changes and the `fixed` overrides of a smoke run) and
    its budget (`minutes`; None: the default's own). Rows are found by it, not by name, so one
    run serves every variant that runs the same params (the ``original`` preset, at a default
    that sets every knob it sets as it does, is the default), and after the default changes, a
    row measured at the previous one still counts where its params recur: the previous default
    (loss normalised per micro-batch) is now the variant ``loss_micro_batch``."""
    sections = {section: base[section] for section in RUN_SECTIONS}
    identity = {
        "params": with_overrides(sections, overrides_of(name, fixed)),
        "one_cycle": bool(VARIANTS[name].get("one_cycle")),
        "minutes": minutes,
    }
    return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:12]


def same_run(name: str, keys: dict[str, str]) -> str | None:
    """The first other variant whose run is `name`'s (`keys`: each variant's run_key), if any;
    the default is its own (a variant that changes nothing at this default is "= default")."""
    if name == "default":
        return None
    return next((other for other in VARIANTS if other != name and keys[other] == keys[name]), None)


def run_variant(
    project: Path,
    base: dict,
    name: str,
    budget_s: float | None,
    fixed: dict,
    default_rate: float | None,
    run: str,
    calibration_steps: int,
) -> dict[str, str]:
    """One row: calibrate (`calibration_steps` steps), pretrain for `budget_s` (None: the
    default's max_steps), fine-tune and evaluate. A variant that costs what the default costs
    per step runs at `default_rate` (the default's calibrated seconds per step) instead of
    calibrating its own; `run`: the row's run_key."""
    overrides = overrides_of(name, fixed)
    if not (name == "default" or changes_scratch(name)):
        overrides["finetune.inits"] = ["pretrained"]
    if budget_s is None:
        steps = int(setting(base, fixed, "pretrain.max_steps"))
    elif same_cost(name, base) and default_rate is not None:
        steps = max(10, round(budget_s / default_rate))
    else:
        rate = seconds_per_step(project, base, overrides, calibration_steps)
        steps = max(10, int(budget_s / rate))
    warmup_default = int(setting(base, fixed, "pretrain.warmup_steps"))
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
    row = make_row(name, run, steps, results(project), _commit(), str(date.today()), machine())
    print(f"{name}: {steps} steps, {seconds:.0f} s", file=sys.stderr, flush=True)
    return row


def make_row(
    name: str, run: str, steps: int, found: dict, commit: str, day: str, machine: str
) -> dict[str, str]:
    """A results row from a run's `results()`."""
    heldout = found["pretrain"]["heldout"]
    pretrained, pretrained_std = average(found["eval"], "pretrained")
    row = {
        "variant": name,
        "run": run,
        "date": day,
        "machine": machine,
        "commit": commit,
        "budget_s": f"{found['pretrain']['train']['seconds']:.0f}",
        "steps": str(steps),
        "mlm_loss": f"{heldout['mlm_loss']:.3f}",
        "mlm_accuracy": f"{heldout['mlm_accuracy']:.3f}",
        "over_unigram": f"{heldout['mlm_accuracy_over_unigram']:.2f}",
        "nsp_accuracy": (
            f"{heldout['nsp_accuracy']:.3f}" if heldout.get("nsp_accuracy") is not None else ""
        ),
        "pretrained": f"{pretrained:.3f}",
        "pretrained_std": f"{pretrained_std:.3f}",
        "scratch": "",
        "scratch_std": "",
    }
    if "scratch" in found["eval"]["average"]["test"]:
        scratch, scratch_std = average(found["eval"], "scratch")
        row |= {"scratch": f"{scratch:.3f}", "scratch_std": f"{scratch_std:.3f}"}
    return row


def committed_default(base: dict) -> dict[str, str] | None:
    """The default row read from this checkout's committed pipeline run (`base`: its
    params.yaml), when `dvc status` finds it made from the committed params and code (the run
    is deterministic: measuring it again gives the same numbers); None when it is not, and then
    the row is measured."""
    try:
        status = subprocess.run(
            ["dvc", "status", "--with-deps", "--json", "evaluate"], cwd=ROOT, env=stage_env(),
            capture_output=True, text=True, timeout=DVC_STATUS_TIMEOUT_S,
        )  # fmt: skip
        lock = subprocess.run(
            ["git", "log", "-1", "--format=%h %cs", "--", "dvc.lock"],
            cwd=ROOT, capture_output=True, text=True, timeout=DVC_STATUS_TIMEOUT_S,
        )  # fmt: skip
    except subprocess.TimeoutExpired as error:
        print(f"default: {error.cmd[0]} gave no answer in {error.timeout} s; measuring it",
              file=sys.stderr)  # fmt: skip
        return None
    if status.returncode != 0 or json.loads(status.stdout or "null") != {}:
        print(
            "default: the committed run is out of date (dvc status); measuring it", file=sys.stderr
        )
        return None
    commit, _, day = lock.stdout.strip().partition(" ")
    if not commit:
        return None
    row = make_row(
        "default",
        run_key("default", base),
        base["pretrain"]["max_steps"],
        results(ROOT),
        commit,
        day,
        "the committed run",
    )
    print(f"default: the committed run ({commit}, {day})", file=sys.stderr)
    return row


def _commit() -> str:
    """The checkout's commit (the code the row measured), `+` when tracked files differ."""
    state = git_state(ROOT)
    return state["git_commit"][:7] + ("+" if state["git_dirty"] == "true" else "")


def read_rows(path: Path) -> dict[str, dict[str, str]]:
    """The rows measured so far, by run_key (none when the file does not exist); rows measured
    at an earlier default stay in the file."""
    return {row["run"]: row for row in read_tsv(path, FIELDS, "an ablation results file")}


def write_rows(path: Path, rows: dict[str, dict[str, str]]) -> None:
    """All rows, in the order of their variants' names in VARIANTS (others at the end, in the
    order kept), written atomically."""
    order = {name: index for index, name in enumerate(VARIANTS)}
    ranked = sorted(rows.values(), key=lambda row: order.get(row["variant"], len(order)))
    write_tsv(path, FIELDS, ranked)


def pooled_std(rows: Iterable[dict[str, str]]) -> float:
    """The seed std of a pretrained test average, pooled over rows (root mean variance): three
    seeds give each row's own std two degrees of freedom, too few to judge one row by. A run
    that serves several variants is one measurement, counted once."""
    unique = {row["run"]: row for row in rows}
    variances = [float(row["pretrained_std"]) ** 2 for row in unique.values()]
    return math.sqrt(sum(variances) / len(variances)) if variances else 0.0


def row_spread(found: dict[str, dict[str, str]], seeds: int, std: float) -> tuple[float, str]:
    """The standard deviation of one row's pretrained test average, and where it comes from.

    A row is one pretraining run fine-tuned with `seeds` seeds (`std`: their pooled std). The
    fine-tuning seeds alone give std / √seeds; with at least two of the pretraining draws
    measured (`found`: rows by variant; the default and its ``pretrain_seed_*`` replicates), the
    std of their averages, which covers the pretraining draw and the fine-tuning seeds both, is
    used when it is the larger."""
    fine_tuning = std / math.sqrt(max(1, seeds))
    averages = [float(found[name]["pretrained"]) for name in PRETRAINING_DRAWS if name in found]
    if len(averages) < 2:
        return fine_tuning, (
            f"from the seed std pooled over the rows, {std:.3f}, over √{seeds} seeds"
        )
    between = statistics.stdev(averages)
    words = (
        f"the larger of the std of the default's average over {len(averages)} pretraining "
        f"seeds, {between:.3f} ({', '.join(f'{a:.3f}' for a in averages)}), and the "
        f"fine-tuning seeds' {fine_tuning:.3f} (the seed std pooled over the rows, {std:.3f}, "
        f"over √{seeds})"
    )
    return max(between, fine_tuning), words


def versus_default(row: dict[str, str], default: dict[str, str] | None, spread: float) -> str:
    """The row's pretrained test average minus the default's, ± the standard error of that
    difference (`spread`: the std of one row's average, `row_spread`); bold when it is more
    than two standard errors from 0."""
    if default is None:
        return "–"
    if row["run"] == default["run"]:
        return "0"
    delta = float(row["pretrained"]) - float(default["pretrained"])
    error = spread * math.sqrt(2)
    text = f"{delta:+.3f} ± {error:.3f}"
    return f"**{text}**" if abs(delta) > 2 * error else text


def table(
    rows: dict[str, dict[str, str]],
    base: dict,
    seeds: int = 3,
    fixed: dict | None = None,
    minutes: float | None = None,
) -> str:
    """The docs table at the default `base` (params.yaml): every variant, measured or not, each
    with the row of its run (`rows`: by run_key); a variant whose run is another's says so; the
    scratch of a non-shape row is the default's; `seeds`: fine-tuning seeds per average (for the
    difference's standard error). Rows of runs no variant makes at this default are left out."""
    keys = {name: run_key(name, base, fixed, minutes) for name in VARIANTS}
    found = {name: rows[key] for name, key in keys.items() if key in rows}
    default_scratch = found.get("default", {})
    std = pooled_std(found.values())
    spread, spread_source = row_spread(found, seeds, std)
    lines = [
        "| " + " | ".join(COLUMNS) + " |",
        "| " + " | ".join("---" for _ in COLUMNS) + " |",
    ]
    for name in VARIANTS:
        row = found.get(name)
        same = same_run(name, keys)
        label = f"{name} (= {same})" if same else name
        if row is None:
            lines.append(f"| {label} | not measured yet |" + " |" * (len(COLUMNS) - 2))
            continue
        if row["scratch"]:
            scratch = f"{row['scratch']} ± {row['scratch_std']}"
        elif default_scratch.get("scratch"):
            scratch = f"= default ({default_scratch['scratch']})"
        else:
            scratch = "= default"
        lines.append(
            "| "
            + " | ".join(
                [
                    label,
                    row["steps"],
                    f"{float(row['budget_s']) / 60:.1f}",
                    row["mlm_loss"],
                    row["mlm_accuracy"],
                    row["over_unigram"],
                    row["nsp_accuracy"] or "–",
                    f"{row['pretrained']} ± {row['pretrained_std']}",
                    versus_default(row, found.get("default"), spread),
                    scratch,
                ]
            )
            + " |"
        )
    measured = list({row["run"]: row for row in found.values()}.values())
    dates = sorted({row["date"] for row in measured})
    machines = sorted({row["machine"] for row in measured})
    budgets = [float(row["budget_s"]) for row in measured]
    header = (
        f"Measured {', '.join(dates) or 'never'} on {', '.join(machines) or '-'}; "
        f"{len(found)} of {len(VARIANTS)} variants; pretraining "
        + (f"{min(budgets) / 60:.1f}-{max(budgets) / 60:.1f} min" if budgets else "-")
        + " of training per variant (the default's budget); downstream: test average ± seed std, "
        f"{seeds} seeds; Δ: ± the standard error of the difference, √2 × a row's std: "
        f"{spread_source}; bold beyond two; "
        "*min*: the minutes the row's steps took (a calibration run sets the steps, "
        f"{CALIBRATION_STEPS} steps long, 200 for the bf16 rows, whose first steps pay for new "
        "kernel shapes; so they scatter around the budget); "
        "`python benchmarks/ablate_pretrain.py --write-docs`, rows in reports/ablate_pretrain.tsv."
    )
    return "\n".join([header, "", *lines])


def to_measure(
    names: Iterable[str],
    rerun: Iterable[str],
    rows: dict[str, dict[str, str]],
    keys: dict[str, str],
) -> list[str]:
    """The variants of `names` to run (`keys`: each variant's run_key): those whose run has no
    row yet, and those in `rerun`; one variant per run (another with the same run shares its
    row). Says on stderr which are kept and under what name they were measured."""
    todo: list[str] = []
    for name in names:
        row = rows.get(keys[name])
        if row is not None and name not in rerun:
            measured_as = "" if row["variant"] == name else f", measured as {row['variant']}"
            print(
                f"{name}: kept from {row['date']}{measured_as} (--rerun to measure again)",
                file=sys.stderr,
            )
        elif not any(keys[other] == keys[name] for other in todo):
            todo.append(name)
    return todo


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), metavar="NAME")
    parser.add_argument(
        "--rerun", nargs="+", default=[], metavar="NAME", help="measure these again if kept"
    )
    parser.add_argument(
        "--minutes",
        type=float,
        default=None,
        help="pretraining wall clock per variant (default: what the default's max_steps take)",
    )
    parser.add_argument(
        "--smoke", action="store_true", help="a tiny pipeline: checks the script runs"
    )
    parser.add_argument(
        "--write-docs", action="store_true", help="put the table in docs/pretrain.md"
    )
    parser.add_argument("--output", type=Path, default=None, help=f"default: {RESULTS}")
    parser.add_argument("--keep", action="store_true", help="keep the temp project copy")
    parser.add_argument(
        "--calibration-steps",
        type=int,
        default=CALIBRATION_STEPS,
        help="steps of each calibration run (bf16 on a CPU: 200, past its first-shape costs)",
    )
    args = parser.parse_args()
    unknown = [name for name in args.variants + args.rerun if name not in VARIANTS]
    if unknown:
        known = ", ".join(VARIANTS)
        print(f"error: unknown variant or preset {unknown[0]!r} (known: {known})", file=sys.stderr)
        sys.exit(2)
    # a smoke run's numbers mean nothing: they stay out of the results unless --output says so
    output = args.output or (None if args.smoke else RESULTS)
    rows = read_rows(output) if output else {}
    base = read_params(ROOT)
    fixed = smoke_base(base) if args.smoke else {}
    keys = {name: run_key(name, base, fixed, args.minutes) for name in VARIANTS}
    todo = to_measure(args.variants, args.rerun, rows, keys)
    if "default" in todo and args.minutes is None and not args.smoke:
        # at its own budget the default row is the committed pipeline run, when that is current
        committed = committed_default(base)
        if committed is not None:
            rows[keys["default"]] = committed
            todo.remove("default")
            if output:
                write_rows(output, rows)
    if todo:
        with project_copy(args.keep) as project:  # its params.yaml is `base` until a run writes it
            budget_s = None if args.minutes is None else 60 * args.minutes
            rate = None
            if todo != ["default"] or budget_s is not None:
                rate = seconds_per_step(project, base, fixed, args.calibration_steps)
                print(f"default: {rate:.3f} s per step", file=sys.stderr)
            if budget_s is None and rate is not None:
                # the default's budget: its max_steps at its calibrated rate on this machine
                budget_s = rate * int(setting(base, fixed, "pretrain.max_steps"))
                print(f"budget: {budget_s:.0f} s of pretraining per variant", file=sys.stderr)
            for name in todo:
                # at the default's own budget, the default row is the committed params as they are
                own = None if name == "default" and args.minutes is None else budget_s
                rows[keys[name]] = run_variant(
                    project, base, name, own, fixed, rate, keys[name], args.calibration_steps
                )
                if output:
                    write_rows(output, rows)
    text = table(rows, base, len(base["finetune"]["seeds"]), fixed, args.minutes)
    print(text)
    if args.write_docs:
        replace_section(ROOT / "docs/pretrain.md", "ablate_pretrain", text)


if __name__ == "__main__":
    main()
