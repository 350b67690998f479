"""benchmarks/bench_repro.py: each stage `dvc repro` runs gets its wall time, in a fresh copy;
a `dvc repro` that fails stops it with DVC's last lines and its exit code."""

from __future__ import annotations

from tests.support import run_benchmark


def test_each_stage_run_gets_a_row_and_the_total_is_their_sum_or_more():
    result = run_benchmark("bench_repro.py", "ingest", timeout_s=600)
    rows = {
        cells[0]: float(cells[1])
        for line in result.stdout.splitlines()[3:]
        if (cells := [cell.strip() for cell in line.strip("|").split("|")])
    }
    assert list(rows) == ["ingest", "**total**"]
    assert rows["**total**"] >= rows["ingest"] > 0
    assert result.stdout.splitlines()[1] == "| `dvc repro ingest` | wall time (s) |"
    assert "] ingest" in result.stderr  # the stage announced as it starts


def test_a_failing_repro_stops_it_with_dvcs_last_lines_and_exit_code():
    result = run_benchmark("bench_repro.py", "no_such_stage", timeout_s=300, returncode=1)
    assert "no_such_stage" in result.stderr  # DVC's own account
    assert result.stderr.strip().splitlines()[-1].startswith("dvc repro failed with exit code")
    assert "wall time" not in result.stdout
