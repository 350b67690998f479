"""What the run reports while it trains: the progress bar, the training log (the DVC plot) and
MLflow's per-step metrics, with throughput and MFU against the measured matmul peak; and the
stall watchdog, which stops a rank that makes no step for ``stall_timeout_s``."""

from __future__ import annotations

import os
import shutil
import sys
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, astuple, dataclass
from pathlib import Path

import torch
from tqdm import tqdm

from bertforge.constants import IGNORE_INDEX
from bertforge.io import replace_path
from bertforge.model import BertConfig, flops_per_token
from bertforge.pretrain.data import attention_width, real_tokens
from bertforge.pretrain.params import PretrainParams
from bertforge.pretrain.step import STATS, StepResult

MetricsLogger = Callable[[Mapping[str, float], int], None]
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
STALL_EXIT_CODE = 3


class StallWatchdog:
    """Ends the process, with one line and exit code 3, when `beat` is not called for `timeout_s`.

    A rank blocked in a collective (a peer hung, a deadlocked op) would otherwise wait without
    limit; the launcher then stops the other ranks. A daemon thread checks a few times a
    timeout; `stop` ends it.
    """

    def __init__(self, timeout_s: float, rank: int, step: int) -> None:
        self.timeout_s = timeout_s
        self.rank = rank
        self.step = step
        self.last_beat = time.monotonic()
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._watch, name="stall-watchdog", daemon=True)
        self.thread.start()

    def beat(self, step: int) -> None:
        self.step, self.last_beat = step, time.monotonic()

    def stop(self) -> None:
        self.stopped.set()

    def _watch(self) -> None:
        while not self.stopped.wait(min(self.timeout_s / 4, 10.0)):
            if time.monotonic() - self.last_beat > self.timeout_s:
                print(
                    f"error: pretrain: rank {self.rank} made no training step for "
                    f"{self.timeout_s:g} s after step {self.step} (pretrain.stall_timeout_s); "
                    "stopped: a peer may have hung or died; resume with the same command",
                    file=sys.stderr,
                    flush=True,
                )
                os._exit(STALL_EXIT_CODE)


class TrainingLog:
    """Rows of per-step metrics (the DVC plot), kept with the checkpoints so a resume continues."""

    COLUMNS = (
        "step",
        "loss",
        "mlm_loss",
        "nsp_loss",
        "mlm_accuracy",
        "nsp_accuracy",
        "lr",
        "grad_norm",
        "tokens_per_s",
        "mfu",
        "nonfinite_steps",
    )

    def __init__(self, path: Path) -> None:
        self.path = Path(path)

    def continue_from(self, step: int) -> TrainingLog:
        """Keep the rows up to `step` (the checkpoint resumed; none for a fresh run)."""
        kept = ["\t".join(self.COLUMNS) + "\n"]
        if step > 0 and self.path.is_file():
            for line in self.path.read_text(encoding="utf-8").splitlines()[1:]:
                if line and int(line.split("\t", 1)[0]) <= step:
                    kept.append(line + "\n")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.path.write_text("".join(kept), encoding="utf-8")
        return self

    def append(self, row: Mapping[str, float]) -> None:
        values = [
            f"{row[name]:.6g}" if name != "step" else str(int(row[name])) for name in self.COLUMNS
        ]
        with open(self.path, "a", encoding="utf-8") as handle:
            handle.write("\t".join(values) + "\n")

    def rows(self) -> list[dict[str, float]]:
        """Every row, oldest first (also those written before a resume), as column: value."""
        lines = self.path.read_text(encoding="utf-8").splitlines()[1:]  # after the header
        return [dict(zip(self.COLUMNS, map(float, row.split("\t")), strict=True)) for row in lines]

    def last_row(self) -> dict[str, float]:
        """The newest row, or {} when there is none."""
        rows = self.rows()
        return rows[-1] if rows else {}

    def publish(self, destination: Path) -> None:
        destination = Path(destination)
        destination.parent.mkdir(parents=True, exist_ok=True)
        staging = destination.parent / f".{destination.name}.tmp-{os.getpid()}"
        shutil.copyfile(self.path, staging)
        replace_path(staging, destination)


@dataclass(frozen=True)
class TrainingTime:
    """Seconds, real tokens and model FLOPs of training steps, and the matmul peak over those
    seconds (FLOP/s × s): what throughput and MFU are computed from. Sums over the invocations
    of one run are kept in the checkpoints, so the figures survive a resume or a re-export."""

    seconds: float = 0.0
    tokens: float = 0.0
    flops: float = 0.0
    peak_flops_seconds: float = 0.0

    def __add__(self, other: TrainingTime) -> TrainingTime:
        return TrainingTime(*(a + b for a, b in zip(astuple(self), astuple(other), strict=True)))

    @classmethod
    def from_record(cls, record: Mapping[str, float] | None) -> TrainingTime:
        """From `record()`'s dict (None: a checkpoint written before the record existed)."""
        return cls(**{name: float(value) for name, value in (record or {}).items()})

    def record(self) -> dict[str, float]:
        return asdict(self)

    def summary(self) -> dict[str, float]:
        """Throughput over these seconds, and the peak MFU divides by (zeros when none)."""
        seconds = self.seconds if self.seconds > 0 else float("inf")
        peak = self.peak_flops_seconds if self.peak_flops_seconds > 0 else float("inf")
        return {
            "seconds": self.seconds,
            "tokens_per_s": self.tokens / seconds,
            "flops_per_s": self.flops / seconds,
            "mfu": self.flops / peak,
            "peak_flops_per_s": self.peak_flops_seconds / seconds,  # the training's, not now's
        }


class StepLogger:
    """Sums the steps between log rows into a row: progress bar, training log, MLflow (rank 0).

    Throughput counts real (non-padding) tokens of all ranks; MFU divides the model FLOPs of
    those tokens (`bertforge.model.flops_per_token`) by the measured matmul peak of all ranks.
    """

    def __init__(
        self,
        params: PretrainParams,
        start_step: int,
        log: TrainingLog | None,
        log_metrics: MetricsLogger | None,
        peak_flops: float,
        rank: int = 0,
    ) -> None:
        self.every = params.log_every
        self.max_steps = params.max_steps
        self.log = log
        self.log_metrics = log_metrics if log is not None else None
        self.peak_flops = peak_flops
        self.window = dict.fromkeys(STATS, 0.0)
        self.started = self.window_started = time.perf_counter()
        self.tokens = self.flops = 0.0
        self.bar = tqdm(
            total=params.max_steps,
            initial=start_step,
            desc="pretrain",
            unit="step",
            disable=log is None,
            file=sys.stderr,
        )
        self.watchdog = StallWatchdog(params.stall_timeout_s, rank, start_step)

    def add(self, step: int, result: StepResult, lr: float, nonfinite_total: int) -> None:
        """Account step `step` (1-based); every `log_every` steps, emit a row."""
        self.watchdog.beat(step)
        for key, value in result.sums.items():
            self.window[key] += value
        self.tokens += result.sums["tokens"]
        self.flops += result.sums["flops"]
        self.bar.update(1)
        if step % self.every and step != self.max_steps:
            return
        elapsed = time.perf_counter() - self.window_started
        row = log_row(
            step, self.window, lr, result.grad_norm, elapsed, self.peak_flops, nonfinite_total
        )
        self.bar.set_postfix(
            loss=f"{row['loss']:.3f}", mlm_acc=f"{row['mlm_accuracy']:.3f}", lr=f"{lr:.2e}"
        )
        if self.log is not None:
            self.log.append(row)
        if self.log_metrics is not None:
            self.log_metrics({key: value for key, value in row.items() if key != "step"}, step)
        self.window = dict.fromkeys(STATS, 0.0)
        self.window_started = time.perf_counter()

    def so_far(self) -> TrainingTime:
        """This invocation's training until now."""
        seconds = time.perf_counter() - self.started
        return TrainingTime(seconds, self.tokens, self.flops, seconds * self.peak_flops)

    def close(self) -> TrainingTime:
        """This invocation's training."""
        self.watchdog.stop()
        self.bar.close()
        return self.so_far()


def log_row(
    step: int,
    window: Mapping[str, float],
    lr: float,
    grad_norm: float,
    elapsed: float,
    peak_flops: float,
    nonfinite_total: int,
) -> dict[str, float]:
    """One row of the training log from the sums of the steps since the last row."""
    batches = max(window["micro_batches"] - window["nonfinite"], 1)
    return {
        "step": step,
        "loss": window["loss"] / batches,
        "mlm_loss": window["mlm_loss"] / batches,
        "nsp_loss": window["nsp_loss"] / batches,
        "mlm_accuracy": window["mlm_correct"] / max(window["mlm_total"], 1),
        "nsp_accuracy": window["nsp_correct"] / max(window["nsp_total"], 1),
        "lr": lr,
        "grad_norm": grad_norm,
        "tokens_per_s": window["tokens"] / elapsed,
        "mfu": window["flops"] / elapsed / peak_flops,
        "nonfinite_steps": nonfinite_total,
    }


def measure_matmul_peak(device: torch.device, dtype: torch.dtype, trials: int = 5) -> float:
    """FLOP/s of a large dense matmul on this process's device: the ceiling MFU is taken against.

    The best of a few short trials, so that a moment of contention does not lower the ceiling.
    """
    size = 4096 if device.type == "cuda" else 512
    generator = torch.Generator(device).manual_seed(0)  # leaves the global (dropout) RNG alone
    a = torch.randn(size, size, device=device, dtype=dtype, generator=generator)
    b = torch.randn(size, size, device=device, dtype=dtype, generator=generator)
    best = 0.0
    for _ in range(trials + 1):  # the first trial warms up
        start, iterations = time.perf_counter(), 0
        while iterations < 3 or time.perf_counter() - start < 0.1:
            torch.matmul(a, b)
            iterations += 1
            if device.type == "cuda":
                torch.cuda.synchronize(device)
        best = max(best, 2 * size**3 * iterations / (time.perf_counter() - start))
    return best


def job_peak_flops(device: torch.device, precision: str) -> float:
    """The matmul peak of all ranks together (`measure_matmul_peak`, all-reduced)."""
    peak = torch.tensor(
        measure_matmul_peak(device, DTYPES[precision]), dtype=torch.float64, device=device
    )
    torch.distributed.all_reduce(peak)
    return float(peak)


def batch_flops(config: BertConfig, batch: Mapping[str, torch.Tensor]) -> float:
    """Model FLOPs of a micro-batch's real (non-padding) tokens."""
    tokens = float(real_tokens(batch))
    masked = float((batch["masked_lm_ids"] != IGNORE_INDEX).sum())
    return flops_per_token(config, attention_width(batch), masked / tokens) * tokens
