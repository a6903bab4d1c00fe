"""Chunks of a stream, an ordered map over them with bounded concurrency, and ordered prefetching."""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable, Generator, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from itertools import islice
from typing import TypeVar

T = TypeVar("T")
R = TypeVar("R")


def chunk(items: Iterable[T], size: int) -> Iterator[list[T]]:
    """Consecutive lists of ``size`` items (the last may be shorter); never an empty list."""
    if size < 1:
        raise ValueError(f"chunk size must be at least 1; got {size}")
    iterator = iter(items)
    while block := list(islice(iterator, size)):
        yield block


def ordered_map(
    fn: Callable[[T], R],
    items: Iterable[T],
    max_concurrency: int,
    on_abort: Callable[[], None] | None = None,
) -> Generator[R, None, None]:
    """``fn`` over ``items`` with at most ``max_concurrency`` calls in flight, results in input order.

    A bounded pool, not waves: a new call starts as soon as the oldest result has been handed
    over, so one slow call never idles the others for long, and memory stays bounded (at most
    ``max_concurrency`` items and results held). If the consumer stops early or ``fn`` raises,
    calls not yet started are never started, ``on_abort`` runs (to cancel remote work, say), and
    then running calls are waited for.
    """
    if max_concurrency <= 1:
        finished = False
        try:
            yield from map(fn, items)
            finished = True
        finally:
            if not finished and on_abort is not None:
                on_abort()
        return
    iterator = iter(items)
    with ThreadPoolExecutor(max_workers=max_concurrency, thread_name_prefix="digitcloud") as pool:
        pending: deque[Future[R]] = deque(pool.submit(fn, item) for item in islice(iterator, max_concurrency))
        done = False
        try:
            while pending:
                result = pending.popleft().result()
                for item in islice(iterator, 1):
                    pending.append(pool.submit(fn, item))
                yield result
            done = True
        finally:
            for future in pending:
                future.cancel()
            if not done and on_abort is not None:
                on_abort()


def prefetched(fn: Callable[[T], R], items: Iterable[T], ahead: int) -> Generator[R, None, None]:
    """``fn`` over ``items``, up to ``ahead`` calls running ahead of the consumer, results in order.

    For calls that mostly wait (downloads). Unlike ``ordered_map`` each runs on its own daemon
    thread, so a consumer that stops (Ctrl-C, ``close()``) returns at once and never waits for a
    stalled call: those left running end on their own timeouts, and never hold up the exit. An
    exception from ``fn`` is raised where its result would be.
    """
    if ahead <= 1:
        yield from map(fn, items)
        return

    def start(item: T) -> Future[R]:
        future: Future[R] = Future()

        def run() -> None:
            try:
                future.set_result(fn(item))
            except BaseException as exc:  # handed to the consumer, which raises it
                future.set_exception(exc)

        threading.Thread(target=run, name="digitcloud-prefetch", daemon=True).start()
        return future

    iterator = iter(items)
    window = deque(start(item) for item in islice(iterator, ahead))
    while window:
        result = window.popleft().result()
        window.extend(start(item) for item in islice(iterator, 1))
        yield result
