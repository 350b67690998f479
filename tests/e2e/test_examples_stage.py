"""stages/examples.py as DVC runs it: on two processes it writes the examples, then a bad input
fails in one line and leaves them intact."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from bertforge.examples.meta import read_meta
from bertforge.io import hash_path
from tests.factories import copy_examples_project, make_examples_project
from tests.support import REPO_ROOT, stage_env


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_examples_project(tmp_path_factory.mktemp("examples-project"))


def run_stage(cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(REPO_ROOT / "stages/examples.py")],
        cwd=cwd,
        env=stage_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_stage_writes_examples_then_a_bad_input_fails_in_one_line_leaving_them_intact(
    project, tmp_path
):
    copy = copy_examples_project(project, tmp_path)
    section = {"negative_pool_size": 64, "num_proc": 2, "dupe_factor": 1}
    (copy / "params.yaml").write_text(yaml.safe_dump({"examples": section}))
    first = run_stage(copy)
    assert first.returncode == 0, first.stderr
    metrics = json.loads((copy / "metrics/examples.json").read_text())
    assert metrics["train"]["instances"] == read_meta(copy / "data/examples")["instances"]["train"]
    before = hash_path(copy / "data/examples")

    vocab = (copy / "data/tokenizer/vocab.txt").read_text().splitlines()
    (copy / "data/tokenizer/vocab.txt").write_text("\n".join(vocab[:-1]) + "\n")
    failed = run_stage(copy)
    assert failed.returncode == 2
    lines = failed.stderr.strip().splitlines()
    assert len(lines) == 1, failed.stderr
    assert lines[0].startswith("error: data/tokenizer/vocab.txt: disagrees with tokenizer.json")
    assert hash_path(copy / "data/examples") == before

    (copy / "params.yaml").write_text(yaml.safe_dump({"examples": section | {"max_seq_length": 7}}))
    failed = run_stage(copy)
    assert failed.returncode == 2
    assert failed.stderr.strip() == (
        "error: params.yaml: examples.max_seq_length must be in [8, 32767], got 7"
    )
    assert hash_path(copy / "data/examples") == before
