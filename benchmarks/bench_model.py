"""Pretraining throughput, MFU and memory: bertforge's BERT, padded and unpadded, against
transformers.BertForPreTraining (SDPA attention).

All models of one shape get the same config, the same initial weights, the same AdamW and the
same examples, and train alternately step by step in one process, so machine noise hits them
alike. What differs is what each is fed:

- transformers: random batches padded to their longest row (dynamic padding, its usual
  `DataCollatorForLanguageModeling` setup), labels [B, T] with -100 off the masked positions, so
  its MLM head projects every position onto the vocabulary;
- bertforge, random, padded: the same batches, sparse MLM head (only masked positions);
- bertforge, buckets, padded: the same examples grouped by length (sorted within a window of
  batches, then the batches shuffled), padded to a multiple of 8: the pretrain stage's batching;
- bertforge, unpadded (random or buckets): the same batches with the padding removed: the real
  tokens concatenated with cumulative sequence lengths (`bertforge.model.unpad_batch`),
  attention through `--attention` (auto: nested-jagged SDPA on CUDA, padded SDPA on CPU);
- with `--compile`: `torch.compile` of bertforge's random-batch models, padded and unpadded.

Before the measured steps each model takes `--warmup` steps on other batches, then one step on each
distinct input shape of its measured batches (a long run has seen them all: on CUDA a shape's first
step is far slower). Throughput counts real (non-padding) tokens; each step is timed `--repeats`
times (training on the batch each time) and its fastest run kept, which filters out time taken by
other processes on a shared machine. Peak memory: on CPU the growth of resident memory over the
loaded model and data in a fresh process per model; on CUDA the model's own weights and AdamW state
plus the peak allocation of one training step above everything resident. MFU is useful work
(`bertforge.model.flops_per_token`: real tokens, sparse MLM head) per second against the device's
dense peak: on CUDA the datasheet's dense bf16 figure (`DENSE_BF16_PEAKS`) and a measured dense
matmul peak, both printed; on CPU the measured peak only.

Data: rows drawn at random from data/examples/train/part-*.parquet when their lengths fit the
sequence length (the examples stage's contract: input_ids, segment_b_start,
masked_lm_positions, masked_lm_ids, next_sentence_label), else synthetic examples of the same
shape: 40% fill the maximum length, the others 16..max tokens (the project's corpus: median 106,
mean 93 of 128), 15% of tokens masked, NSP labels half random.

    python benchmarks/bench_model.py --config small --unpad
    python benchmarks/bench_model.py --config base --steps 3
    python benchmarks/bench_model.py --device cuda --out bench/model.json   # base, large × 128, 512
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import dataclasses
import datetime
import json
import math
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

from bertforge.errors import BertforgeError
from bertforge.model import (
    IGNORE_INDEX,
    VARLEN_KERNELS,
    BertConfig,
    BertForPreTraining,
    count_parameters,
    flops_per_token,
    unpad_batch,
)
from bertforge.model.attention import check_varlen_kernel
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
    "large": BertConfig(
        hidden_size=1024, num_hidden_layers=24, num_attention_heads=16, intermediate_size=4096
    ),
}
CPU_BATCH_SIZE = {"small": 32, "base": 8, "large": 4}
CUDA_TOKENS_PER_BATCH = 16384  # batch size = this / sequence length, unless --batch-size
DENSE_BF16_PEAKS = (  # (device name contains, TFLOP/s, source); the first match wins
    ("H100 NVL", 835.5, "NVIDIA H100 NVL datasheet: 1,671 TFLOP/s bf16 with sparsity, halved"),
    ("H100 PCIe", 756.5, "NVIDIA H100 PCIe datasheet: 1,513 TFLOP/s bf16 with sparsity, halved"),
    ("H100", 989.4, "NVIDIA H100 SXM datasheet: 1,979 TFLOP/s bf16 with sparsity, halved"),
    ("H200", 989.4, "NVIDIA H200 SXM datasheet: 1,979 TFLOP/s bf16 with sparsity, halved"),
    ("A100", 312.0, "NVIDIA A100 datasheet: 312 TFLOP/s dense bf16"),
)
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


@dataclass(frozen=True)
class Spec:
    """One measured model: whose, fed which batches, in which layout, compiled or not."""

    model: str  # transformers | bertforge
    batches: str  # random | buckets
    unpadded: bool = False
    compiled: bool = False

    @property
    def name(self) -> str:
        layout = "unpadded" if self.unpadded else "padded"
        parts = [self.model] + ([] if self.model == "transformers" else [self.batches, layout])
        return "-".join(parts + (["compiled"] if self.compiled else []))

    @property
    def labels(self) -> tuple[str, str]:
        model = f"{self.model} BertForPreTraining" + (" (compiled)" if self.compiled else "")
        order = "length buckets" if self.batches == "buckets" else "random"
        if self.unpadded:
            return model, f"{order}, unpadded"
        return model, f"{order}, padded to {'x8' if self.batches == 'buckets' else 'longest'}"


def specs_for(device: str, unpad: bool, compile_: bool) -> list[Spec]:
    specs = [Spec("transformers", "random"), Spec("bertforge", "random")]
    specs.append(Spec("bertforge", "buckets"))
    if unpad or device == "cuda":
        specs += [Spec("bertforge", "random", unpadded=True)]
        specs += [Spec("bertforge", "buckets", unpadded=True)]
    if compile_:
        specs += [Spec("bertforge", "random", compiled=True)]
        specs += [Spec("bertforge", "random", unpadded=True, compiled=True)]
    return specs


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
    count: int, max_length: int, vocab_size: int, rng: np.random.Generator
) -> list[Example]:
    """BERT-shaped random examples: 40% full length, Zipf-distributed tokens, 15% masked."""
    max_predictions = math.ceil(0.15 * max_length)
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


def load_or_make_examples(
    directory: Path, config: BertConfig, seq_len: int, count: int, seed: int
) -> tuple[list[Example], str]:
    """Real examples when their longest row is this sequence length's, else synthetic ones."""
    rng = np.random.default_rng(seed)
    if shard_files(directory):
        examples = read_examples(directory, count, rng)
        longest = max(len(example.input_ids) for example in examples)
        if seq_len // 2 < longest <= seq_len:
            return examples, f"{directory} ({count} examples drawn at random)"
        note = f"{directory} holds rows up to {longest} tokens"
    else:
        note = f"{directory} absent"
    examples = synthesize_examples(count, seq_len, config.vocab_size, rng)
    return examples, f"synthetic, BERT-shaped ({count} examples; {note})"


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


@dataclass(frozen=True)
class Batch:
    tensors: dict
    real_tokens: int
    computed_tokens: int  # what the dense layers run on: padded rows, or real tokens only


def make_batches(
    spec: Spec, examples: list[Example], batch_size: int, device: str, seed: int, attention: str
) -> list[Batch]:
    """What each model is fed: see the module docstring."""
    rng = np.random.default_rng(seed)
    if spec.batches == "buckets":
        groups = length_bucketed_batches(examples, batch_size, rng)
    else:
        groups = random_batches(examples, batch_size, rng)
    multiple = 8 if spec.batches == "buckets" and not spec.unpadded else 1
    batches = []
    for group in groups:
        real = sum(len(example.input_ids) for example in group)
        if spec.model == "transformers":
            tensors = collate_dense(group)
        else:
            tensors = collate_sparse(group, multiple)
        if spec.unpadded:
            tensors = unpad_batch(tensors, attention)
        computed = real if spec.unpadded else len(group) * padded_length(group, multiple)
        moved = {key: value.to(device) for key, value in tensors.items()}
        batches.append(Batch(moved, real, computed))
    return batches


@dataclass
class Variant:
    """One model with its optimizer, the time it spent in measured steps, and how it ended."""

    spec: Spec
    model: torch.nn.Module | None
    optimizer: torch.optim.Optimizer | None
    seconds: float = 0.0
    cpu_seconds: float = 0.0
    steps: int = 0
    peak_mib: float | None = None
    error: str | None = None


def build_variant(spec: Spec, initial: BertForPreTraining, device: str) -> Variant:
    """The spec's model holding `initial`'s weights, with AdamW (fused on CUDA)."""
    model: torch.nn.Module
    if spec.model == "transformers":
        import transformers

        hf_config = transformers.BertConfig(
            **initial.config.to_hf_dict(), attn_implementation="sdpa"
        )
        with torch.device(device):
            model = transformers.BertForPreTraining(hf_config)
        model.load_state_dict(initial.state_dict())
    else:
        model = copy.deepcopy(initial).to(device)
    model.train()
    optimizer = torch.optim.AdamW(
        model.parameters(), lr=1e-4, weight_decay=0.01, fused=device == "cuda"
    )
    if spec.compiled:
        model = torch.compile(model, dynamic=True if spec.unpadded else None)
    return Variant(spec, model, optimizer)


def train_step(variant: Variant, batch: dict, autocast: Callable) -> None:
    with autocast():
        loss = variant.model(**batch).loss
    loss.backward()
    variant.optimizer.step()
    variant.optimizer.zero_grad(set_to_none=True)


def guarded_step(variant: Variant, batch: dict, autocast: Callable) -> bool:
    """One step; a failure (out of memory, a kernel that does not run here) ends the variant
    with its error recorded instead of ending the benchmark."""
    try:
        train_step(variant, batch, autocast)
        return True
    except Exception as error:  # reported in the table; the other models go on
        first_line = (str(error).strip().splitlines() or [""])[0][:300]
        variant.error = f"{type(error).__name__}: {first_line}"
        variant.model = variant.optimizer = None
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
        return False


def best_step_seconds(
    variant: Variant, batch: Batch, autocast: Callable, device: str, repeats: int
) -> tuple[float, float] | None:
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
        if not guarded_step(variant, batch.tensors, autocast):
            return None
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
    """Best of a few dense square matmuls: the attainable FLOP/s of this device and dtype."""
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


def datasheet_peak(device_name: str) -> tuple[float, str] | None:
    """The dense bf16 peak FLOP/s of a known GPU, and where the figure comes from."""
    for fragment, tflops, source in DENSE_BF16_PEAKS:
        if fragment.lower() in device_name.lower():
            return tflops * 1e12, source
    return None


def cuda_peak_mib(variant: Variant, batch: Batch, autocast: Callable) -> float | None:
    """The model's weights and AdamW state, plus one step's peak above all that is resident."""
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    before = torch.cuda.memory_allocated()
    if not guarded_step(variant, batch.tensors, autocast):
        return None
    step_peak = torch.cuda.max_memory_allocated() - before
    state = list(variant.model.parameters()) + [
        tensor
        for per_parameter in variant.optimizer.state.values()
        for tensor in per_parameter.values()
        if isinstance(tensor, torch.Tensor)
    ]
    return (step_peak + sum(t.numel() * t.element_size() for t in state)) / 2**20


def cpu_peak_mib(spec: Spec, config_name: str, seq_len: int) -> float:
    """Run `measure_cpu_memory` for `spec` in a fresh process (same arguments otherwise)."""
    spec_json = json.dumps(dataclasses.asdict(spec))
    command = [sys.executable, __file__, *sys.argv[1:]]
    command += ["--config", config_name, "--seq-len", str(seq_len), "--memory-of", spec_json]
    result = subprocess.run(command, capture_output=True, text=True, check=True)
    return json.loads(result.stdout.strip().splitlines()[-1])["peak_mib"]


def measure_cpu_memory(args: argparse.Namespace) -> None:
    """Child process: train one model a few steps, print its peak resident growth as JSON."""
    spec = Spec(**json.loads(args.memory_of))
    config, seq_len = CONFIGS[args.config[0]], args.seq_len[0]  # one of each in a child
    batch_size = args.batch_size or CPU_BATCH_SIZE[args.config[0]]
    steps = min(3, args.steps)
    examples, _ = load_or_make_examples(
        args.examples, config, seq_len, batch_size * steps, args.seed
    )
    initial = BertForPreTraining(config, torch.Generator().manual_seed(args.seed))
    variant = build_variant(spec, initial, "cpu")
    batches = make_batches(spec, examples, batch_size, "cpu", args.seed, args.attention)
    autocast = autocast_for("cpu", args.dtype)
    before = resident_memory_bytes("VmRSS")
    for batch in batches:
        train_step(variant, batch.tensors, autocast)
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


def warm_every_shape(
    variants: list[Variant], batches: dict[Spec, list[Batch]], autocast: Callable
) -> None:
    """One unmeasured step on each distinct input shape of a model's measured batches.

    On CUDA a shape's first step costs far more than the next ones (kernel selection and
    allocation for that shape), which a long training run pays once per shape: length-bucketed
    batches take one of ~16 shapes at length 128, and with a few warm-up steps most measured
    steps met a new shape (BERT-base on one H200: 83,448 real tokens/s with 4 warm-up steps,
    284,089 once every shape had been seen, 2026-11-28).
    """
    for variant in variants:
        seen = set()
        for batch in batches[variant.spec]:
            shape = tuple(batch.tensors["input_ids"].shape)
            if variant.model is not None and shape not in seen:
                seen.add(shape)
                guarded_step(variant, batch.tensors, autocast)


def time_steps(
    variants: list[Variant], batches: dict[Spec, list[Batch]], autocast: Callable, args, title: str
) -> None:
    """Step every model through its batches, alternating models step by step."""
    rounds = max(len(plan) for plan in batches.values())
    for step in tqdm(range(rounds), desc=f"{title}: measured steps", file=sys.stderr):
        for variant in variants:
            if step >= len(batches[variant.spec]) or variant.model is None:
                continue
            timing = best_step_seconds(
                variant, batches[variant.spec][step], autocast, args.device, args.repeats
            )
            if timing is not None:
                variant.seconds += timing[0]
                variant.cpu_seconds += timing[1]
                variant.steps += 1


def result_row(
    variant: Variant, plan: list[Batch], useful_flops: float, peaks: dict, reference: Variant
) -> dict:
    """One table row: throughput in real tokens, MFU, memory, speed-up over transformers."""
    real_tokens = sum(batch.real_tokens for batch in plan[: variant.steps])
    computed = sum(batch.computed_tokens for batch in plan)
    row = {
        "name": variant.spec.name,
        "model": variant.spec.labels[0],
        "batches": variant.spec.labels[1],
        "padding": 1 - sum(batch.real_tokens for batch in plan) / computed,
        "peak_mib": variant.peak_mib,
        "error": variant.error,
    }
    if variant.error is not None or variant.steps == 0:
        return row
    throughput = real_tokens / variant.seconds
    compared = reference.error is None and reference.steps == variant.steps
    return row | {
        "real_tokens_per_s": throughput,
        "ms_per_step": 1000 * variant.seconds / variant.steps,
        "mfu_measured_peak": throughput * useful_flops / peaks["measured"],
        "mfu_datasheet": throughput * useful_flops / peaks["datasheet"]
        if peaks["datasheet"]
        else None,
        "vs_transformers": reference.seconds / variant.seconds if compared else None,
        "real_tokens_per_cpu_s": real_tokens / variant.cpu_seconds,
        "vs_transformers_cpu_time": reference.cpu_seconds / variant.cpu_seconds
        if compared
        else None,
    }


def run_shape(args: argparse.Namespace, config_name: str, seq_len: int, peaks: dict) -> dict:
    """Train every model of `args.specs` on one (config, sequence length); return the table."""
    config = CONFIGS[config_name]
    if args.device == "cuda":
        batch_size = args.batch_size or CUDA_TOKENS_PER_BATCH // seq_len
    else:
        batch_size = args.batch_size or CPU_BATCH_SIZE[config_name]
    autocast = autocast_for(args.device, args.dtype)
    warmup_count = batch_size * args.warmup
    examples, source = load_or_make_examples(
        args.examples, config, seq_len, warmup_count + batch_size * args.steps, args.seed
    )
    warmup_examples, examples = examples[:warmup_count], examples[warmup_count:]
    initial = BertForPreTraining(config, torch.Generator().manual_seed(args.seed))
    parameters = count_parameters(initial)
    variants = [build_variant(spec, initial, args.device) for spec in args.specs]
    del initial

    def plan(spec: Spec, chosen: list[Example]) -> list[Batch]:
        return make_batches(spec, chosen, batch_size, args.device, args.seed, args.attention)

    for variant in variants:
        for batch in plan(variant.spec, warmup_examples):
            if variant.model is not None:
                guarded_step(variant, batch.tensors, autocast)
    batches = {variant.spec: plan(variant.spec, examples) for variant in variants}
    warm_every_shape(variants, batches, autocast)
    time_steps(variants, batches, autocast, args, f"{config_name}, length {seq_len}")
    for variant in variants:
        if args.no_memory or variant.model is None:
            continue
        if args.device == "cuda":
            variant.peak_mib = cuda_peak_mib(variant, batches[variant.spec][0], autocast)
        else:
            variant.peak_mib = cpu_peak_mib(variant.spec, config_name, seq_len)

    real_tokens = sum(len(example.input_ids) for example in examples)
    predicted = sum(len(example.masked_lm_positions) for example in examples)
    mean_length = real_tokens / len(examples)
    useful_flops = flops_per_token(config, round(mean_length), predicted / real_tokens)
    reference = next(v for v in variants if v.spec.model == "transformers")
    rows = [
        result_row(variant, batches[variant.spec], useful_flops, peaks, reference)
        for variant in variants
    ]
    del variants, batches
    if args.device == "cuda":
        torch.cuda.empty_cache()
    shape = {
        "hidden": config.hidden_size,
        "layers": config.num_hidden_layers,
        "heads": config.num_attention_heads,
        "intermediate": config.intermediate_size,
        "vocab": config.vocab_size,
        "parameters": parameters,
    }
    return {
        "config": config_name,
        "shape": shape,
        "seq_len": seq_len,
        "batch_size": batch_size,
        "steps": args.steps,
        "warmup": args.warmup,
        "repeats": args.repeats,
        "data": source,
        "mean_length": mean_length,
        "predicted_fraction": predicted / real_tokens,
        "useful_flops_per_token": useful_flops,
        "rows": rows,
    }


def format_number(value: float | None, spec: str, suffix: str = "") -> str:
    return "-" if value is None else f"{value:{spec}}{suffix}"


def markdown(report: dict) -> str:
    """The report as text: the conditions, then one table per (config, sequence length)."""
    peaks = report["peaks"]
    datasheet = peaks["datasheet"]
    lines = [
        f"device {report['device']} ({report['device_name']}), dtype {report['dtype']}, "
        f"torch {report['torch']}, transformers {report['transformers']}; "
        f"{report['date']}; load average {report['load_before']:.1f} at start, "
        f"{report['load_after']:.1f} at end",
        f"peak for MFU: measured {report['dtype']} matmul {peaks['measured'] / 1e12:.3f} TFLOP/s"
        + (
            f"; datasheet dense bf16 {datasheet / 1e12:.1f} TFLOP/s ({peaks['source']})"
            if datasheet
            else "; no datasheet peak for this device"
        ),
        f"unpadded attention kernel: {report['attention']}",
    ]
    cpu = report["device"] == "cpu"
    for run in report["runs"]:
        shape = run["shape"]
        lines += [
            "",
            f"**{run['config']}** (hidden {shape['hidden']}, {shape['layers']} layers, "
            f"{shape['heads']} heads, intermediate {shape['intermediate']}, vocabulary "
            f"{shape['vocab']}; {shape['parameters'] / 1e6:.1f}M parameters), sequence length "
            f"{run['seq_len']}, batch {run['batch_size']}; measured steps per model: "
            f"{run['steps']} (each the best of {run['repeats']}), after {run['warmup']} warmup "
            "and one step on each batch shape; "
            f"data: {run['data']}; mean length {run['mean_length']:.1f}, "
            f"{run['predicted_fraction']:.1%} of tokens predicted; "
            f"{run['useful_flops_per_token'] / 1e6:.1f} MFLOP of useful work per real token",
            "",
        ]
        header = "| model | batches | real tokens/s | padding | ms/step | peak MiB | MFU |"
        rule = "|---|---|---:|---:|---:|---:|---:|"
        if datasheet:
            header += " MFU (datasheet) |"
            rule += "---:|"
        header += " vs transformers |"
        rule += "---:|"
        if cpu:
            header += " real tokens per CPU-s | vs transformers (CPU time) |"
            rule += "---:|---:|"
        lines += [header, rule]
        for row in run["rows"]:
            cells = [
                row["model"],
                row["batches"],
                format_number(row.get("real_tokens_per_s"), ",.0f"),
                format_number(row["padding"], ".1%"),
                format_number(row.get("ms_per_step"), ".0f"),
                format_number(row["peak_mib"], ".0f"),
                format_number(row.get("mfu_measured_peak"), ".1%"),
            ]
            if datasheet:
                cells.append(format_number(row.get("mfu_datasheet"), ".1%"))
            cells.append(format_number(row.get("vs_transformers"), ".2f", "x"))
            if cpu:
                cells.append(format_number(row.get("real_tokens_per_cpu_s"), ",.0f"))
                cells.append(format_number(row.get("vs_transformers_cpu_time"), ".2f", "x"))
            if row["error"]:
                cells[1] += f" — failed: {row['error']}"
            lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--config", choices=sorted(CONFIGS), nargs="+", help="default: small")
    parser.add_argument("--seq-len", type=int, nargs="+", help="default: 128")
    parser.add_argument("--examples", type=Path, default=Path("data/examples/train"))
    parser.add_argument("--batch-size", type=int, help="default: by config (CPU), 16k tokens")
    parser.add_argument("--steps", type=int, help="measured steps per model (8 CPU, 10 CUDA)")
    parser.add_argument("--warmup", type=int, help="unmeasured steps per model (2 CPU, 3 CUDA)")
    parser.add_argument("--repeats", type=int, help="timed runs per step, best kept (3 CPU, 1)")
    parser.add_argument("--dtype", choices=("fp32", "bf16"), help="default: fp32 CPU, bf16 CUDA")
    parser.add_argument("--unpad", action="store_true", help="add unpadded models (CUDA: always)")
    parser.add_argument("--attention", choices=VARLEN_KERNELS, default="auto")
    parser.add_argument("--compile", action="store_true", help="add torch.compile'd models")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-memory", action="store_true", help="skip the memory measurement")
    parser.add_argument("--out", type=Path, help="write the report here (.json) and as .md")
    parser.add_argument("--memory-of", help=argparse.SUPPRESS)
    args = parser.parse_args()
    cuda = args.device == "cuda"
    args.config = args.config or (["base", "large"] if cuda else ["small"])
    args.seq_len = args.seq_len or ([128, 512] if cuda else [128])
    args.steps = args.steps or (10 if cuda else 8)
    args.warmup = args.warmup if args.warmup is not None else (3 if cuda else 2)
    args.repeats = args.repeats or (1 if cuda else 3)
    args.dtype = args.dtype or ("bf16" if cuda else "fp32")
    args.specs = specs_for(args.device, args.unpad, args.compile)
    if cuda and not torch.cuda.is_available():
        raise SystemExit("--device cuda: no CUDA device here")
    try:
        check_varlen_kernel(args.attention)
    except BertforgeError as error:
        raise SystemExit(f"--attention: {error}") from None
    return args


def main() -> None:
    args = parse_args()
    torch.set_num_threads(args.threads)
    if args.memory_of:
        measure_cpu_memory(args)
        return
    load_before = os.getloadavg()[0]
    if args.device == "cuda":
        device_name = torch.cuda.get_device_name()
    else:
        device_name = platform.processor() or platform.machine()
        device_name += f", {os.cpu_count()} CPUs, {torch.get_num_threads()} torch threads"
    datasheet = datasheet_peak(device_name) if args.device == "cuda" else None
    peaks = {
        "measured": matmul_peak_flops(args.device, args.dtype),
        "datasheet": datasheet[0] if datasheet else None,
        "source": datasheet[1] if datasheet else None,
    }
    import transformers

    report = {
        "date": datetime.date.today().isoformat(),
        "device": args.device,
        "device_name": device_name,
        "dtype": args.dtype,
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "attention": args.attention,
        "load_before": load_before,
        "peaks": peaks,
        "runs": [],
    }
    for config_name in args.config:
        for seq_len in args.seq_len:
            report["runs"].append(run_shape(args, config_name, seq_len, peaks))
            report["load_after"] = os.getloadavg()[0]
            if args.out:  # after every shape: a run cut short keeps what it measured
                args.out.parent.mkdir(parents=True, exist_ok=True)
                args.out.write_text(json.dumps(report, indent=2) + "\n")
                args.out.with_suffix(".md").write_text(markdown(report))
    print(markdown(report))


if __name__ == "__main__":
    main()
