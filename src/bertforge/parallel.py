"""An ordered, bounded, spawn-based parallel map shared by the stages that fan out work."""

from __future__ import annotations

import collections
import multiprocessing
import os
import pickle
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from typing import Any

from bertforge.errors import BertforgeError

PARENT_CHECK_S = 1.0
"""How often a worker looks whether the process that started it is still there."""


def ordered_parallel_map(
    function: Callable[..., Any],
    items: Iterable[Any],
    num_proc: int,
    *args: Any,
    initializer: Callable[..., None] | None = None,
    initargs: tuple = (),
    param: str = "the number of processes",
) -> Iterator[Any]:
    """`function(item, *args)` for each item, in input order, in `num_proc` processes.

    Unlike `Pool.imap`, which drains its input as fast as it can and buffers results without
    limit, this keeps at most 2 × num_proc items in flight, so memory stays bounded whether the
    reader or the workers are faster. A worker that dies ends the wait at once with one line
    (a `BertforgeError` naming `param`, the setting that chose `num_proc`) instead of hanging,
    and workers are spawned, not forked from a parent that may run threads. A worker whose
    parent is killed (SIGKILL, the out-of-memory killer) ends itself within `PARENT_CHECK_S`.
    `initializer(*initargs)` runs once in each worker (or in this process when `num_proc` is 1)
    before its first item: the place to set up state every item shares.
    """
    if num_proc == 1:
        if initializer is not None:
            initializer(*initargs)
        for item in items:
            yield function(item, *args)
        return
    context = multiprocessing.get_context("spawn")
    with (
        tempfile.TemporaryDirectory(prefix="bertforge-workers-") as staging,
        ProcessPoolExecutor(
            max_workers=num_proc,
            mp_context=context,
            initializer=_start_worker,
            initargs=(os.getpid(), stage_initializer(Path(staging), initializer, initargs)),
        ) as pool,
    ):
        pending: collections.deque[Future] = collections.deque()
        try:
            for item in items:
                pending.append(pool.submit(function, item, *args))
                if len(pending) >= 2 * num_proc:
                    yield pending.popleft().result()
            while pending:
                yield pending.popleft().result()
        except BrokenProcessPool:
            # the pool notices a dead worker (SIGKILL, the out-of-memory killer) at once
            raise BertforgeError(
                f"one of the {num_proc} worker processes died abruptly (killed, or out of "
                f"memory?); re-run, or lower {param}"
            ) from None
        finally:
            for future in pending:
                future.cancel()


def stage_initializer(
    directory: Path, initializer: Callable[..., None] | None, initargs: tuple
) -> Path:
    """The initializer and its arguments, pickled into a file in `directory` for the workers.

    Through a file, not each worker's start-up pipe: a spawned worker reads its pipe only after
    importing the main module, and a pipe holds 64 KB, so large arguments (a task's encoded
    data) would start the workers one after another, each waiting for the last one's imports.
    """
    path = directory / "initializer.pickle"
    path.write_bytes(pickle.dumps((initializer, initargs), protocol=pickle.HIGHEST_PROTOCOL))
    return path


def _start_worker(parent: int, staged: Path) -> None:
    """A worker's start: it watches its parent, then runs the caller's initializer."""
    end_when_orphaned(parent)
    initializer, initargs = pickle.loads(staged.read_bytes())
    if initializer is not None:
        initializer(*initargs)


def end_when_orphaned(parent: int) -> None:
    """In a worker process: end it within `PARENT_CHECK_S` once `parent` (its starter's pid,
    passed from there) is gone, whatever the worker is doing (a watching daemon thread)."""
    threading.Thread(target=_exit_when_orphaned, args=(parent,), daemon=True).start()


def _exit_when_orphaned(parent: int) -> None:
    """End this worker once `parent` is gone. Nothing else would: the pool's queue is a pipe
    the worker holds both ends of, so a killed parent never closes it, and an orphan would wait
    on it for ever, holding its memory (a model, a task's encoded data)."""
    while os.getppid() == parent:
        time.sleep(PARENT_CHECK_S)
    os._exit(1)
