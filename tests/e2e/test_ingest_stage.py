"""stages/ingest.py as DVC runs it, end to end: shards, metrics and an MLflow run; a failing run
leaves the previous output byte-identical. (Its quick checks are in tests/ingest/test_stage.py.)"""

from __future__ import annotations

import json
from pathlib import Path

import mlflow
import pytest

from bertforge.ingest.params import IngestParams
from bertforge.ingest.pipeline import ingest
from bertforge.ingest.sources import resolve_sources
from bertforge.io import atomic_directory, write_json_atomic
from bertforge.params import load_section
from bertforge.shards import count_rows
from tests.factories import make_ingest_project, run_ingest_stage, stage_error_lines


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
    root = make_ingest_project(tmp_path / "project", num_proc=2)
    result = run_ingest_stage(root)
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
    root = make_ingest_project(tmp_path / "project")
    monkeypatch.chdir(root)  # the previous output, made in-process as the stage would
    params = load_section(IngestParams, "ingest")
    with atomic_directory(Path("data/ingested")) as staging:
        metrics = ingest(params, resolve_sources(params), staging, show_progress=False)
    write_json_atomic(Path("metrics/ingest.json"), metrics)
    before = snapshot(root)
    # a later file with a NUL byte: shards of a.txt are already in the staging directory
    (root / "corpus" / "b.txt").write_bytes(b"A good line of text here.\nA bad\x00line.\n")

    result = run_ingest_stage(root)

    assert result.returncode == 2
    assert stage_error_lines(result) == [
        "error: corpus/b.txt: line 2: NUL byte at byte offset 31; "
        "expected UTF-8 text (a binary or UTF-16 file?)"
    ]
    assert snapshot(root) == before
