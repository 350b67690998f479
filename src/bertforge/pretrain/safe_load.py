"""Checkpoint files are read without running pickled code: ``torch.load(weights_only=True)``.

DeepSpeed 0.19.8 reads its model and optimizer files through the engine's checkpoint engine,
whose `TorchCheckpointEngine.load` calls ``torch.load(weights_only=False)``: a file holding an
object whose unpickling runs code would run it on resume. `use_safe_checkpoint_engine` wraps
the engine's one in `SafeCheckpointEngine` (same files, same save), which loads with
``weights_only=True`` and an explicit allow-list of the classes DeepSpeed's checkpoints hold.
A file holding anything else is refused in one line naming the file; nothing in it runs.

`deepspeed_checkpoint_globals` was found by saving real checkpoints (ZeRO 0-3 fp32 on one and
two processes, ZeRO 1-3 bf16) and listing what weights-only loading does not allow by itself
(`torch.serialization.get_unsafe_globals_in_checkpoint`);
tests/pretrain/test_checkpoint_safe_load.py checks it by a save and a resume at every stage.
Universal checkpoints (``load_universal_checkpoint``), whose loaders call ``torch.load``
directly, are not used by this project.
"""

from __future__ import annotations

import pickle
import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

from bertforge.errors import BertforgeError


def deepspeed_checkpoint_globals() -> list[Any]:
    """Every class (beyond tensors, containers, numbers) a DeepSpeed checkpoint of ours holds."""
    from deepspeed.runtime.fp16.loss_scaler import DynamicLossScaler, LossScaler
    from deepspeed.runtime.zero.config import ZeroStageEnum
    from deepspeed.utils.tensor_fragment import fragment_address

    return [
        LossScaler,  # ZeRO 1-3 optimizer files: the loss scaler of fp32 and bf16 (scale 1)
        DynamicLossScaler,  # ZeRO 1-3 with fp16 (GPU only): the dynamic loss scaler
        ZeroStageEnum,  # ZeRO 1-3 optimizer files: the stage that wrote them
        fragment_address,  # ZeRO 1-2 optimizer files: a parameter's place in the partition
    ]


def load_without_code(
    path: str | Path, allowed: Sequence[Any], map_location: Callable | str | None = None
) -> Any:
    """``torch.load(path, weights_only=True)``, allowing the classes `allowed` too.

    A file that holds anything else (an object whose unpickling could run code), or that is not
    a readable torch file at all, is a `BertforgeError` naming the file; nothing in it runs.
    """
    # refuse rather than run: weights-only unpickling builds only tensors, containers and `allowed`
    try:
        with torch.serialization.safe_globals(list(allowed)):
            return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as error:
        raise BertforgeError(
            f"{path}: refused to load: it holds {forbidden_global(error)}, which no checkpoint "
            "of this project holds (unpickling it could run code); delete the checkpoint "
            "folder, or restore it from a copy you trust"
        ) from None
    except (RuntimeError, EOFError) as error:
        reason = (str(error).splitlines() or [type(error).__name__])[0]
        raise BertforgeError(f"{path}: not a readable checkpoint file ({reason})") from None


def forbidden_global(error: pickle.UnpicklingError) -> str:
    """The class or function torch's weights-only unpickler refused, as its message names it."""
    found = re.search(r"[Uu]nsupported (?:global: )?GLOBAL (\S+)", str(error))
    return found.group(1) if found else "an object that weights-only loading refuses"


class SafeCheckpointEngine:
    """DeepSpeed's checkpoint engine with `load` replaced by `load_without_code`.

    Everything else (save, commit, which rank writes) is the wrapped engine's.
    """

    def __init__(self, wrapped: Any) -> None:
        self.wrapped = wrapped
        self.allowed = deepspeed_checkpoint_globals()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.wrapped, name)

    def load(self, path: str, map_location: Any = None) -> Any:
        return load_without_code(path, self.allowed, map_location)


def use_safe_checkpoint_engine(engine: Any) -> None:
    """Make `engine` (a DeepSpeed engine) read its checkpoint files with `SafeCheckpointEngine`.

    Only DeepSpeed's default engine is wrapped (our config selects no other): another one is a
    bug here, not the user's, so it fails loudly.
    """
    from deepspeed.runtime.checkpoint_engine.torch_checkpoint_engine import TorchCheckpointEngine

    current = engine.checkpoint_engine
    if isinstance(current, SafeCheckpointEngine):
        return
    if type(current) is not TorchCheckpointEngine:
        raise TypeError(f"expected DeepSpeed's TorchCheckpointEngine, got {type(current)}")
    engine.checkpoint_engine = SafeCheckpointEngine(current)
