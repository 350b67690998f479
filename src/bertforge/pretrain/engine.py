"""The engine: joining the job, the optimizer, the learning-rate schedule, the DeepSpeed config.

`deepspeed.initialize` gets a config dict built from the params (`deepspeed_config`) and our own
optimizer: torch's AdamW (fused on GPU) or DeepSpeed's FusedLamb (GPU), over BERT's two
weight-decay groups, made `skippable` so a non-finite loss can cancel an update. The learning
rate is ours too: the loop sets `learning_rate(params, step)` before every optimizer step.
"""

from __future__ import annotations

import gc
import importlib
import os
import sys
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any, NoReturn

import torch

from bertforge.errors import BertforgeError
from bertforge.model import BertForPreTraining, optimizer_parameter_groups
from bertforge.pretrain.launch import (
    PICKED_PORT_ENV,
    PORT_ATTEMPTS,
    PORT_TAKEN_EXIT,
    check_gpu_count,
    free_port,
    port_taken,
)
from bertforge.pretrain.ops import skip_unused_ops
from bertforge.pretrain.params import PretrainParams

RENDEZVOUS_TIMEOUT_S = 300.0
"""How long a rank waits for the others to join, unless told (pretrain.rendezvous_timeout_s)."""
COLLECTIVE_TIMEOUT = timedelta(seconds=600)
"""How long a collective waits once joined: DeepSpeed's `init_distributed` default."""


@dataclass(frozen=True)
class Topology:
    """This process's place in the job."""

    rank: int
    local_rank: int
    world_size: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def start_distributed(rendezvous_timeout_s: float = RENDEZVOUS_TIMEOUT_S) -> Topology:
    """Join the job (gloo on CPU, nccl on GPU); a lone process is a job of one.

    Under torchrun or DeepSpeed's launcher the job is theirs (RANK, WORLD_SIZE, LOCAL_RANK,
    MASTER_ADDR/PORT set, on one machine or several); otherwise this process is rank 0 of 1.
    Joining waits at most `rendezvous_timeout_s` for every rank, and says so first.
    """
    cuda = torch.cuda.is_available()
    if not cuda:
        os.environ.setdefault("DS_ACCELERATOR", "cpu")
    for name, value in (
        ("RANK", "0"),
        ("LOCAL_RANK", "0"),
        ("WORLD_SIZE", "1"),
        ("MASTER_ADDR", "127.0.0.1"),
    ):
        os.environ.setdefault(name, value)
    picked_here = "MASTER_PORT" not in os.environ
    os.environ.setdefault("MASTER_PORT", str(free_port()))
    skip_unused_ops()  # init_distributed would compile an op no run uses (bertforge.pretrain.ops)
    # imported before the default group exists: its functions take `group=group.WORLD` as a
    # default argument, so importing it later (DeepSpeed's initialize does) holds the group, and
    # its threads, until the interpreter's teardown (see stop_distributed)
    importlib.import_module("torch.distributed.nn.functional")
    import deepspeed
    from deepspeed.utils import logger as deepspeed_logger

    deepspeed_logger.setLevel("ERROR")  # its progress chatter; our own bar says enough
    warnings.filterwarnings("ignore", category=FutureWarning, module="torch.distributed")
    rank, local_rank = int(os.environ["RANK"]), int(os.environ["LOCAL_RANK"])
    world_size = int(os.environ["WORLD_SIZE"])
    where = f"{os.environ['MASTER_ADDR']}:{os.environ['MASTER_PORT']}"
    if cuda:
        check_gpu_count(int(os.environ.get("LOCAL_WORLD_SIZE", local_rank + 1)))
        torch.cuda.set_device(local_rank)
    if world_size > 1 and local_rank == 0:  # one line per machine
        print(
            f"pretrain: rank {rank} waiting up to {rendezvous_timeout_s:g} s for {world_size} "
            f"ranks at {where}",
            file=sys.stderr,
            flush=True,
        )
    for attempt in range(1, PORT_ATTEMPTS + 1):
        try:
            deepspeed.init_distributed(
                dist_backend="nccl" if cuda else "gloo",
                verbose=False,
                timeout=timedelta(seconds=rendezvous_timeout_s),
            )
            break
        except torch.distributed.DistError as error:  # no store to reach, or not every rank came
            if not port_taken(error) or rank != 0:
                failure = rendezvous_error(rank, world_size, where, rendezvous_timeout_s, error)
                raise failure from error
            # a port picked free was taken before rank 0 bound it: pick again, never wait on it
            if world_size == 1 and picked_here and attempt < PORT_ATTEMPTS:
                os.environ["MASTER_PORT"] = str(free_port())
                where = f"{os.environ['MASTER_ADDR']}:{os.environ['MASTER_PORT']}"
                continue
            if os.environ.get(PICKED_PORT_ENV) == "1":  # our launcher starts the ranks again
                sys.exit(PORT_TAKEN_EXIT)
            raise BertforgeError(
                f"pretrain: rank 0 cannot listen at {where}: another process uses that port; "
                "set MASTER_PORT (or the rendezvous endpoint) to a free one"
            ) from None
    # the bound was for joining; collectives keep DeepSpeed's own (a checkpoint may take longer)
    set_timeout = getattr(torch.distributed.distributed_c10d, "_set_pg_timeout", None)
    if set_timeout is not None and world_size > 1:
        set_timeout(COLLECTIVE_TIMEOUT)
    device = torch.device("cuda", local_rank) if cuda else torch.device("cpu")
    return Topology(
        rank=torch.distributed.get_rank(),
        local_rank=local_rank,
        world_size=torch.distributed.get_world_size(),
        device=device,
    )


PROCESS_GROUP_THREADS = ("gloo", "nccl", "tcpstore")
"""Parts of the names PyTorch gives a process group's threads (gloo's workers and loops, nccl's
watchdog and heartbeat, the rendezvous store's server)."""


def stop_distributed() -> list[str]:
    """Leave the job: destroy this process's process groups, once its work is done.

    Returns the process-group threads still running after it (Linux; elsewhere always empty),
    for the caller to `exit_without_teardown` when there are any.

    Destroying a group stops its threads only once nothing refers to it any more, so DeepSpeed's
    own references go too (`deepspeed.comm`'s destroy), the engine's before (`pretrain`
    destroys its engine on the way out) and those in reference cycles after (a collection).
    A thread left running reaches the interpreter's teardown, where a gloo worker releasing
    the last collective's tensors takes the GIL, Python ends that thread, and the process
    aborts ("terminate called without an active exception", exit code 1 after a run that
    finished). Called only after success: a rank that failed exits without it, since
    destroying a group other ranks still use can hang them.
    """
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        deepspeed_comm = sys.modules.get("deepspeed.comm")
        if deepspeed_comm is not None and deepspeed_comm.is_initialized():
            deepspeed_comm.destroy_process_group()  # releases DeepSpeed's references too
        else:
            torch.distributed.destroy_process_group()
        gc.collect()  # the last references may sit in reference cycles
    return process_group_threads()


def process_group_threads() -> list[str]:
    """The names of this process's process-group threads still running (Linux; else [])."""
    tasks = Path("/proc/self/task")
    if not tasks.is_dir():
        return []
    names = []
    for task in tasks.iterdir():
        try:
            name = (task / "comm").read_text(encoding="utf-8").strip()
        except OSError:  # the thread ended meanwhile
            continue
        if any(part in name for part in PROCESS_GROUP_THREADS):
            names.append(name)
    return sorted(names)


def exit_without_teardown(code: int) -> NoReturn:
    """End the process now, its output flushed, without the interpreter's teardown.

    For a finished rank whose process groups a library still holds (`stop_distributed`
    returned threads; ZeRO-3 keeps its modules in DeepSpeed's module-level state), and for a
    rank that failed (its groups are left up): the teardown would meet their threads.
    Everything the run writes is closed and renamed into place, or cleaned away, before.
    """
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def rendezvous_error(
    rank: int, world_size: int, where: str, timeout_s: float, error: Exception
) -> BertforgeError:
    reason = (str(error).strip().splitlines() or [type(error).__name__])[0].rstrip(".")
    return BertforgeError(
        f"pretrain: rank {rank} could not join the {world_size} ranks of the job at {where} "
        f"within {timeout_s:g} s (pretrain.rendezvous_timeout_s): {reason}; start every node "
        "with the same MASTER_ADDR/MASTER_PORT (or rendezvous endpoint) reachable from each"
    )


@dataclass(frozen=True)
class GpuMemory:
    peak_bytes: int
    total_bytes: int
    name: str


def gpu_memory_seen(device: torch.device) -> GpuMemory:
    """What an out-of-memory error reports: this rank's peak, the GPU's total, its name."""
    properties = torch.cuda.get_device_properties(device)
    return GpuMemory(
        torch.cuda.max_memory_allocated(device), properties.total_memory, properties.name
    )


def out_of_memory_error(params: PretrainParams, step: int, memory: GpuMemory) -> BertforgeError:
    """The one line of a GPU out of memory in a training step: the memory seen and the knobs."""
    gib = 2**30
    hint = (
        f"lower pretrain.micro_batch_size (now {params.micro_batch_size}; accumulation keeps "
        f"global_batch_size {params.global_batch_size} when gradient_accumulation_steps is null)"
    )
    if params.zero_stage < 3:
        hint += f", or raise zero_stage (now {params.zero_stage})"
    if params.precision == "fp32":
        hint += ", or use precision bf16"
    return BertforgeError(
        f"pretrain: the GPU ran out of memory at step {step} ({memory.name}: "
        f"{memory.peak_bytes / gib:.1f} GiB allocated at the peak of "
        f"{memory.total_bytes / gib:.1f} GiB); {hint}"
    )


def learning_rate(params: PretrainParams, step: int) -> float:
    """The learning rate of optimizer step `step` (1-based, up to `max_steps`); never zero."""
    # 1) linear warmup for warmup_steps steps, from lr / warmup_steps up to lr
    if step <= params.warmup_steps:
        return params.lr * step / params.warmup_steps
    # 2) then decay to lr / (steps left) at the last step: linear, or polynomial with decay_power
    decay_steps = params.max_steps - params.warmup_steps
    remaining = (params.max_steps - step + 1) / decay_steps
    power = params.decay_power if params.decay == "polynomial" else 1.0
    return params.lr * remaining**power


def skippable(optimizer_cls: type[torch.optim.Optimizer]) -> type[torch.optim.Optimizer]:
    """`optimizer_cls` whose next `step` can be cancelled: how a non-finite loss skips an update.

    DeepSpeed drives the optimizer (on ZeRO's flat partitions); setting `skip_next_step` before
    the boundary `engine.step()` makes that step a no-op for weights and optimizer state on every
    ZeRO stage and precision alike, while DeepSpeed still clears the gradients.
    """

    class SkippableOptimizer(optimizer_cls):  # type: ignore[valid-type, misc]
        skip_next_step = False

        def step(self, closure: Callable[[], float] | None = None) -> Any:
            if self.skip_next_step:
                return None
            return super().step(closure)

    SkippableOptimizer.__name__ = f"Skippable{optimizer_cls.__name__}"
    return SkippableOptimizer


def make_optimizer(
    model: torch.nn.Module, params: PretrainParams, device_type: str
) -> torch.optim.Optimizer:
    # no decay on biases and LayerNorm weights
    groups = optimizer_parameter_groups(model, params.weight_decay)
    betas = (params.betas[0], params.betas[1])
    if params.optimizer == "lamb":
        from deepspeed.ops.lamb import FusedLamb

        return skippable(FusedLamb)(groups, lr=params.lr, betas=betas, eps=params.eps)
    fused = {"fused": True} if device_type == "cuda" else {}
    return skippable(torch.optim.AdamW)(groups, lr=params.lr, betas=betas, eps=params.eps, **fused)


def deepspeed_config(params: PretrainParams, accumulation: int) -> dict[str, Any]:
    """The DeepSpeed config of these params (the optimizer and the schedule are ours)."""
    # the DeepSpeed config: batch shape, ZeRO stage, clipping and mixed precision
    return {
        "train_batch_size": params.global_batch_size,
        "train_micro_batch_size_per_gpu": params.micro_batch_size,
        "gradient_accumulation_steps": accumulation,
        "gradient_clipping": params.gradient_clipping,  # clip the global gradient norm
        "zero_optimization": {"stage": params.zero_stage},
        "zero_allow_untested_optimizer": True,
        "zero_force_ds_cpu_optimizer": False,
        "bf16": {"enabled": params.precision == "bf16"},
        "fp16": {"enabled": params.precision == "fp16", "loss_scale": 0, "initial_scale_power": 16},
        # bf16: accumulate gradients over micro-batches in fp32, not in bf16 (8-bit mantissa)
        **({"data_types": {"grad_accum_dtype": "fp32"}} if params.precision == "bf16" else {}),
        "steps_per_print": 2**31 - 1,
        "wall_clock_breakdown": False,
    }


def build_engine(
    model: BertForPreTraining, params: PretrainParams, accumulation: int, device: torch.device
) -> tuple[Any, torch.optim.Optimizer]:
    """The DeepSpeed engine and the optimizer it drives (kept to set rates and cancel steps)."""
    import deepspeed

    optimizer = make_optimizer(model, params, device.type)
    config = deepspeed_config(params, accumulation)
    engine, _, _, _ = deepspeed.initialize(model=model, optimizer=optimizer, config=config)
    if params.compile:
        engine.compile(compile_kwargs={"dynamic": True})
    return engine, optimizer
