"""Starting the ranks of a one-machine job, with torchrun's environment contract.

Multi-node jobs use torchrun or DeepSpeed's launcher unchanged: the stage script only starts its
own ranks when it is not already under one (`under_launcher`).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from collections.abc import Sequence
from typing import Any

import torch

from bertforge.errors import BertforgeError


def under_launcher() -> bool:
    """True inside a job started by torchrun, DeepSpeed's launcher or `launch_local_processes`."""
    return "WORLD_SIZE" in os.environ and "RANK" in os.environ


def check_gpu_count(processes: int, gpus: int | None = None) -> None:
    """One GPU per rank: more ranks on a machine than GPUs it shows is a one-line error."""
    gpus = torch.cuda.device_count() if gpus is None else gpus
    if 0 < gpus < processes:
        visible = os.environ.get("CUDA_VISIBLE_DEVICES", "unset")
        raise BertforgeError(
            f"params.yaml: pretrain.processes: {processes} ranks on this machine but only {gpus} "
            f"visible GPUs (CUDA_VISIBLE_DEVICES={visible}); use at most {gpus}, or null for one "
            "per GPU (under torchrun: --nproc-per-node)"
        )


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def launch_local_processes(processes: int, command: Sequence[str]) -> int:
    """Run `command` as the `processes` ranks of a one-machine job; return the job's exit code.

    The environment is torchrun's (RANK, LOCAL_RANK, WORLD_SIZE, MASTER_ADDR/PORT), and CPU
    threads are split between the ranks (OMP_NUM_THREADS, unless set). The first rank to fail
    stops the others; its exit code is the job's (2 for a one-line `BertforgeError`).
    """
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    port = free_port()
    children: list[subprocess.Popen] = []
    for rank in range(processes):
        env = dict(
            os.environ,
            RANK=str(rank),
            LOCAL_RANK=str(rank),
            WORLD_SIZE=str(processes),
            LOCAL_WORLD_SIZE=str(processes),
            MASTER_ADDR="127.0.0.1",
            MASTER_PORT=str(port),
        )
        env.setdefault("OMP_NUM_THREADS", str(max(1, (cores or 1) // processes)))
        children.append(subprocess.Popen(list(command), env=env))

    def stop_children(signum: int, _frame: Any) -> None:
        for child in children:
            if child.poll() is None:
                child.send_signal(signum)

    # SIGTERM to this process alone is passed on; Ctrl-C reaches the whole process group anyway,
    # so here it only must not end the launcher before its ranks.
    previous = {
        signal.SIGTERM: signal.signal(signal.SIGTERM, stop_children),
        signal.SIGINT: signal.signal(signal.SIGINT, lambda signum, frame: None),
    }
    try:
        while True:
            codes = [child.poll() for child in children]
            failed = [code for code in codes if code not in (None, 0)]
            if failed:
                for child in children:
                    if child.poll() is None:
                        child.terminate()
                for child in children:
                    try:
                        child.wait(timeout=30)
                    except subprocess.TimeoutExpired:
                        child.kill()
                return failed[0] if failed[0] > 0 else 1
            if all(code == 0 for code in codes):
                return 0
            time.sleep(0.1)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
