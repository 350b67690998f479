"""DeepSpeed's compiled ops: which ones a run builds, where, and what building them needs.

DeepSpeed compiles some of its C++/CUDA ops on first use, with torch's cpp_extension (the
system's C++ compiler, ninja), behind a ``lock`` file in the build folder on which torch waits
with no time limit. So that no run waits silently:

* `skip_unused_ops` (called by `bertforge.pretrain.engine.start_distributed`, the one place a
  process joins a DeepSpeed job) skips the op no run of ours uses: ``deepspeed_shm_comm``,
  which ``deepspeed.init_distributed`` builds on every job but which only DeepSpeed's inference
  all-reduce (tensor-parallel inference) calls; training's collectives are the process group's
  (gloo, nccl). A CPU run compiles nothing and needs no compiler.

`prepare_ops` (every rank, before DeepSpeed starts):

* checks up front, in one line, for the tools what remains needs: a C++ compiler for
  ``pretrain.compile`` (torch.compile generates C++ on CPU, and a C launcher on GPU) and for
  ``optimizer: lamb`` (DeepSpeed's FusedLamb, compiled for the GPU);
* builds into a folder of the project's own (``TORCH_EXTENSIONS_DIR`` = ``<venv>/torch_extensions``
  unless set), where a build ``lock`` that no live process of ours holds is left by a killed
  build: it is removed (and said so); in a folder the user chose, it is one line naming it.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import sys
from pathlib import Path
from typing import IO

from bertforge.errors import BertforgeError
from bertforge.pretrain.params import PretrainParams

UNUSED_OPS = ("deepspeed_shm_comm",)
EXTENSIONS_VARIABLE = "TORCH_EXTENSIONS_DIR"
BUILDERS_LOCK = ".bertforge-builders.lock"

_builders_lock: IO[str] | None = None  # held (shared) until the process ends


def prepare_ops(params: PretrainParams, cuda: bool) -> None:
    """Before DeepSpeed starts: check build tools, pick the build folder, clear stale locks."""
    check_build_tools(params, cuda)
    if not cuda:
        os.environ.setdefault("DS_ACCELERATOR", "cpu")  # as `start_distributed` sets it
    chosen = os.environ.get(EXTENSIONS_VARIABLE)
    folder = Path(chosen) if chosen else Path(sys.prefix) / "torch_extensions"
    os.environ[EXTENSIONS_VARIABLE] = str(folder)
    folder.mkdir(parents=True, exist_ok=True)
    clear_stale_build_locks(folder, ours=chosen is None)


def check_build_tools(params: PretrainParams, cuda: bool) -> None:
    """One line if what these params compile needs a C++ compiler that is not on PATH."""
    needs = []
    if params.compile:
        needs.append("pretrain.compile: true (torch.compile generates C++ code)")
    if params.optimizer == "lamb" and cuda:
        needs.append("pretrain.optimizer: lamb (DeepSpeed compiles FusedLamb)")
    compiler = os.environ.get("CXX", "c++")
    if needs and shutil.which(compiler) is None:
        raise BertforgeError(
            f"{' and '.join(needs)} needs a C++ compiler, but {compiler!r} is not on PATH: "
            "install one (e.g. `apt install g++`, see README's requirements) or set CXX"
        )


def clear_stale_build_locks(folder: Path, ours: bool) -> None:
    """Remove (in our folder) or report (in the user's) build locks no live process holds.

    Every process of ours holds a shared lock on `BUILDERS_LOCK` while it may build; getting
    it exclusively proves no other one is building, so a ``lock`` left in a build folder then
    belongs to a build that was killed (torch writes no owner into it).
    """
    global _builders_lock
    handle = open(folder / BUILDERS_LOCK, "a")  # noqa: SIM115 (held until the process ends)
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        alone = False  # another rank or run is starting: its builds are live
    else:
        alone = True
    if alone:
        for lock in sorted(folder.glob("*/lock")):
            if not ours:
                raise BertforgeError(
                    f"{lock}: a build lock left by a killed build of {lock.parent.name} (or "
                    f"another program building there now); torch would wait on it forever: "
                    f"if nothing is building, delete it"
                )
            lock.unlink(missing_ok=True)
            print(f"pretrain: removed {lock}, left by a killed build", file=sys.stderr)
    fcntl.flock(handle, fcntl.LOCK_SH)
    _builders_lock = handle


def skip_unused_ops() -> None:
    """Mark the ops no run uses as unavailable, so that DeepSpeed neither builds nor loads them."""
    import deepspeed.ops

    compatible = deepspeed.ops.__compatible_ops__  # DeepSpeed keeps this one dict: edits persist
    for name in UNUSED_OPS:
        compatible[name] = False
