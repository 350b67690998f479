"""stages/ingest.py as DVC runs it: bad params and a missing corpus exit 2 in one line.

The slow runs of the script (a full run with MLflow, a failing run after a good one) are in
tests/e2e/test_ingest_stage.py.
"""

from __future__ import annotations

from tests.factories import make_ingest_project, run_ingest_stage, stage_error_lines


def test_bad_params_exit_2_naming_the_parameter_before_touching_outputs(tmp_path):
    root = make_ingest_project(tmp_path / "project")
    params_file = root / "params.yaml"
    params_file.write_text(
        params_file.read_text().replace("holdout_fraction: 0.2", "holdout_fraction: 2")
    )
    result = run_ingest_stage(root)
    assert result.returncode == 2
    assert stage_error_lines(result) == [
        "error: params.yaml: ingest.holdout_fraction must be in (0, 1), got 2.0"
    ]
    assert not (root / "data").exists()


def test_missing_corpus_exits_2_naming_the_glob(tmp_path):
    root = make_ingest_project(tmp_path / "project")
    (root / "corpus" / "a.txt").unlink()
    result = run_ingest_stage(root)
    assert result.returncode == 2
    assert stage_error_lines(result) == [
        "error: params.yaml: ingest.sources[0].path: no file matches 'corpus/*.txt'"
    ]
