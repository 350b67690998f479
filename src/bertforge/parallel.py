"""An ordered, bounded, spawn-based parallel map shared by the stages that fan out work."""

from __future__ import annotations

import collections
import multiprocessing
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from typing import Any


def ordered_parallel_map(
    function: Callable[..., Any],
    items: Iterable[Any],
    num_proc: int,
    *args: Any,
    initializer: Callable[..., None] | None = None,
    initargs: tuple = (),
) -> Iterator[Any]:
    """`function(item, *args)` for each item, in input order, in `num_proc` processes.

    Unlike `Pool.imap`, which drains its input as fast as it can and buffers results without
    limit, this keeps at most 2 × num_proc items in flight, so memory stays bounded whether the
    reader or the workers are faster. A worker that dies raises `BrokenProcessPool` instead of
    hanging, and workers are spawned, not forked from a parent that may run threads.
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
    with ProcessPoolExecutor(
        max_workers=num_proc, mp_context=context, initializer=initializer, initargs=initargs
    ) as pool:
        pending: collections.deque[Future] = collections.deque()
        try:
            for item in items:
                pending.append(pool.submit(function, item, *args))
                if len(pending) >= 2 * num_proc:
                    yield pending.popleft().result()
            while pending:
                yield pending.popleft().result()
        finally:
            for future in pending:
                future.cancel()
