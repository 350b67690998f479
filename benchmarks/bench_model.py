"""Pretraining throughput and memory: bertforge's BERT against transformers.BertForPreTraining.

Both models get the same config, the same initial weights, the same AdamW and the same examples,
and train alternately step by step in one process, so machine noise hits them alike. What differs
is what each is normally fed:

- transformers: random batches padded to their longest row (dynamic padding, its usual
  `DataCollatorForLanguageModeling` setup), labels [B, T] with -100 off the masked positions, so
  its MLM head projects every position onto the vocabulary;
- bertforge, same batches: the same padded batches, sparse MLM head (only masked positions);
- bertforge, length buckets: the same examples grouped by length (sorted within a window of
  batches, then the batches shuffled), padded to a multiple of 8: little compute on padding.

Throughput counts real (non-padding) tokens; each step is timed `--repeats` times (training on
the batch each time) and its fastest run kept, which filters out time taken by other processes
on a shared machine. Peak memory is measured in a fresh process per model (a few training
steps): on CPU the growth of resident memory over the loaded model and data, on CUDA
`torch.cuda.max_memory_allocated`. MFU uses `bertforge.model.flops_per_token` (useful work: real
tokens, sparse MLM head) against a measured dense matmul peak of the same device and dtype.

Data: rows drawn at random from data/examples/train/part-*.parquet when present (the examples
stage's contract: input_ids, segment_b_start, masked_lm_positions, masked_lm_ids,
next_sentence_label), else synthetic examples of the same shape: 40% fill the maximum length,
the others 16..max tokens (the project's corpus: median 106, mean 93 of 128), 15% of tokens
masked, at most 20 predictions per example, NSP labels half random.

    python benchmarks/bench_model.py --config small
    python benchmarks/bench_model.py --config base --steps 3
    python benchmarks/bench_model.py --config base --device cuda --dtype bf16 --batch-size 64
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import os
import platform
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch
from tqdm import tqdm

from bertforge.model import (
    IGNORE_INDEX,
    BertConfig,
    BertForPreTraining,
    count_parameters,
    flops_per_token,
)
from bertforge.shards import shard_files

CONFIGS = {
    "small": BertConfig(
        vocab_size=16000,
        hidden_size=256,
        num_hidden_layers=4,
        num_attention_heads=4,
        intermediate_size=1024,
    ),
    "base": BertConfig(),
}
DEFAULT_BATCH_SIZE = {"small": 32, "base": 8}
VARIANTS = ("transformers", "bertforge-same-batches", "bertforge-buckets")
LABELS = {
    "transformers": ("transformers BertForPreTraining", "random, padded to longest"),
    "bertforge-same-batches": ("bertforge BertForPreTraining", "random, padded to longest"),
    "bertforge-buckets": ("bertforge BertForPreTraining", "length buckets, padded to x8"),
}
SPECIAL_TOKENS = 5  # [PAD] [UNK] [CLS] [SEP] [MASK], ids 0..4 as in params.yaml's vocab
CLS_ID, SEP_ID, MASK_ID = 2, 3, 4


@dataclass(frozen=True)
class Example:
    """One pretraining instance, as a row of data/examples/*/part-*.parquet."""

    input_ids: np.ndarray
    segment_b_start: int
    masked_lm_positions: np.ndarray
    masked_lm_ids: np.ndarray
    next_sentence_label: int


def read_examples(directory: Path, count: int, rng: np.random.Generator) -> list[Example]:
    """`count` rows drawn at random from all the examples shards (with replacement if fewer)."""
    columns = [field.name for field in dataclasses.fields(Example)]
    table = pa.concat_tables(
        pq.read_table(path, columns=columns) for path in shard_files(directory)
    )
    if table.num_rows == 0:
        raise SystemExit(f"{directory}: no examples")
    rows = rng.choice(table.num_rows, size=count, replace=count > table.num_rows)
    return [
        Example(
            input_ids=np.asarray(row["input_ids"], dtype=np.int64),
            segment_b_start=int(row["segment_b_start"]),
            masked_lm_positions=np.asarray(row["masked_lm_positions"], dtype=np.int64),
            masked_lm_ids=np.asarray(row["masked_lm_ids"], dtype=np.int64),
            next_sentence_label=int(row["next_sentence_label"]),
        )
        for row in table.take(rows).to_pylist()
    ]


def synthesize_examples(
    count: int, max_length: int, vocab_size: int, max_predictions: int, rng: np.random.Generator
) -> list[Example]:
    """BERT-shaped random examples: 40% full length, Zipf-distributed tokens, 15% masked."""
    examples = []
    for _ in range(count):
        full = rng.random() < 0.4
        length = max_length if full else int(rng.integers(16, max_length + 1))
        words = SPECIAL_TOKENS + (rng.zipf(1.2, size=length) % (vocab_size - SPECIAL_TOKENS))
        segment_b_start = int(rng.integers(2, length - 1))
        words[0], words[segment_b_start - 1], words[length - 1] = CLS_ID, SEP_ID, SEP_ID
        candidates = np.setdiff1d(np.arange(1, length - 1), [segment_b_start - 1])
        predictions = min(max_predictions, max(1, round(0.15 * length)))
        positions = np.sort(rng.choice(candidates, size=predictions, replace=False))
        input_ids = words.copy()
        input_ids[positions] = MASK_ID
        examples.append(
            Example(
                input_ids=input_ids,
                segment_b_start=segment_b_start,
                masked_lm_positions=positions,
                masked_lm_ids=words[positions],
                next_sentence_label=int(rng.integers(0, 2)),
            )
        )
    return examples


def random_batches(
    examples: list[Example], batch_size: int, rng: np.random.Generator
) -> list[list[Example]]:
    order = rng.permutation(len(examples))
    return [
        [examples[index] for index in order[start : start + batch_size]]
        for start in range(0, len(order), batch_size)
    ]


def length_bucketed_batches(
    examples: list[Example], batch_size: int, rng: np.random.Generator, window_batches: int = 32
) -> list[list[Example]]:
    """Shuffle, sort each window of `window_batches` batches by length, cut, shuffle batches."""
    order = rng.permutation(len(examples))
    batches = []
    window = batch_size * window_batches
    for start in range(0, len(order), window):
        chunk = sorted(order[start : start + window], key=lambda i: len(examples[i].input_ids))
        batches += [
            [examples[index] for index in chunk[offset : offset + batch_size]]
            for offset in range(0, len(chunk), batch_size)
        ]
    return [batches[index] for index in rng.permutation(len(batches))]


def padded_length(batch: list[Example], multiple: int) -> int:
    longest = max(len(example.input_ids) for example in batch)
    return -(-longest // multiple) * multiple


def encoder_inputs(batch: list[Example], length: int) -> dict[str, torch.Tensor]:
    input_ids = torch.zeros(len(batch), length, dtype=torch.long)
    token_type_ids = torch.zeros(len(batch), length, dtype=torch.long)
    attention_mask = torch.zeros(len(batch), length, dtype=torch.long)
    for row, example in enumerate(batch):
        real = len(example.input_ids)
        input_ids[row, :real] = torch.from_numpy(example.input_ids)
        token_type_ids[row, example.segment_b_start : real] = 1
        attention_mask[row, :real] = 1
    return {
        "input_ids": input_ids,
        "token_type_ids": token_type_ids,
        "attention_mask": attention_mask,
    }


def nsp_labels(batch: list[Example]) -> torch.Tensor:
    labels = torch.tensor([example.next_sentence_label for example in batch], dtype=torch.long)
    return torch.where(labels < 0, IGNORE_INDEX, labels)


def collate_sparse(batch: list[Example], multiple: int) -> dict[str, torch.Tensor]:
    """bertforge's batch: masked positions [B, P] (pad 0) and their ids (pad -100)."""
    predictions = max(len(example.masked_lm_positions) for example in batch)
    positions = torch.zeros(len(batch), predictions, dtype=torch.long)
    ids = torch.full((len(batch), predictions), IGNORE_INDEX, dtype=torch.long)
    for row, example in enumerate(batch):
        count = len(example.masked_lm_positions)
        positions[row, :count] = torch.from_numpy(example.masked_lm_positions)
        ids[row, :count] = torch.from_numpy(example.masked_lm_ids)
    return encoder_inputs(batch, padded_length(batch, multiple)) | {
        "masked_lm_positions": positions,
        "masked_lm_ids": ids,
        "next_sentence_label": nsp_labels(batch),
    }


def collate_dense(batch: list[Example]) -> dict[str, torch.Tensor]:
    """transformers' batch: labels [B, T], the original id at masked positions, -100 elsewhere."""
    inputs = encoder_inputs(batch, padded_length(batch, 1))
    labels = torch.full_like(inputs["input_ids"], IGNORE_INDEX)
    for row, example in enumerate(batch):
        labels[row, torch.from_numpy(example.masked_lm_positions)] = torch.from_numpy(
            example.masked_lm_ids
        )
    return inputs | {"labels": labels, "next_sentence_label": nsp_labels(batch)}


@dataclass
class Variant:
    """One model with its optimizer, and the time it spent in measured steps."""

    name: str
    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    seconds: float = 0.0
    cpu_seconds: float = 0.0
    steps: int = 0


@dataclass(frozen=True)
class Batch:
    tensors: dict[str, torch.Tensor]
    real_tokens: int
    padded_tokens: int


def build_variant(name: str, config: BertConfig, device: str, seed: int) -> Variant:
    """The named model, all from the same seeded initial weights, with AdamW."""
    model: torch.nn.Module = BertForPreTraining(config, torch.Generator().manual_seed(seed))
    if name == "transformers":
        import transformers

        reference = transformers.BertForPreTraining(transformers.BertConfig(**config.to_hf_dict()))
        reference.load_state_dict(model.state_dict())
        model = reference
    model.to(device).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=0.01)
    return Variant(name, model, optimizer)


def make_batches(
    name: str, examples: list[Example], batch_size: int, device: str, seed: int
) -> list[Batch]:
    """What each variant is fed: see the module docstring."""
    if name == "bertforge-buckets":
        groups = length_bucketed_batches(examples, batch_size, np.random.default_rng(seed))
        multiple = 8
    else:
        groups = random_batches(examples, batch_size, np.random.default_rng(seed))
        multiple = 1
    batches = []
    for group in groups:
        tensors = (
            collate_dense(group) if name == "transformers" else collate_sparse(group, multiple)
        )
        batches.append(
            Batch(
                tensors={key: value.to(device) for key, value in tensors.items()},
                real_tokens=sum(len(example.input_ids) for example in group),
                padded_tokens=len(group) * padded_length(group, multiple),
            )
        )
    return batches


def train_step(variant: Variant, batch: dict[str, torch.Tensor], autocast) -> None:
    with autocast():
        loss = variant.model(**batch).loss
    loss.backward()
    variant.optimizer.step()
    variant.optimizer.zero_grad(set_to_none=True)


def best_step_seconds(
    variant: Variant, batch: Batch, autocast: Callable, device: str, repeats: int
) -> tuple[float, float]:
    """Fastest wall-clock and fastest process-CPU time of `repeats` training steps on `batch`.

    The benchmark machine may be shared: the fastest run is the one least disturbed by other
    processes, and taking it for every model alike keeps the comparison fair. CPU time (all
    threads) hardly depends on how much of the machine other processes take, so on a busy CPU
    machine it is the steadier basis for comparing the models.
    """
    best_wall = best_cpu = float("inf")
    for _ in range(repeats):
        synchronize(device)
        wall, cpu = time.perf_counter(), time.process_time()
        train_step(variant, batch.tensors, autocast)
        synchronize(device)
        best_wall = min(best_wall, time.perf_counter() - wall)
        best_cpu = min(best_cpu, time.process_time() - cpu)
    return best_wall, best_cpu


def synchronize(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def autocast_for(device: str, dtype: str) -> Callable[[], contextlib.AbstractContextManager]:
    if dtype == "bf16":
        return lambda: torch.autocast(device_type=device, dtype=torch.bfloat16)
    return contextlib.nullcontext


def matmul_peak_flops(device: str, dtype: str) -> float:
    """Best of a few dense square matmuls: the attainable FLOP/s that MFU is measured against."""
    size = 8192 if device == "cuda" else 2048
    torch_dtype = torch.bfloat16 if dtype == "bf16" else torch.float32
    a = torch.randn(size, size, device=device, dtype=torch_dtype)
    b = torch.randn(size, size, device=device, dtype=torch_dtype)
    best = float("inf")
    for _ in range(5 if device == "cuda" else 3):
        synchronize(device)
        start = time.perf_counter()
        for _ in range(10 if device == "cuda" else 2):
            a @ b
        synchronize(device)
        best = min(best, (time.perf_counter() - start) / (10 if device == "cuda" else 2))
    return 2 * size**3 / best


def load_or_make_examples(args: argparse.Namespace, config: BertConfig, count: int):
    rng = np.random.default_rng(args.seed)
    if shard_files(args.examples):
        examples = read_examples(args.examples, count, rng)
        return examples, f"{args.examples} ({count} examples drawn at random)"
    examples = synthesize_examples(count, args.seq_len, config.vocab_size, 20, rng)
    return examples, f"synthetic, BERT-shaped ({count} examples, {args.examples} absent)"


def measure_memory(args: argparse.Namespace) -> None:
    """Child process: train one variant a few steps, print its peak memory in MiB as JSON."""
    config = CONFIGS[args.config]
    steps = min(3, args.steps)
    examples, _ = load_or_make_examples(args, config, args.batch_size * steps)
    variant = build_variant(args.memory_of, config, args.device, args.seed)
    batches = make_batches(args.memory_of, examples, args.batch_size, args.device, args.seed)
    autocast = autocast_for(args.device, args.dtype)
    if args.device == "cuda":
        torch.cuda.reset_peak_memory_stats()
        before = torch.cuda.memory_allocated()
    else:
        before = resident_memory_bytes("VmRSS")
    for batch in batches:
        train_step(variant, batch.tensors, autocast)
    synchronize(args.device)
    if args.device == "cuda":
        peak = torch.cuda.max_memory_allocated() - before
    else:
        peak = resident_memory_bytes("VmHWM") - before
    print(json.dumps({"peak_mib": peak / 2**20}))


def resident_memory_bytes(field: str) -> int:
    """VmRSS (now) or VmHWM (peak) of this process, from /proc (Linux).

    Not `getrusage`'s ru_maxrss: that survives fork + exec, so a child would report the parent's
    peak; VmHWM belongs to the process's own address space.
    """
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"/proc/self/status has no {field}")


def peak_memory_mib(variant: str) -> float:
    """Run `measure_memory` for `variant` in a fresh process (same arguments)."""
    command = [sys.executable, __file__, *sys.argv[1:], "--memory-of", variant]
    result = subprocess.run(command, capture_output=True, text=True, check=True)
    return json.loads(result.stdout.strip().splitlines()[-1])["peak_mib"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", choices=sorted(CONFIGS), default="small")
    parser.add_argument("--examples", type=Path, default=Path("data/examples/train"))
    parser.add_argument("--batch-size", type=int)
    parser.add_argument("--steps", type=int, default=8, help="measured steps per model")
    parser.add_argument("--warmup", type=int, default=2, help="unmeasured steps per model")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per step; best kept")
    parser.add_argument("--seq-len", type=int, default=128, help="maximum length (synthetic)")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--dtype", choices=("fp32", "bf16"), default="fp32")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-memory", action="store_true", help="skip the memory processes")
    parser.add_argument("--memory-of", choices=VARIANTS, help=argparse.SUPPRESS)
    args = parser.parse_args()
    args.batch_size = args.batch_size or DEFAULT_BATCH_SIZE[args.config]
    torch.set_num_threads(args.threads)
    if args.memory_of:
        measure_memory(args)
        return

    config = CONFIGS[args.config]
    autocast = autocast_for(args.device, args.dtype)
    load_before = os.getloadavg()[0]
    warmup_count = args.batch_size * args.warmup
    examples, source = load_or_make_examples(
        args, config, warmup_count + args.batch_size * args.steps
    )
    warmup_examples, examples = examples[:warmup_count], examples[warmup_count:]
    variants = {name: build_variant(name, config, args.device, args.seed) for name in VARIANTS}
    for name, variant in variants.items():
        for batch in make_batches(name, warmup_examples, args.batch_size, args.device, args.seed):
            train_step(variant, batch.tensors, autocast)
    batches = {
        name: make_batches(name, examples, args.batch_size, args.device, args.seed)
        for name in VARIANTS
    }
    rounds = max(len(plan) for plan in batches.values())
    for step in tqdm(range(rounds), desc="measured steps (all models)", file=sys.stderr):
        for name, variant in variants.items():
            if step >= len(batches[name]):
                continue
            wall, cpu = best_step_seconds(
                variant, batches[name][step], autocast, args.device, args.repeats
            )
            variant.seconds += wall
            variant.cpu_seconds += cpu
            variant.steps += 1

    real_tokens = sum(len(example.input_ids) for example in examples)
    predicted = sum(len(example.masked_lm_positions) for example in examples)
    mean_length = real_tokens / len(examples)
    useful_flops = flops_per_token(config, round(mean_length), predicted / real_tokens)
    peak = matmul_peak_flops(args.device, args.dtype)
    memory = {name: None if args.no_memory else peak_memory_mib(name) for name in VARIANTS}

    device_name = torch.cuda.get_device_name() if args.device == "cuda" else platform.processor()
    parameters = count_parameters(variants["bertforge-buckets"].model)
    print(
        f"config {args.config}: hidden {config.hidden_size}, layers {config.num_hidden_layers}, "
        f"heads {config.num_attention_heads}, intermediate {config.intermediate_size}, "
        f"vocab {config.vocab_size}; {parameters / 1e6:.1f}M parameters"
    )
    print(
        f"device {args.device} ({device_name or platform.machine()}, {os.cpu_count()} CPUs, "
        f"{torch.get_num_threads()} torch threads), dtype {args.dtype}, torch {torch.__version__}; "
        f"load average {load_before:.1f} at start, {os.getloadavg()[0]:.1f} at end"
    )
    print(
        f"data: {source}; batch {args.batch_size}, {args.steps} measured steps per model "
        f"(each the best of {args.repeats} runs) after {args.warmup} warmup; "
        f"mean length {mean_length:.1f}, "
        f"{predicted / real_tokens:.1%} of tokens predicted"
    )
    print(
        f"MFU: {useful_flops / 1e6:.1f} MFLOP per real token (flops_per_token) against a "
        f"measured {args.dtype} matmul peak of {peak / 1e12:.3f} TFLOP/s"
    )
    print()
    cpu_columns = args.device == "cpu"
    header = (
        "| model | batches | real tokens/s | padding | ms/step | peak MiB | MFU | vs transformers |"
    )
    rule = "|---|---|---:|---:|---:|---:|---:|---:|"
    if cpu_columns:
        header += " real tokens per CPU-s | vs transformers (CPU time) |"
        rule += "---:|---:|"
    print(header)
    print(rule)
    reference = variants["transformers"]
    for name, variant in variants.items():
        padded = sum(batch.padded_tokens for batch in batches[name])
        throughput = real_tokens / variant.seconds
        model_label, batch_label = LABELS[name]
        memory_text = "-" if memory[name] is None else f"{memory[name]:.0f}"
        row = (
            f"| {model_label} | {batch_label} | {throughput:,.0f} | "
            f"{1 - real_tokens / padded:.1%} | {1000 * variant.seconds / variant.steps:.0f} | "
            f"{memory_text} | {throughput * useful_flops / peak:.1%} | "
            f"{reference.seconds / variant.seconds:.2f}x |"
        )
        if cpu_columns:
            row += (
                f" {real_tokens / variant.cpu_seconds:,.0f} | "
                f"{reference.cpu_seconds / variant.cpu_seconds:.2f}x |"
            )
        print(row)


if __name__ == "__main__":
    main()
