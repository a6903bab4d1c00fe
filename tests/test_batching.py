from __future__ import annotations

import pytest

from digitcloud.batching import chunk


def test_chunks_keep_order_and_cover_everything() -> None:
    assert list(chunk(range(7), 3)) == [[0, 1, 2], [3, 4, 5], [6]]
    assert list(chunk([], 3)) == []


def test_chunk_is_lazy() -> None:
    pulled = []

    def source():  # type: ignore[no-untyped-def]
        for i in range(100):
            pulled.append(i)
            yield i

    first = next(chunk(source(), 4))
    assert first == [0, 1, 2, 3] and len(pulled) == 4


def test_chunk_size_must_be_positive() -> None:
    with pytest.raises(ValueError):
        list(chunk([1], 0))


def test_ordered_map_keeps_order_under_random_delays_and_bounds_concurrency() -> None:
    import random
    import threading
    import time

    from digitcloud.batching import ordered_map

    lock = threading.Lock()
    running, peak = 0, 0
    rng = random.Random(3)
    delays = [rng.uniform(0, 0.01) for _ in range(40)]

    def work(i: int) -> int:
        nonlocal running, peak
        with lock:
            running += 1
            peak = max(peak, running)
        time.sleep(delays[i])
        with lock:
            running -= 1
        return i * i

    assert list(ordered_map(work, range(40), max_concurrency=4)) == [i * i for i in range(40)]
    assert 1 < peak <= 4


def test_ordered_map_calls_on_abort_when_stopped_early_or_failing() -> None:
    from digitcloud.batching import ordered_map

    aborted: list[str] = []
    started: list[int] = []

    def work(i: int) -> int:
        started.append(i)
        if i == 3:
            raise RuntimeError("boom")
        return i

    for concurrency in (1, 3):
        aborted.clear()
        with pytest.raises(RuntimeError):
            list(ordered_map(work, range(100), concurrency, on_abort=lambda: aborted.append("x")))
        assert aborted == ["x"]
    assert max(started) < 10  # nothing past the bounded window was ever started

    aborted.clear()
    stream = ordered_map(lambda i: i, range(100), 3, on_abort=lambda: aborted.append("closed"))
    assert next(stream) == 0
    stream.close()
    assert aborted == ["closed"]
    assert list(ordered_map(lambda i: i, range(5), 3, on_abort=lambda: aborted.append("no"))) == [0, 1, 2, 3, 4]
    assert aborted == ["closed"]


def test_prefetched_keeps_order_runs_ahead_and_never_waits_for_a_stalled_call() -> None:
    import threading

    from digitcloud.batching import prefetched

    release = threading.Event()
    started: list[int] = []
    lock = threading.Lock()

    def fetch(i: int) -> int:
        with lock:
            started.append(i)
        if i >= 1:
            release.wait(10)  # every call after the first stalls until released
        if i == 6:
            raise OSError("six")
        return i * 10

    stream = prefetched(fetch, range(9), ahead=3)
    assert next(stream) == 0
    # three calls ran ahead of the consumer, never more, and closing returns while they stall
    closer = threading.Thread(target=stream.close)
    closer.start()
    closer.join(timeout=2)
    assert not closer.is_alive()
    assert sorted(started) == [0, 1, 2, 3]
    release.set()
    # in order, with a call's error raised where its result would be
    stream = prefetched(fetch, range(9), ahead=3)
    assert [next(stream) for _ in range(6)] == [0, 10, 20, 30, 40, 50]
    with pytest.raises(OSError, match="six"):
        next(stream)
    assert list(prefetched(fetch, range(4), ahead=1)) == [0, 10, 20, 30]
