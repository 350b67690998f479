"""Where one CPU pretraining step's time goes: torch's profiler over the default model's steps.

The pipeline's model (params.yaml: `pretrain.model`, `vocab.vocab_size`) trains on micro-batches
of `pretrain.micro_batch_size` examples in one thread, as one rank of the default's 2 × 1-thread
run does: forward, backward and a fused AdamW step with the pretrain section's settings. After
`--warmup` steps, `--steps` steps run under `torch.profiler`, and each operator's own CPU time
goes to one group: the matmuls, the attention kernels, the MLM head's softmax and loss over the
vocabulary, the optimizer, and the rest (LayerNorm, GELU, adds, copies, fills, gathers). Prints
the groups' shares with the machine and the date. Examples: rows of data/examples/train drawn
at random (synthetic BERT-shaped ones where it is absent), padded to the longest row of each
micro-batch.

    python benchmarks/profile_step.py
    python benchmarks/profile_step.py --steps 20 --examples data/examples/train
"""

from __future__ import annotations

import argparse
import sys
import time
from datetime import date
from pathlib import Path

import numpy as np
import torch
import yaml
from bench_model import collate_sparse, load_or_make_examples, random_batches
from machine import machine
from torch.profiler import ProfilerActivity, profile

from bertforge.model import BertForPreTraining, optimizer_parameter_groups
from bertforge.params import parse
from bertforge.pretrain.params import PretrainParams

ROOT = Path(__file__).resolve().parents[1]
# operator name -> group (the first group whose words the name contains); the rest is "other"
GROUPS = {
    "matmuls": ("aten::mm", "aten::addmm", "aten::bmm", "aten::baddbmm", "aten::matmul"),
    "attention": ("scaled_dot_product", "flash_attention", "aten::_softmax"),
    "vocabulary softmax and loss": ("log_softmax", "nll_loss", "cross_entropy"),
    "optimizer (AdamW)": ("adamw", "Optimizer.step"),
}


def group_of(name: str) -> str:
    """The group of a profiler row's operator name."""
    lowered = name.lower()
    return next(
        (group for group, words in GROUPS.items() if any(w.lower() in lowered for w in words)),
        "other",
    )


def shares(rows: list[tuple[str, float]]) -> dict[str, float]:
    """Each group's share of the summed own CPU time of (operator name, µs) rows, largest first."""
    totals: dict[str, float] = dict.fromkeys([*GROUPS, "other"], 0.0)
    for name, micros in rows:
        totals[group_of(name)] += micros
    whole = sum(totals.values()) or 1.0
    return dict(sorted(((g, t / whole) for g, t in totals.items()), key=lambda item: -item[1]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--params", type=Path, default=ROOT / "params.yaml")
    parser.add_argument("--examples", type=Path, default=ROOT / "data/examples/train")
    parser.add_argument("--steps", type=int, default=20, help="profiled steps")
    parser.add_argument("--warmup", type=int, default=5, help="unprofiled steps first")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (a rank's: 1)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    params = yaml.safe_load(args.params.read_text(encoding="utf-8"))
    pretrain = parse(PretrainParams, params["pretrain"], f"{args.params}: pretrain")
    torch.manual_seed(args.seed)
    torch.set_num_threads(args.threads)
    # the pipeline's model: pretrain.model with the vocabulary's size and [PAD] id
    vocab = params["vocab"]
    config = pretrain.model.bert_config(vocab["vocab_size"], vocab["special_tokens"].index("[PAD]"))
    seq_len = params["examples"]["max_seq_length"]
    batch_size = pretrain.micro_batch_size
    count = batch_size * (args.warmup + args.steps)
    examples, source = load_or_make_examples(args.examples, config, seq_len, count, args.seed)
    rng = np.random.default_rng(args.seed)
    batches = [collate_sparse(b, 1) for b in random_batches(examples, batch_size, rng)]
    model = BertForPreTraining(config)
    optimizer = torch.optim.AdamW(
        optimizer_parameter_groups(model, pretrain.weight_decay),
        lr=pretrain.lr,
        betas=pretrain.betas,
        eps=pretrain.eps,
        fused=True,
    )

    def step(batch: dict[str, torch.Tensor]) -> None:
        model(**batch).loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    for batch in batches[: args.warmup]:
        step(batch)
    measured = batches[args.warmup : args.warmup + args.steps]
    started = time.perf_counter()
    with profile(activities=[ProfilerActivity.CPU]) as profiler:
        for batch in measured:
            step(batch)
    seconds = (time.perf_counter() - started) / max(1, len(measured))
    rows = [(event.key, event.self_cpu_time_total) for event in profiler.key_averages()]
    print(
        f"{machine()}, {args.threads} thread(s), {date.today()}; model {config.hidden_size} wide "
        f"× {config.num_hidden_layers} layers, vocabulary {config.vocab_size}; {len(measured)} "
        f"steps of {batch_size} × ≤{seq_len} tokens ({source}); {seconds * 1000:.0f} ms a step "
        "under the profiler; `python benchmarks/profile_step.py`",
        file=sys.stderr,
    )
    print("| where the time goes | share of the step |\n| --- | ---: |")
    for group, share in shares(rows).items():
        print(f"| {group} | {share:.1%} |")


if __name__ == "__main__":
    main()
