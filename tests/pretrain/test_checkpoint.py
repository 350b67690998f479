"""The checkpoint store: which checkpoint a run resumes, and when another run's is refused."""

from __future__ import annotations

import json

import pytest

from bertforge.errors import BertforgeError
from bertforge.pretrain.checkpoint import CheckpointStore


def fake_checkpoint(
    store: CheckpointStore, step: int, fingerprint: dict, max_steps: int = 100
) -> None:
    directory = store.directory / store.tag(step)
    directory.mkdir(parents=True)
    state = {"step": step, "max_steps": max_steps, "fingerprint": fingerprint}
    (directory / "trainer_state.json").write_text(json.dumps(state), encoding="utf-8")


def test_only_the_checkpoint_named_by_latest_is_resumed_and_newer_partial_ones_are_removed(
    tmp_path,
):
    store = CheckpointStore(tmp_path / "checkpoints")
    fingerprint = {"pretrain.lr": 0.1}
    fake_checkpoint(store, 10, fingerprint)
    (store.directory / "latest").write_text(store.tag(10), encoding="utf-8")
    (store.directory / store.tag(20)).mkdir()  # killed while writing: no marker points to it
    assert store.prepare(fingerprint) == store.tag(10)
    assert sorted(path.name for path in store.directory.glob("step-*")) == [store.tag(10)]


def test_unfinished_run_with_other_params_is_an_error_naming_what_changed(tmp_path):
    store = CheckpointStore(tmp_path / "checkpoints")
    fake_checkpoint(store, 10, {"pretrain.lr": 0.1, "world_size": 1})
    (store.directory / "latest").write_text(store.tag(10), encoding="utf-8")
    with pytest.raises(
        BertforgeError, match=r"unfinished run \(10 of 100 steps\).*changed: pretrain.lr"
    ):
        store.resumable_tag({"pretrain.lr": 0.2, "world_size": 1})


def test_finished_run_with_other_params_is_superseded_by_a_fresh_start(tmp_path):
    store = CheckpointStore(tmp_path / "checkpoints")
    fake_checkpoint(store, 100, {"pretrain.lr": 0.1}, max_steps=100)
    (store.directory / "latest").write_text(store.tag(100), encoding="utf-8")
    assert store.prepare({"pretrain.lr": 0.2}) is None
    assert not list(store.directory.glob("step-*")) and not (store.directory / "latest").exists()
