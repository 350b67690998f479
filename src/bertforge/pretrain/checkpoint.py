"""Checkpoint save and resume, in one place.

A checkpoint, ``data/pretrained/checkpoints/step-<n>/``, is DeepSpeed's files (model, optimizer
partitions) plus ``trainer_state.json`` (rank 0: step, data position, counters, the training
fingerprint) and ``rng_state_rank<r>.pt`` (each rank's global generators). The ``latest`` marker
names the newest *complete* one: it is replaced atomically after a barrier that every rank
passes only once its files are written, so a kill at any moment leaves a loadable checkpoint.
It is DeepSpeed's own format, so ``zero_to_fp32.py`` works here too; resume reads every file
without unpickling code (`bertforge.pretrain.safe_load`).

`CheckpointStore.resume` restores all of it and cuts the training log back to the step resumed.
The batch of a step is a pure function of the step (`BatchPlan`), so the step is the whole data
position, and a resumed run's weights are bitwise those of an uninterrupted run (on CPU).
"""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from bertforge.errors import BertforgeError
from bertforge.io import is_disk_full, read_json, write_json_atomic
from bertforge.params import flatten
from bertforge.pretrain.data import BatchPlan
from bertforge.pretrain.engine import Topology
from bertforge.pretrain.params import PretrainParams
from bertforge.pretrain.progress import TrainingLog, TrainingTime
from bertforge.pretrain.rng import load_rng_states, save_rng_states
from bertforge.pretrain.safe_load import use_safe_checkpoint_engine

LATEST = "latest"
TRAINER_STATE = "trainer_state.json"
TRAIN_LOG = "train_log.tsv"
PREVIOUS = "previous"
ASIDE = f"{PREVIOUS}.tmp"
RESTORING = f"{PREVIOUS}.restoring"


@dataclass
class Progress:
    """Where the run is, besides weights and optimizer: what a checkpoint's trainer state holds."""

    step: int = 0
    nonfinite_in_a_row: int = 0
    nonfinite_total: int = 0
    # the training of the earlier invocations up to `step` (their throughput, after a resume)
    earlier: TrainingTime = field(default_factory=TrainingTime)

    def advance(self, skipped: bool) -> None:
        """Count one optimizer step, applied or `skipped` (a non-finite loss)."""
        self.step += 1
        self.nonfinite_in_a_row = self.nonfinite_in_a_row + 1 if skipped else 0
        self.nonfinite_total += int(skipped)

    def trainer_state(
        self, plan: BatchPlan, params: PretrainParams, fingerprint: Mapping, now: TrainingTime
    ) -> dict:
        """What a checkpoint at `step` records; `now`: this invocation's training so far."""
        return {
            "step": self.step,
            "max_steps": params.max_steps,
            "data_position": plan.position(self.step),
            "nonfinite_in_a_row": self.nonfinite_in_a_row,
            "nonfinite_total": self.nonfinite_total,
            "fingerprint": dict(fingerprint),
            "trained": (self.earlier + now).record(),
        }


class CheckpointStore:
    """data/pretrained/checkpoints: ``step-<n>/`` directories, the ``latest`` marker, the log."""

    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)

    @staticmethod
    def tag(step: int) -> str:
        return f"step-{step:08d}"

    def training_log(self) -> TrainingLog:
        """The training log, kept with the checkpoints so that a resume continues it."""
        return TrainingLog(self.directory / TRAIN_LOG)

    def latest_tag(self) -> str | None:
        marker = self.directory / LATEST
        if not marker.is_file():
            return None
        tag = marker.read_text(encoding="utf-8").strip()
        return tag if (self.directory / tag / TRAINER_STATE).is_file() else None

    def trainer_state(self, tag: str) -> dict[str, Any]:
        return read_json(self.directory / tag / TRAINER_STATE, "pretrain")

    def resumable_tag(self, fingerprint: Mapping[str, Any]) -> str | None:
        """The checkpoint to resume from, None to start fresh; an error for a foreign run.

        A checkpoint of the same training fingerprint is resumed. One of other params whose
        run had finished is superseded (its export is what it was for): start fresh. One of
        other params whose run had *not* finished is an error, so that hours of training are
        never thrown away by a changed knob: resume with the old params, or delete it.
        """
        tag = self.latest_tag()
        if tag is None:
            return None
        state = self.trainer_state(tag)
        if state["fingerprint"] == dict(fingerprint):
            return tag
        if state["step"] >= state["max_steps"]:
            return None
        old, new = flatten(state["fingerprint"]), flatten(dict(fingerprint))
        changed = sorted(key for key in old.keys() | new.keys() if old.get(key) != new.get(key))
        raise BertforgeError(
            f"{self.directory} holds an unfinished run ({state['step']} of {state['max_steps']} "
            f"steps) with other training params or data (changed: {', '.join(changed)}); "
            f"restore them to resume, or delete {self.directory} to start over"
        )

    def prepare(self, fingerprint: Mapping[str, Any]) -> str | None:
        """(rank 0) Tidy the store; return the tag to resume, None to start fresh.

        Nothing finished is deleted before a new run has succeeded: a finished run of other
        params is moved aside to ``previous/`` (one run), which `discard_previous` removes only
        once the new run has exported. If the params return to the run set aside (say, after a
        failed try of another learning rate), it is moved back and resumed.
        """
        self.directory.mkdir(parents=True, exist_ok=True)
        self._finish_interrupted_moves()
        tag = self.resumable_tag(fingerprint)
        if tag is None and self._previous_matches(fingerprint):
            # the run set aside is this one: swap it back in (the current one goes aside)
            os.replace(self.directory / PREVIOUS, self.directory / RESTORING)
            self._set_current_aside()
            self._finish_interrupted_moves()
            tag = self.latest_tag()
        elif tag is None:
            self._set_current_aside()
        for entry in sorted(self.directory.glob("step-*")):
            if tag is None or entry.name > tag:
                shutil.rmtree(entry, ignore_errors=True)  # written by a killed run: incomplete
        if tag is None:
            (self.directory / TRAIN_LOG).unlink(missing_ok=True)
        return tag

    def discard_previous(self) -> None:
        """(rank 0, once the new run has exported) Remove the run set aside by `prepare`."""
        shutil.rmtree(self.directory / PREVIOUS, ignore_errors=True)

    def kept_runs(self) -> str:
        """What the store holds for the user after a failure, in words (for error messages)."""
        tag, previous = self.latest_tag(), self.directory / PREVIOUS
        kept = f"the last good checkpoint is {self.directory / tag}" if tag else ""
        if CheckpointStore(previous).latest_tag() is not None:
            kept += "; " if kept else ""
            kept += f"the previous finished run is kept in {previous}"
        return kept or f"no checkpoint of this run was written to {self.directory}"

    def _previous_matches(self, fingerprint: Mapping[str, Any]) -> bool:
        previous = CheckpointStore(self.directory / PREVIOUS)
        tag = previous.latest_tag()
        return tag is not None and previous.trainer_state(tag)["fingerprint"] == dict(fingerprint)

    def _set_current_aside(self) -> None:
        """Move the current finished run, if any, to ``previous/`` (replacing the one there)."""
        if self.latest_tag() is None:
            return
        (self.directory / ASIDE).mkdir()
        self._finish_interrupted_moves()

    def _finish_interrupted_moves(self) -> None:
        """Complete a move begun here and cut short by a kill: each is journalled by a folder.

        ``previous.tmp/`` is the current run on its way to ``previous/``; ``previous.restoring/``
        the run set aside on its way back. Each moves its checkpoints first, ``latest`` last.
        """
        aside, restoring = self.directory / ASIDE, self.directory / RESTORING
        if aside.is_dir():
            move_run(self.directory, aside)
            shutil.rmtree(self.directory / PREVIOUS, ignore_errors=True)
            os.replace(aside, self.directory / PREVIOUS)
        if restoring.is_dir():
            move_run(restoring, self.directory)
            shutil.rmtree(restoring)

    def resume(self, engine: Any, fingerprint: Mapping[str, Any], topology: Topology) -> Progress:
        """Resume from the latest complete checkpoint of this run, if any (every rank calls it).

        Rank 0 tidies the store first and cuts the training log back to the step resumed.
        """
        tag = self.prepare(fingerprint) if topology.is_main else None
        torch.distributed.barrier()
        if not topology.is_main:
            tag = self.latest_tag()
        progress = Progress()
        if tag is not None:
            # resume: weights, optimizer, this rank's generators, then the trainer state
            state = self.load(engine, tag, topology)
            if topology.is_main:
                print(
                    f"pretrain: resuming from {self.directory / tag} (step {state['step']})",
                    file=sys.stderr,
                )
            progress = Progress(
                state["step"],
                state["nonfinite_in_a_row"],
                state["nonfinite_total"],
                TrainingTime.from_record(state.get("trained")),  # absent before 2026-11-28
            )
        if topology.is_main:
            self.training_log().continue_from(progress.step)
        return progress

    def save(
        self, engine: Any, step: int, state: Mapping[str, Any], topology: Topology, keep: int
    ) -> None:
        """Write checkpoint `step` on every rank, then (rank 0) the marker, then prune."""
        tag = self.tag(step)
        if topology.is_main:
            shutil.rmtree(self.directory / tag, ignore_errors=True)
        torch.distributed.barrier()
        # save: DeepSpeed's files, this rank's generators, (rank 0) the trainer state
        try:
            engine.save_checkpoint(str(self.directory), tag=tag, save_latest=False)
            save_rng_states(self._rng_file(tag, topology.rank))
            if topology.is_main:
                write_json_atomic(self.directory / tag / TRAINER_STATE, state)
        except (OSError, RuntimeError) as error:
            if not is_disk_full(error, self.directory):  # torch says only "unexpected pos"
                raise
            raise BertforgeError(
                f"disk full (no space left on device) while saving checkpoint "
                f"{self.directory / tag}; {self.kept_runs()}"
            ) from None
        torch.distributed.barrier()
        if topology.is_main:
            # only now that every rank has written: point `latest` at it, atomically
            staging = self.directory / f".{LATEST}.tmp"
            staging.write_text(tag, encoding="utf-8")
            os.replace(staging, self.directory / LATEST)
            for old in sorted(self.directory.glob("step-*"))[:-keep]:
                shutil.rmtree(old, ignore_errors=True)

    def load(self, engine: Any, tag: str, topology: Topology) -> dict[str, Any]:
        """Restore weights, optimizer, this rank's generators; return the trainer state.

        Every file is read with ``torch.load(weights_only=True)`` (`bertforge.pretrain.safe_load`):
        one holding anything that could run code when unpickled is refused, naming the file.
        """
        use_safe_checkpoint_engine(engine)  # DeepSpeed's own loader would unpickle in full
        load_path, _ = engine.load_checkpoint(
            str(self.directory), tag=tag, load_optimizer_states=True, load_lr_scheduler_states=False
        )
        if load_path is None:
            raise BertforgeError(
                f"{self.directory / tag}: DeepSpeed could not load this checkpoint"
            )
        load_rng_states(self._rng_file(tag, topology.rank))
        return self.trainer_state(tag)

    def _rng_file(self, tag: str, rank: int) -> Path:
        return self.directory / tag / f"rng_state_rank{rank}.pt"


def move_run(source: Path, target: Path) -> None:
    """Move a run's checkpoints, its training log and (last) its ``latest`` marker.

    A checkpoint folder of the same name at `target` can only be a killed run's incomplete one
    (a moved folder leaves `source`), so it is replaced.
    """
    for entry in [*sorted(source.glob("step-*")), source / TRAIN_LOG, source / LATEST]:
        if entry.is_dir() and (target / entry.name).is_dir():
            shutil.rmtree(target / entry.name)
        if entry.exists():
            os.replace(entry, target / entry.name)
