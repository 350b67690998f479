"""stages/ingest.py as DVC runs it: a subprocess in the project directory, params.yaml there."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import mlflow
import pytest

from bertforge.corpus import IngestParams, ingest, resolve_sources
from bertforge.io import atomic_directory, write_json_atomic
from bertforge.params import load_section
from bertforge.shards import count_rows

REPO_ROOT = Path(__file__).resolve().parents[1]
STAGE = REPO_ROOT / "stages" / "ingest.py"

PARAMS_YAML = """\
ingest:
  sources:
    - path: corpus/*.txt
  text_column: text
  min_document_chars: 20
  min_sentences: 1
  max_document_chars: 100000
  language: en
  holdout_fraction: 0.2
  seed: 0
  num_proc: {num_proc}
  rows_per_shard: 7
"""


def make_project(root: Path, num_proc: int = 1) -> Path:
    (root / "corpus").mkdir(parents=True)
    documents = [
        f"Document {index} opens with a sentence. Then it says {index * 3} more things."
        for index in range(60)
    ]
    (root / "corpus" / "a.txt").write_text("\n\n".join(documents) + "\n", encoding="utf-8")
    (root / "params.yaml").write_text(PARAMS_YAML.format(num_proc=num_proc), encoding="utf-8")
    return root


def run_stage_script(root: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(STAGE)], cwd=root, capture_output=True, text=True, timeout=300
    )


def error_lines(result: subprocess.CompletedProcess) -> list[str]:
    """The stage's own error lines (MLflow may log INFO lines to stderr before them)."""
    lines = result.stderr.strip().splitlines()
    assert lines[-1].startswith("error: ")
    return [line for line in lines if line.startswith("error")]


def snapshot(root: Path) -> dict[str, bytes]:
    """Every file under data/ and metrics/ (hidden staging leftovers included), with its bytes."""
    return {
        path.relative_to(root).as_posix(): path.read_bytes()
        for folder in ("data", "metrics")
        for path in sorted((root / folder).rglob("*"))
        if path.is_file()
    }


@pytest.mark.slow
def test_stage_writes_train_and_heldout_shards_metrics_and_an_mlflow_run(tmp_path, isolated_mlflow):
    root = make_project(tmp_path / "project", num_proc=2)
    result = run_stage_script(root)
    assert result.returncode == 0, result.stderr
    metrics = json.loads((root / "metrics" / "ingest.json").read_text())
    train, heldout = metrics["documents"]["train"], metrics["documents"]["heldout"]
    assert train + heldout == 60
    assert count_rows(root / "data/ingested/train") == train > 0
    assert count_rows(root / "data/ingested/heldout") == heldout > 0
    assert not list((root / "data").glob(".ingested.*"))
    mlflow.set_tracking_uri(f"sqlite:///{isolated_mlflow}")
    (run,) = mlflow.search_runs(
        experiment_names=["bertforge"],
        filter_string="tags.`bertforge.stage` = 'ingest'",
        output_format="list",
    )
    assert run.data.metrics["documents.train"] == train
    assert run.data.params["ingest.holdout_fraction"] == "0.2"
    assert "bertforge.input.corpus/a.txt" in run.data.tags


@pytest.mark.slow
def test_failing_run_exits_2_in_one_line_and_leaves_previous_output_byte_identical(
    tmp_path, monkeypatch
):
    root = make_project(tmp_path / "project")
    monkeypatch.chdir(root)  # the previous output, made in-process as the stage would
    params = load_section(IngestParams, "ingest")
    with atomic_directory(Path("data/ingested")) as staging:
        metrics = ingest(params, resolve_sources(params), staging, show_progress=False)
    write_json_atomic(Path("metrics/ingest.json"), metrics)
    before = snapshot(root)
    # a later file with a NUL byte: shards of a.txt are already in the staging directory
    (root / "corpus" / "b.txt").write_bytes(b"A good line of text here.\nA bad\x00line.\n")

    result = run_stage_script(root)

    assert result.returncode == 2
    assert error_lines(result) == [
        "error: corpus/b.txt: line 2: NUL byte at byte offset 31; "
        "expected UTF-8 text (a binary or UTF-16 file?)"
    ]
    assert snapshot(root) == before


def test_bad_params_exit_2_naming_the_parameter_before_touching_outputs(tmp_path):
    root = make_project(tmp_path / "project")
    params_file = root / "params.yaml"
    params_file.write_text(
        params_file.read_text().replace("holdout_fraction: 0.2", "holdout_fraction: 2")
    )
    result = run_stage_script(root)
    assert result.returncode == 2
    assert error_lines(result) == [
        "error: params.yaml: ingest.holdout_fraction must be in (0, 1), got 2.0"
    ]
    assert not (root / "data").exists()


def test_missing_corpus_exits_2_naming_the_glob(tmp_path):
    root = make_project(tmp_path / "project")
    (root / "corpus" / "a.txt").unlink()
    result = run_stage_script(root)
    assert result.returncode == 2
    assert error_lines(result) == [
        "error: params.yaml: ingest.sources[0].path: no file matches 'corpus/*.txt'"
    ]
