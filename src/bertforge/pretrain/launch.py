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


PICKED_PORT_ENV = "BERTFORGE_PICKED_PORT"
"""Set to 1 in the ranks `launch_local_processes` starts: their MASTER_PORT was picked free, not
given, so rank 0 may report it taken (`PORT_TAKEN_EXIT`) for the launcher to pick another."""
PORT_TAKEN_EXIT = 75  # EX_TEMPFAIL: rank 0 found the picked port taken by the time it bound it
PORT_ATTEMPTS = 5


def free_port() -> int:
    """A port free now. Another process may take it before rank 0 binds it: the callers retry."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def port_taken(error: BaseException) -> bool:
    """Whether a failed rendezvous failed because its port was already in use."""
    text = str(error)
    return "EADDRINUSE" in text or "address already in use" in text.lower()


def launch_local_processes(processes: int, command: Sequence[str]) -> int:
    """Run `command` as the `processes` ranks of a one-machine job; return the job's exit code.

    The environment is torchrun's (RANK, LOCAL_RANK, WORLD_SIZE, MASTER_ADDR/PORT), and CPU
    threads are split between the ranks (OMP_NUM_THREADS, unless set). The first rank to fail
    stops the others; its exit code is the job's (2 for a one-line `BertforgeError`).
    """
    for attempt in range(1, PORT_ATTEMPTS + 1):
        # the last try's rank 0 says a taken port in one line instead of asking for another
        code = run_local_processes(processes, command, free_port(), attempt < PORT_ATTEMPTS)
        if code != PORT_TAKEN_EXIT:
            return code
        # the free port was taken between picking and binding it (another job starting)
        print("pretrain: the picked rendezvous port was taken meanwhile; starting the ranks again")
    return code


def run_local_processes(
    processes: int, command: Sequence[str], port: int, may_retry: bool = False
) -> int:
    """One try of `launch_local_processes` with rank 0's store at 127.0.0.1:`port`."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
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
        env.pop(PICKED_PORT_ENV, None)
        if may_retry:
            env[PICKED_PORT_ENV] = "1"
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
