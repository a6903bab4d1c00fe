"""Fault matrix, prediction-lifecycle rows not covered elsewhere: L3 (unknown status), L6 (a late
success), L8 (mixed outcomes in one call), L9 (outage, circuit breaker, recovery), and L7's
"partial results on Ctrl-C"."""

from __future__ import annotations

import os
import signal
import threading
import time
from typing import Any

import numpy as np
import pytest

from digitcloud import Client, CloudError, FallbackWarning, PredictionFailedError
from digitcloud.replicate import ReplicateBackend
from digitcloud.retrying import CircuitBreaker
from tests.conftest import stroke_digits
from tests.fakes.harness import check_ledger, check_results, expected, quick
from tests.fakes.replicate_server import FakeReplicate


@pytest.fixture(scope="module")
def batch() -> np.ndarray:
    return stroke_digits(20, seed=51)[0]


def gets(fake: FakeReplicate) -> int:
    return sum(1 for r in fake.requests if r["method"] == "GET" and r["path"].startswith("/v1/predictions/"))


@pytest.mark.parametrize("status", ["queued", ""])
def test_l3_unknown_status_is_not_terminal_and_polling_goes_on(
    fake: FakeReplicate, batch: np.ndarray, status: str
) -> None:
    fake.override_polls = 3  # the create's answer and two polls say `status`, then the real one
    fake.inject("create", f"unknown_status:{status}")
    with Client(model="o/n", batch_size=20, backend="cloud") as client:
        results = quick(client).classify(batch)
    check_results(results, batch)
    assert all(r.ok and r.backend == "replicate" for r in results)  # no exception, no give-up
    assert gets(fake) >= 3
    check_ledger(fake)


def test_l6_success_that_crosses_our_cancel_is_used(fake: FakeReplicate, batch: np.ndarray) -> None:
    fake.max_wait = 0.0
    fake.inject("create", "late_success")  # runs until cancelled; the cancel's answer is `succeeded`
    began = time.monotonic()
    with Client(model="o/n", batch_size=20, backend="cloud", timeout=5) as client:
        results = quick(client).classify(batch)
    assert time.monotonic() - began < 5 + 2
    assert [r.digit for r in results] == expected(batch) and {r.backend for r in results} == {"replicate"}
    assert len(fake.predictions) == 1 and len(fake.cancels) == 1  # one result per item, no second create
    check_ledger(fake)


def test_l8_mixed_outcomes_in_one_call_are_handled_chunk_by_chunk(fake: FakeReplicate, batch: np.ndarray) -> None:
    for fault in ("ok", "fail", "short_output", "ok"):
        fake.inject("create", fault)
    # one chunk at a time, so which chunk meets which fault is fixed
    with pytest.warns(FallbackWarning), Client(model="o/n", batch_size=5, max_concurrency=1) as client:
        results = quick(client).classify(batch)
    check_results(results, batch)
    assert all(r.ok for r in results)
    assert [r.backend for r in results[::5]] == ["replicate", "local", "local", "replicate"]
    check_ledger(fake)


def test_l8_mixed_outcomes_in_cloud_mode_are_per_item_errors(fake: FakeReplicate, batch: np.ndarray) -> None:
    for fault in ("ok", "fail", "short_output", "ok"):
        fake.inject("create", fault)
    with Client(model="o/n", batch_size=5, max_concurrency=1, backend="cloud") as client:
        results = quick(client).classify(batch)
    check_results(results, batch)
    assert [r.ok for r in results] == [True] * 5 + [False] * 10 + [True] * 5
    assert all(isinstance(r.error, PredictionFailedError) for r in results[5:10])
    assert all(isinstance(r.error, CloudError) and "returned 4 entries" in str(r.error) for r in results[10:15])
    assert all(f"item {r.index} " in str(r.error) for r in results[5:15])
    # a batch's stored error keeps no traceback: its frames would pin the batch (inputs, request
    # body, socket) in a reference cycle until the cyclic gc ran (bench/README.md, soak)
    assert all(r.error.__cause__ is not None and r.error.__cause__.__traceback__ is None for r in results[5:15])
    check_ledger(fake)


def clocked_breaker(client: Client, **kwargs: Any) -> tuple[CircuitBreaker, list[float]]:
    """``client`` made quick, its Replicate backend given a breaker whose clock is ``now[0]``."""
    backend = quick(client)._cloud
    assert isinstance(backend, ReplicateBackend)
    now = [0.0]
    backend.breaker = CircuitBreaker(clock=lambda: now[0], **kwargs)
    return backend.breaker, now


def test_l9_outage_opens_the_breaker_a_free_probe_closes_it(fake: FakeReplicate, batch: np.ndarray) -> None:
    with Client(model="o/n", batch_size=5, max_concurrency=1) as client:
        breaker, now = clocked_breaker(client)

        # given an outage: every request answers 503
        fake.outage = 503
        with pytest.warns(FallbackWarning, match="503"):
            during = client.classify(batch)  # 4 chunks
        assert breaker.state == "open" and breaker.opened == 1
        check_results(during, batch)
        assert {r.backend for r in during} == {"local"}
        sent = len(fake.requests)
        assert sent <= 12  # the first chunks' create and lists, then nothing: the rest went local at once

        # while open: not one request, everything local
        still = client.classify(batch)
        assert {r.backend for r in still} == {"local"} and len(fake.requests) == sent

        # when healed and the reset time has passed: one free probe, then the cloud again
        fake.outage = None
        now[0] += 31
        after = client.classify(batch)
        assert breaker.state == "closed"
        assert fake.requests[sent]["method"] == "GET" and fake.requests[sent]["path"] == "/v1/account"
        assert all(r["path"] != "/v1/account" for r in fake.requests[sent + 1 :])
        check_results(after, batch)
        assert {r.backend for r in after} == {"replicate"}
        assert not any(r["method"] == "POST" for r in fake.requests[: sent + 1] if r["path"].endswith("/cancel"))
    check_ledger(fake)


def test_l9_failed_probe_keeps_it_open_for_twice_as_long(fake: FakeReplicate, batch: np.ndarray) -> None:
    with Client(model="o/n", batch_size=5, max_concurrency=1) as client:
        breaker, now = clocked_breaker(client, reset=30)
        fake.outage = 503
        with pytest.warns(FallbackWarning):
            client.classify(batch)
        now[0] += 31
        sent = len(fake.requests)
        client.classify(batch)  # the probe fails: no create is tried
        assert [r["path"] for r in fake.requests[sent:]] == ["/v1/account"]
        assert breaker.state == "open" and 59 < breaker.retry_in() <= 60


def test_breaker_does_not_serialise_requests(fake: FakeReplicate) -> None:
    digits = stroke_digits(8, seed=52)[0]
    fake.latency = 0.5  # every answer takes 0.5 s
    with Client(model="o/n", batch_size=2, max_concurrency=4) as client:
        began = time.monotonic()
        results = quick(client).classify(digits)  # 4 chunks, 4 in flight
        elapsed = time.monotonic() - began
    assert {r.backend for r in results} == {"replicate"}
    assert elapsed < 4 * 0.5  # one at a time would take 2 s or more


def test_ctrl_c_keeps_the_results_already_finished(fake: FakeReplicate, ctrl_c_raises: None) -> None:
    digits = stroke_digits(60, seed=53)[0]
    fake.run_seconds = 0.15
    client = Client(model="o/n", batch_size=10, max_concurrency=2, timeout=60)

    def press_ctrl_c_after_three_predictions() -> None:
        deadline = time.monotonic() + 10
        while sum(p["status"] == "succeeded" for p in fake.predictions.values()) < 3:
            if time.monotonic() > deadline:
                break
            time.sleep(0.005)
        os.kill(os.getpid(), signal.SIGINT)  # a real Ctrl-C

    threading.Thread(target=press_ctrl_c_after_three_predictions, daemon=True).start()
    with client, pytest.raises(KeyboardInterrupt) as interrupted:
        quick(client).classify(digits)
    partial = interrupted.value.partial_results  # type: ignore[attr-defined]
    assert 10 <= len(partial) < 60 and len(partial) % 10 == 0  # whole chunks, from the first on
    assert [r.index for r in partial] == list(range(len(partial)))
    assert [r.digit for r in partial] == expected(digits[: len(partial)])
    assert {r.backend for r in partial} == {"replicate"}
    assert fake.settle(2) == []  # what was running was cancelled
    check_ledger(fake)


def test_leaving_a_classify_iter_loop_cancels_what_it_started(fake: FakeReplicate) -> None:
    # given predictions that each run 3 s, three in flight at a time
    digits = stroke_digits(60, seed=59)[0]
    fake.run_seconds = 3.0
    with Client(model="o/n", batch_size=10, max_concurrency=3, timeout=60) as client:
        # when the caller leaves the loop after the first answer, keeping no reference to the stream
        answered = []
        for result in quick(client).classify_iter(digits):
            answered.append(result)
            break
        # then the dropped generator was closed at once: no prediction beyond those already created is
        # sent, even later, and none it created is left running (settle waits 1 s for any to end)
        assert fake.settle(1) == []
        created = len(fake.predictions)
        time.sleep(0.3)
        assert len(fake.predictions) == created < 6
    assert [(r.index, r.digit) for r in answered] == [(0, expected(digits[:10])[0])]
    assert {p["status"] for p in fake.predictions.values()} <= {"succeeded", "canceled"}
    check_ledger(fake)


def test_l10_server_rate_limit_under_load_is_never_exceeded(fake: FakeReplicate) -> None:
    digits = stroke_digits(16, seed=54)[0]
    fake.creates_per_minute = 3  # beyond that: 429 with Retry-After
    sleeps: list[float] = []
    with pytest.warns(FallbackWarning), Client(model="o/n", batch_size=2, max_concurrency=4) as client:
        results = quick(client, sleeps).classify(digits)  # 8 chunks, 4 in flight
        # the refusals count against the breaker: once it opens, the rest go local without asking
        assert client._cloud.breaker.opened == 1  # type: ignore[union-attr]
    check_results(results, digits)
    assert all(r.ok for r in results)  # every item resolved: the cloud's or, when refused, the local answer
    assert len(fake.accepted_creates) == 3  # the server's limit held
    assert sum(r.backend == "replicate" for r in results) == 6
    assert any(s >= 1.0 for s in sleeps) and all(s <= 30 for s in sleeps)  # Retry-After honoured, capped
    refused = [r for r in fake.requests if r["path"].endswith("/predictions") and r["method"] == "POST"]
    assert len(refused) <= 3 + 10  # at most the breaker's window of refusals, not 5 tries per chunk
    check_ledger(fake)
