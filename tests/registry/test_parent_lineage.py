"""Continued pretraining in the registry: the parent checkpoint of the pretrained export goes
into every registered version's tags and `bertforge lineage` prints it."""

from __future__ import annotations

import json

import mlflow

from bertforge.cli import main
from tests.factories import build_register_project, run_register_stage

PARENT = {"hub": "bert-base-uncased", "revision": "86b5e0934494bd15c9632b12f734a8a67f723594"}


def test_registered_versions_and_lineage_name_the_parent_checkpoint(store, tmp_path, capsys):
    project = build_register_project(tmp_path / "project")
    lineage = {"parent": PARENT}
    (project / "data/pretrained/model/lineage.json").write_text(json.dumps(lineage))
    assert run_register_stage(project) == 0
    client = mlflow.MlflowClient()
    for name in ("tiny-encoder", "tiny-sentiment"):
        tags = client.get_model_version(name, "1").tags
        assert tags["bertforge.parent.hub"] == PARENT["hub"]
        assert tags["bertforge.parent.revision"] == PARENT["revision"]
    capsys.readouterr()
    assert main(["lineage", "models:/tiny-sentiment/1"]) == 0
    out = capsys.readouterr().out
    assert "parent checkpoint (continued pretraining)" in out
    assert f"  hub            {PARENT['hub']}" in out
    assert f"  revision       {PARENT['revision']}" in out


def test_lineage_of_a_model_pretrained_from_scratch_says_so(store, tmp_path, capsys):
    project = build_register_project(tmp_path / "project")
    assert run_register_stage(project) == 0
    capsys.readouterr()
    assert main(["lineage", "models:/tiny-encoder/1"]) == 0
    assert "(none: pretrained from random weights)" in capsys.readouterr().out
