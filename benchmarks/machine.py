"""The machine a benchmark measured on, named the same way by every benchmark.

Times differ between CPU models, and byte-identical stage outputs are a promise for one CPU
model, so a figure names the CPU model and the cores it had, not the host name (every
development VM is called ``vm``).
"""

from __future__ import annotations

import os
import platform
from pathlib import Path


def cpu_model() -> str:
    """The CPU's model name (Linux), or the machine type elsewhere."""
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        for line in cpuinfo.read_text(encoding="utf-8", errors="replace").splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.machine()


def cores() -> int:
    """The CPU cores this process may run on (its affinity, which a container may narrow)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def machine() -> str:
    """``<CPU model> (<architecture>), <n> cores``: what a table or a results row names."""
    return f"{cpu_model()} ({platform.machine()}), {cores()} cores"
