"""benchmarks/bench_model.py on CPU with tiny settings: the script that the GPU check runs
three times (compile, the padded-sdpa kernel, the full table), whose device minutes are too few
to find out there that it broke."""

from __future__ import annotations

import json

from tests.support import run_benchmark

BENCH_TIMEOUT_S = 300


def test_every_model_trains_its_measured_steps_and_the_report_has_a_row_each(tmp_path):
    out = tmp_path / "bench.json"
    run_benchmark(
        "bench_model.py",
        *("--device", "cpu", "--config", "small", "--seq-len", "128", "--batch-size", "4"),
        *("--steps", "2", "--warmup", "1", "--repeats", "1", "--unpad", "--no-memory"),
        *("--examples", str(tmp_path / "absent")),  # synthetic rows: the same on every machine
        *("--out", str(out)),
        timeout_s=BENCH_TIMEOUT_S,
    )
    report = json.loads(out.read_text(encoding="utf-8"))
    (run,) = report["runs"]
    assert run["data"].startswith("synthetic") and run["steps"] == 2
    rows = {(row["model"], row["batches"]): row for row in run["rows"]}
    assert len(rows) == 5  # transformers; bertforge padded and unpadded, random and buckets
    for row in rows.values():
        assert row["error"] is None, row
        assert row["real_tokens_per_s"] > 0 and row["vs_transformers"] > 0
    table = out.with_suffix(".md").read_text(encoding="utf-8")
    assert "one step on each batch shape" in table
    assert table.count("\n| ") == len(rows) + 1  # the header and one line per model
