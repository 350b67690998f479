"""bertforge.parallel: the ordered map's workers and what they start with."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

from bertforge.parallel import ordered_parallel_map

IMPORT_SECONDS = 2.0
"""How long the main module takes to import in each spawned worker (the script below)."""

SCRIPT = textwrap.dedent(
    f"""
    import json, os, time
    from bertforge.parallel import ordered_parallel_map

    if __name__ == "__mp_main__":  # a spawned worker importing the main module, as torch takes
        time.sleep({IMPORT_SECONDS})

    STARTED = None

    def start(payload):
        global STARTED
        assert len(payload) == 8 << 20
        STARTED = time.time()

    def started(item):
        time.sleep(0.5)
        return os.getpid(), STARTED

    if __name__ == "__main__":
        payload = b"x" * (8 << 20)  # far more than a pipe holds
        runs = ordered_parallel_map(started, range(4), 2, initializer=start, initargs=(payload,))
        print(json.dumps(dict(runs)))
    """
)


def test_workers_start_together_however_large_the_initializer_arguments(tmp_path):
    """Large initializer arguments (a fine-tuning task's encoded data) must not make each
    worker wait for the previous one to import the main module before it can start."""
    script = tmp_path / "fan_out.py"
    script.write_text(SCRIPT, encoding="utf-8")
    done = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=120, check=True
    )
    started = json.loads(done.stdout.strip().splitlines()[-1]).values()
    assert len(started) == 2, started  # both workers took items
    first, second = sorted(started)
    assert second - first < IMPORT_SECONDS / 2


def _scaled(item: int, factor: int) -> int:
    return item * factor


def test_results_come_in_input_order():
    assert list(ordered_parallel_map(_scaled, range(10), 2, 3)) == [3 * i for i in range(10)]
