"""The stall watchdog: a rank that makes no step for `stall_timeout_s` stops, in one line."""

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
