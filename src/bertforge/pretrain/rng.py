"""Every random draw of the stage comes from a generator keyed by (seed, domain, ...).

Our own draws (data order, length windows, dynamic masks) use `stream`, never global state, so
they depend on neither the batch nor the number of processes. The global generators that
libraries draw from (torch's, for dropout) are seeded per rank by `seed_generators`, and a
checkpoint saves and restores them (`save_rng_states`, `load_rng_states`), so nothing else can
make two runs differ. The file is read with ``torch.load(weights_only=True)``: no pickle runs
(`bertforge.pretrain.safe_load.load_without_code`).
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from bertforge.pretrain.safe_load import load_without_code

# The domains: every random draw is keyed by (seed, domain, ...); the values are part of the
# outputs (changing one changes the trained weights).
ORDER, WINDOW, MASK, HELDOUT_MASK, DROPOUT, GLOBAL = range(6)


def stream(seed: int, *key: int) -> np.random.Generator:
    """The seeded generator of one purpose (a domain and its indices): no global state."""
    return np.random.default_rng([seed, *key])


def seed_generators(seed: int, rank: int) -> None:
    """Seed the global generators libraries may draw from, and dropout's (differs per rank)."""
    random.seed(int(stream(seed, GLOBAL, rank).integers(2**63)))
    np.random.seed(int(stream(seed, GLOBAL, rank).integers(2**32)))
    torch.manual_seed(int(stream(seed, DROPOUT, rank).integers(2**63)))


def rng_states() -> dict[str, Any]:
    """This process's global generators, as a checkpoint saves them."""
    states = {
        "python": random.getstate(),
        "numpy": np.random.get_state(),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def save_rng_states(path: Path) -> None:
    """Write this process's global generators to `path` (tensors, tuples, numbers, an array)."""
    torch.save(rng_states(), path)


def load_rng_states(path: Path) -> None:
    """Restore this process's global generators from `path`, without unpickling code.

    Only tensors, containers, numbers and numpy's state array are accepted (the allowlist is
    numpy's array reconstruction, nothing that can run code).
    """
    restore_rng_states(load_without_code(path, numpy_array_globals()))


def numpy_array_globals() -> list[Any]:
    """What unpickling numpy's generator state (a uint32 array) needs, on numpy 1 and 2."""
    multiarray = np._core.multiarray if hasattr(np, "_core") else np.core.multiarray
    return [multiarray._reconstruct, np.ndarray, np.dtype, type(np.dtype(np.uint32))]


def restore_rng_states(states: Mapping[str, Any]) -> None:
    random.setstate(states["python"])
    np.random.set_state(states["numpy"])
    torch.set_rng_state(states["torch"])
    if "cuda" in states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])
