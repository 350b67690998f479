"""benchmarks/bench_suite.py: the suite (here one small file, tests/test_io.py) in one process
and with xdist workers, side by side; a run that collects nothing stops it."""

from __future__ import annotations

from tests.support import run_benchmark


def test_each_mode_gets_a_row_with_the_same_counts_and_its_ratio_to_one_process():
    result = run_benchmark("bench_suite.py", "tests/test_io.py", timeout_s=300)
    rows = [line for line in result.stdout.splitlines() if line.startswith("| ")][2:]
    assert [row.split(" | ")[0] for row in rows] == ["| one process", "| `-n 2 --dist loadfile`"]
    cells = [[cell.strip() for cell in row.strip("|").split("|")] for row in rows]
    assert cells[0][4] == "1.00"  # one process is its own unit
    assert float(cells[1][4]) > 0
    assert cells[0][5] == cells[1][5] and "passed" in cells[0][5]  # the same tests both ways
    assert "machine: " in result.stdout and "rounds: 1" in result.stdout


def test_a_run_that_collects_nothing_stops_the_benchmark_with_pytests_exit_code():
    result = run_benchmark("bench_suite.py", "tests/fixtures", timeout_s=300, returncode=1)
    assert result.stderr.strip().splitlines()[-1].endswith("pytest exit code 5 (lines above)")
    assert "| pytest |" not in result.stdout
