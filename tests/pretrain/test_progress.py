"""The stall watchdog (a rank that makes no step for `stall_timeout_s` stops, in one line) and
the training-time record that a resume carries on."""

from __future__ import annotations

import subprocess
import sys

STALLED_RANK = """
import time
from bertforge.pretrain.progress import StallWatchdog
watchdog = StallWatchdog(0.4, rank=1, step=0)
watchdog.beat(7)
time.sleep(30)  # a collective that never returns
"""

BEATING_RANK = """
import time
from bertforge.pretrain.progress import StallWatchdog
watchdog = StallWatchdog(0.4, rank=0, step=0)
for step in range(1, 9):
    time.sleep(0.1)
    watchdog.beat(step)
watchdog.stop()
time.sleep(0.6)
"""


def test_a_rank_that_makes_no_step_for_the_stall_timeout_stops_with_one_line():
    result = subprocess.run(
        [sys.executable, "-c", STALLED_RANK], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 3
    assert result.stderr.strip().splitlines() == [
        "error: pretrain: rank 1 made no training step for 0.4 s after step 7 "
        "(pretrain.stall_timeout_s); stopped: a peer may have hung or died; resume with the "
        "same command"
    ]


def test_steps_keep_the_watchdog_quiet_and_stop_ends_it():
    result = subprocess.run(
        [sys.executable, "-c", BEATING_RANK], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0 and result.stderr == ""


def test_training_time_sums_invocations_and_gives_their_throughput():
    from bertforge.pretrain.progress import TrainingTime

    first = TrainingTime(seconds=10.0, tokens=1000.0, flops=4e9, peak_flops_seconds=1e10)
    second = TrainingTime(seconds=30.0, tokens=5000.0, flops=2e10, peak_flops_seconds=5e10)
    whole = first + second
    assert whole.summary() == {
        "seconds": 40.0,
        "tokens_per_s": 150.0,
        "flops_per_s": 6e8,
        "mfu": 0.4,  # FLOPs over the peak of each invocation's own seconds
        "peak_flops_per_s": 1.5e9,  # what MFU divides by: the invocations' time-weighted peak
    }
    assert TrainingTime.from_record(whole.record()) == whole
    # a checkpoint written before the record existed; an invocation that trained nothing
    assert TrainingTime.from_record(None) == TrainingTime()
    assert TrainingTime().summary() == {
        "seconds": 0.0,
        "tokens_per_s": 0.0,
        "flops_per_s": 0.0,
        "mfu": 0.0,
        "peak_flops_per_s": 0.0,
    }


def test_the_training_log_reads_back_its_rows_and_a_resume_keeps_those_up_to_its_step(tmp_path):
    from bertforge.pretrain.progress import TrainingLog

    log = TrainingLog(tmp_path / "log.tsv").continue_from(0)
    assert log.rows() == [] and log.last_row() == {}
    for step in (10, 20, 30):
        log.append({name: float(step) for name in TrainingLog.COLUMNS} | {"loss": 1 / step})
    assert [row["step"] for row in log.rows()] == [10.0, 20.0, 30.0]
    assert log.last_row()["loss"] == float(f"{1 / 30:.6g}")  # written to 6 significant digits
    resumed = TrainingLog(tmp_path / "log.tsv").continue_from(20)
    assert [row["step"] for row in resumed.rows()] == [10.0, 20.0]
