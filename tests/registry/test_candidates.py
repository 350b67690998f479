"""Which models the register stage registers: each task's best init=pretrained seed."""

from __future__ import annotations

from bertforge.registry.candidates import best_seed
from tests.factories import build_register_project


def test_best_seed_is_the_pretrained_seed_with_the_highest_dev_score(tmp_path):
    project = build_register_project(tmp_path / "project", {"sentiment": {0: 0.9, 1: 0.6}})
    assert best_seed(project / "data/finetuned/sentiment")["seed"] == 0
    assert best_seed(project / "data/finetuned/similar")["seed"] == 1
