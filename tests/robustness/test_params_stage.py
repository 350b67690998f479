"""Bad params stop a stage before it touches anything: a missing section, a misspelt section,
an infinite learning rate. Exit 2, one line, previous outputs (checkpoints included) intact."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from tests.robustness.support import snapshot
from tests.support import REPO_ROOT, stage_env


def project_with(tmp_path: Path, params_text: str) -> Path:
    """A project folder with `params_text` as params.yaml and a previous run's outputs."""
    root = tmp_path / "project"
    for folder in ("examples/train", "pretrained/checkpoints/step-00000010", "pretrained/model"):
        (root / "data" / folder).mkdir(parents=True)
        (root / "data" / folder / "previous.bin").write_bytes(b"previous run")
    (root / "metrics").mkdir()
    (root / "metrics" / "examples.json").write_text('{"previous": true}')
    (root / "params.yaml").write_text(params_text)
    return root


def run_stage(root: Path, stage: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(REPO_ROOT / "stages" / f"{stage}.py")],
        cwd=root,
        capture_output=True,
        text=True,
        timeout=300,
        env=stage_env(),
    )


def fails_in_one_line(root: Path, stage: str, line: str) -> None:
    before = snapshot(root)
    result = run_stage(root, stage)
    assert result.returncode == 2, result.stderr
    assert result.stderr.strip().splitlines() == [line]
    assert snapshot(root) == before


def repo_params() -> str:
    return (REPO_ROOT / "params.yaml").read_text()


def without_section(text: str, section: str) -> str:
    """params.yaml's text with one top-level section (and its indented body) removed."""
    return re.sub(rf"(?ms)^{section}:\n(?:[ #].*?\n|\n)*(?=^\S)", "", text)


def test_a_params_file_without_the_examples_section_stops_the_stage(tmp_path):
    root = project_with(tmp_path, without_section(repo_params(), "examples"))
    fails_in_one_line(root, "examples", "error: params.yaml: section 'examples' is missing")


def test_a_misspelt_section_stops_every_stage(tmp_path):
    text = repo_params().replace("\npretrain:", "\npretrian:")
    root = project_with(tmp_path, text)
    fails_in_one_line(
        root,
        "examples",
        "error: params.yaml: unknown section 'pretrian' (known: ingest, vocab, examples, "
        "pretrain, finetune, evaluate, register)",
    )


def test_an_infinite_learning_rate_is_refused_before_any_checkpoint_is_touched(tmp_path):
    text = re.sub(r"(?m)^(  lr: ).*$", r"\1.inf", repo_params(), count=1)
    assert "  lr: .inf" in text
    root = project_with(tmp_path, text)
    fails_in_one_line(
        root, "pretrain", "error: params.yaml: pretrain.lr must be a finite number, got inf"
    )
