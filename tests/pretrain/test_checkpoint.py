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


def finished_run(store: CheckpointStore, fingerprint: dict, steps: int = 100) -> None:
    for step in (steps // 2, steps):
        fake_checkpoint(store, step, fingerprint, max_steps=steps)
    (store.directory / "latest").write_text(store.tag(steps), encoding="utf-8")
    (store.directory / "train_log.tsv").write_text(f"step\n{steps}\n", encoding="utf-8")


def test_finished_run_with_other_params_is_set_aside_not_deleted_by_a_fresh_start(tmp_path):
    store = CheckpointStore(tmp_path / "checkpoints")
    finished_run(store, {"pretrain.lr": 0.1})
    assert store.prepare({"pretrain.lr": 0.2}) is None
    assert not list(store.directory.glob("step-*")) and not (store.directory / "latest").exists()
    previous = CheckpointStore(store.directory / "previous")
    assert previous.latest_tag() == store.tag(100)
    assert "previous finished run is kept in" in store.kept_runs()
    store.discard_previous()  # what the new run does once it has exported
    assert not (store.directory / "previous").exists()


def test_a_failed_new_run_leaves_the_finished_one_and_its_params_resume_it(tmp_path):
    store = CheckpointStore(tmp_path / "checkpoints")
    finished_run(store, {"pretrain.lr": 0.1})
    assert store.prepare({"pretrain.lr": float("inf")}) is None
    fake_checkpoint(store, 50, {"pretrain.lr": float("inf")})
    (store.directory / store.tag(100)).mkdir()  # the failed run's partial folder, no marker
    assert store.prepare({"pretrain.lr": 0.1}) == store.tag(100)
    assert store.trainer_state(store.tag(100))["fingerprint"] == {"pretrain.lr": 0.1}
    assert sorted(path.name for path in store.directory.glob("step-*")) == [
        store.tag(50),
        store.tag(100),
    ]
    assert (store.directory / "train_log.tsv").read_text(encoding="utf-8") == "step\n100\n"
    assert not (store.directory / "previous").exists()


def test_two_finished_runs_swap_places_when_the_params_go_back(tmp_path):
    store = CheckpointStore(tmp_path / "checkpoints")
    finished_run(store, {"pretrain.lr": 0.1})
    store.prepare({"pretrain.lr": 0.2})
    finished_run(store, {"pretrain.lr": 0.2}, steps=40)  # trained, but its export failed
    assert store.prepare({"pretrain.lr": 0.1}) == store.tag(100)
    previous = CheckpointStore(store.directory / "previous")
    assert previous.trainer_state(previous.latest_tag())["fingerprint"] == {"pretrain.lr": 0.2}


def test_a_kill_while_setting_a_run_aside_is_completed_by_the_next_start(tmp_path):
    store = CheckpointStore(tmp_path / "checkpoints")
    finished_run(store, {"pretrain.lr": 0.1})
    aside = store.directory / "previous.tmp"
    aside.mkdir()
    (store.directory / store.tag(50)).rename(aside / store.tag(50))  # killed after one move
    assert store.prepare({"pretrain.lr": 0.2}) is None
    previous = CheckpointStore(store.directory / "previous")
    assert previous.latest_tag() == store.tag(100)
    assert sorted(p.name for p in previous.directory.glob("step-*")) == [
        store.tag(50),
        store.tag(100),
    ]
    assert not aside.exists() and not list(store.directory.glob("step-*"))


def test_rng_state_round_trips_through_a_weights_only_load(tmp_path):
    import random

    import numpy as np
    import torch

    from bertforge.pretrain.rng import load_rng_states, save_rng_states

    save_rng_states(tmp_path / "rng.pt")
    expected = (random.random(), np.random.random(), torch.rand(3))
    random.random(), np.random.random(), torch.rand(3)  # move every generator on
    load_rng_states(tmp_path / "rng.pt")
    drawn = (random.random(), np.random.random(), torch.rand(3))
    assert drawn[:2] == expected[:2] and torch.equal(drawn[2], expected[2])
