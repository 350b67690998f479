"""A worker process killed mid-work (say, by the out-of-memory killer): the stage stops instead
of waiting forever for the work that process never finishes. examples' helpers: one line."""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from bertforge.errors import BertforgeError
from bertforge.examples import write
from bertforge.examples.processes import process_share
from tests.factories import make_examples, make_examples_project, small_examples_params

WAIT_S = 120  # far more than the stage needs: a run still going by then is waiting forever


def share_of_a_helper_that_gets_killed(on_unit=None):
    """`process_share`, except that a forked helper is SIGKILLed as it starts its share."""
    if multiprocessing.parent_process() is not None:
        os.kill(os.getpid(), signal.SIGKILL)
    return process_share(on_unit)


def test_a_helper_killed_mid_work_is_one_line_not_an_endless_wait(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    project = make_examples_project(tmp_path / "project")
    monkeypatch.setattr(write, "process_share", share_of_a_helper_that_gets_killed)
    message = one_line_error_within(
        WAIT_S,
        lambda: make_examples(project, tmp_path / "examples", small_examples_params(num_proc=2)),
    )
    assert "killed by signal 9" in message and "examples.num_proc" in message, message


def kill_this_worker(item: int) -> int:
    """A work item whose worker process dies (SIGKILL), as under the out-of-memory killer."""
    os.kill(os.getpid(), signal.SIGKILL)
    return item


def test_a_killed_worker_of_the_ordered_parallel_map_ends_the_wait_at_once():
    """ingest and finetune fan out through `ordered_parallel_map`: its pool notices the death."""
    from bertforge.parallel import ordered_parallel_map

    message = one_line_error_within(
        WAIT_S,
        lambda: list(ordered_parallel_map(kill_this_worker, range(4), 2, param="ingest.num_proc")),
    )
    assert "died abruptly" in message and "ingest.num_proc" in message, message


def test_the_workers_of_a_killed_parent_end_instead_of_waiting_for_ever():
    """The stage itself SIGKILLed (the out-of-memory killer picks the biggest process): its
    workers, mid-item, must not live on as orphans waiting on a queue nobody will close."""
    assert_two_workers_end_with_their_killed_parent(
        "import time; from bertforge.parallel import ordered_parallel_map; "
        "list(ordered_parallel_map(time.sleep, [600, 600], 2))",
        spawned=True,
    )


def test_the_examples_helpers_of_a_killed_parent_end_instead_of_working_on():
    """The examples stage SIGKILLed: its forked helpers would otherwise go on claiming units
    from the shared counter, the dead stage's whole remaining work, writing shards nobody
    reads."""
    assert_two_workers_end_with_their_killed_parent(
        "import time; from bertforge.examples.processes import helper_processes\n"
        "with helper_processes(lambda: time.sleep(600), 2) as helpers:\n"
        "    [helper.result() for helper in helpers]",
        spawned=False,
    )


def assert_two_workers_end_with_their_killed_parent(code: str, spawned: bool) -> None:
    """Run `code` in a parent process that starts two workers (spawned, or forked) busy for
    600 s; SIGKILL the parent; both workers must end within 30 s."""
    import psutil

    parent = subprocess.Popen([sys.executable, "-c", code])
    workers: list[psutil.Process] = []
    try:
        deadline = time.monotonic() + WAIT_S
        while len(workers) < 2 and time.monotonic() < deadline:
            time.sleep(0.2)
            children = psutil.Process(parent.pid).children()
            # spawned workers run multiprocessing's spawn_main (its resource tracker does not)
            workers = [p for p in children if not spawned or "spawn_main" in " ".join(p.cmdline())]
        assert len(workers) == 2, "the workers did not start"
        time.sleep(2)  # both inside their 600 s of work
        parent.kill()
        parent.wait(timeout=30)
        _, alive = psutil.wait_procs(workers, timeout=30)
        assert alive == [], f"orphaned workers still running: {[p.pid for p in alive]}"
    finally:
        parent.kill()
        for worker in workers:
            with contextlib.suppress(psutil.NoSuchProcess):
                worker.kill()


def one_line_error_within(seconds: float, call: Callable[[], object]) -> str:
    """`call()` in a thread: it must raise a one-line BertforgeError within `seconds`."""
    outcome: dict[str, BaseException | None] = {}

    def run() -> None:
        try:
            call()
            outcome["error"] = None
        except BaseException as error:  # reported below
            outcome["error"] = error

    worker = threading.Thread(target=run, daemon=True)
    worker.start()
    worker.join(seconds)
    assert "error" in outcome, f"still waiting after {seconds} s"
    assert isinstance(outcome["error"], BertforgeError), outcome["error"]
    message = str(outcome["error"])
    assert "\n" not in message, message
    return message
