"""Fault matrix, HTTP status rows not covered elsewhere: H2 (every kind of Retry-After, end to end),
H5 (503 on create, with and without Retry-After, before and after the prediction exists), H7
(failing cancels), H10 (404 and 400/422); and what reconciling an ambiguous create reads (its
window on the server's clock, its page and byte caps)."""

from __future__ import annotations

import datetime as dt
import email.utils
import logging
import threading
import time
from typing import Any
from urllib.parse import parse_qs, urlsplit

import numpy as np
import pytest

from digitcloud import Client, CloudError, CloudUnavailableError, FallbackWarning, contract, replicate
from digitcloud.replicate import ReplicateBackend
from tests.conftest import stroke_digits
from tests.fakes.harness import TOKEN, check_ledger, check_results, quick
from tests.fakes.replicate_server import FakeReplicate


@pytest.fixture(scope="module")
def batch() -> np.ndarray:
    return stroke_digits(20, seed=41)[0]


def creates(fake: FakeReplicate) -> list[dict]:
    return [r for r in fake.requests if r["method"] == "POST" and r["path"].endswith("/predictions")]


@pytest.mark.parametrize("retry_after", ["date", "soon", "86400", "none", "superscript"])
def test_h2_any_retry_after_is_survived_within_the_deadline(
    fake: FakeReplicate, batch: np.ndarray, retry_after: str
) -> None:
    # "²" (sent as Latin-1, as HTTP headers are read) passes str.isdigit(), but float() refuses it
    special = {"date": email.utils.formatdate(time.time() + 2, usegmt=True), "superscript": "²"}
    value = special.get(retry_after, retry_after)
    fake.inject("create", f"429:{value}", times=2)
    sleeps: list[float] = []
    began = time.monotonic()
    with warnings_allowed(), Client(model="o/n", batch_size=20, timeout=10) as client:
        results = quick(client, sleeps).classify(batch)
    assert time.monotonic() - began < 10
    check_results(results, batch)
    assert all(r.ok for r in results)
    assert all(0 <= s < 10 for s in sleeps)  # never a sleep past the deadline (86400 is capped, then refused)
    if retry_after == "86400":
        assert {r.backend for r in results} == {"local"}  # the wait does not fit: answered locally now
    else:
        assert {r.backend for r in results} == {"replicate"}
    if retry_after == "date":
        assert any(s >= 1.0 for s in sleeps)  # the date was read, not ignored
    check_ledger(fake)


class warnings_allowed:
    """pytest.warns that also accepts no warning (the fallback warning appears in some variants)."""

    def __enter__(self) -> None:
        import warnings

        self._cm = warnings.catch_warnings()
        self._cm.__enter__()
        warnings.simplefilter("ignore", FallbackWarning)

    def __exit__(self, *exc: Any) -> None:
        self._cm.__exit__(*exc)


@pytest.mark.parametrize("fault", ["503_before:1", "503_after:1", "503_before", "503_after"])
def test_h5_503_on_create_is_ambiguous_and_its_retry_after_is_honoured(
    fake: FakeReplicate, batch: np.ndarray, fault: str
) -> None:
    fake.inject("create", fault)
    sleeps: list[float] = []
    with Client(model="o/n", batch_size=10, max_concurrency=1) as client:
        results = quick(client, sleeps).classify(batch)
    check_results(results, batch)
    assert {r.backend for r in results} == {"replicate"}
    assert len(fake.predictions) == 2  # one per chunk: adopted when the 503 came after it was made
    # before: nothing was made, so after a list finds nothing it is created again (3 POSTs);
    # after: the list finds it and it is adopted (2 POSTs)
    assert len(creates(fake)) == (3 if "before" in fault else 2)
    if fault.endswith(":1") and fault.startswith("503_before"):
        assert any(s >= 1.0 for s in sleeps)  # Retry-After: 1 waited out before the next create
    check_ledger(fake)


def run_until_started(backend: ReplicateBackend, fake: FakeReplicate, digits: np.ndarray) -> threading.Thread:
    """``backend.predict`` in a thread, then Ctrl-C's effect: its stop event set, its predictions cancelled."""
    stop = threading.Event()
    errors: list[BaseException] = []

    def run() -> None:
        try:
            backend.predict(digits, stop)
        except CloudUnavailableError as exc:
            errors.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    deadline = time.monotonic() + 10
    while not fake.revealed and time.monotonic() < deadline:
        time.sleep(0.01)
    time.sleep(0.1)
    stop.set()
    backend.cancel_all(stop)
    thread.join(10)
    assert not thread.is_alive() and len(errors) == 1 and "gave up" in str(errors[0])
    return thread


def cancel_requests(fake: FakeReplicate) -> list[dict]:
    return [r for r in fake.requests if r["path"].endswith("/cancel")]


@pytest.mark.parametrize("faults", [("500", "drop"), ("429", "429")], ids=["5xx-and-drop", "throttled"])
def test_h7_failing_cancels_are_retried(fake: FakeReplicate, batch: np.ndarray, faults: tuple[str, str]) -> None:
    # a 429 is not a cancel either: the prediction keeps running, so it is retried like a 5xx
    fake.max_wait = 0.0
    fake.inject("create", "never_finish")
    for fault in faults:
        fake.inject("cancel", fault)
    with Client(model="o/n", batch_size=20, timeout=30) as client:
        backend = quick(client)._cloud
        assert isinstance(backend, ReplicateBackend)
        run_until_started(backend, fake, batch)
    assert len(cancel_requests(fake)) == 3  # two failures, then accepted
    (prediction,) = fake.predictions.values()
    assert prediction["status"] in ("canceled", "aborted")
    check_ledger(fake, settle=0)


@pytest.mark.parametrize("faults", [("500", "500", "drop"), ("429", "429", "429")], ids=["5xx-and-drop", "throttled"])
def test_h7_cancel_that_never_gets_through_is_logged_and_cancel_after_ends_it(
    fake: FakeReplicate, batch: np.ndarray, caplog: pytest.LogCaptureFixture, faults: tuple[str, ...]
) -> None:
    caplog.set_level(logging.DEBUG)
    fake.max_wait = 0.0
    fake.inject("create", "never_finish")
    for fault in faults:
        fake.inject("cancel", fault)
    with Client(model="o/n", batch_size=20, timeout=5) as client:
        backend = quick(client)._cloud
        assert isinstance(backend, ReplicateBackend)
        run_until_started(backend, fake, batch)
    (pid,) = fake.predictions
    assert len(cancel_requests(fake)) == 3  # three tries, no more
    assert pid in caplog.text and "Cancel-After" in caplog.text and TOKEN not in caplog.text
    if faults[-1] == "429":
        assert f"could not cancel Replicate prediction {pid} (HTTP 429)" in caplog.text
    check_ledger(fake, settle=8)  # the server ends it at its Cancel-After (6 s)
    assert fake.predictions[pid]["status"] in ("canceled", "aborted")


def test_h10_404_is_a_configuration_error_raised_once(fake: FakeReplicate, batch: np.ndarray) -> None:
    fake.inject("create", "404")
    with Client(model="o/missing", batch_size=10, max_concurrency=1) as client, pytest.raises(CloudError) as exc:
        quick(client).classify(batch)
    assert exc.value.status == 404 and not isinstance(exc.value, CloudUnavailableError)
    assert "o/missing" in str(exc.value) and "Model not found" in str(exc.value)
    assert len(fake.requests) == 1  # no retry, no reconciliation, no local fallback
    check_ledger(fake)


@pytest.mark.parametrize("status", ["400", "422"])
def test_h10_refused_input_is_a_per_item_error_naming_the_item(
    fake: FakeReplicate, batch: np.ndarray, status: str
) -> None:
    fake.inject("create", status)
    with Client(model="o/n", batch_size=10, max_concurrency=1) as client:
        results = quick(client).classify(batch)
    check_results(results, batch)
    refused, answered = results[:10], results[10:]
    for r in refused:
        assert isinstance(r.error, CloudError) and r.error.status == int(status) and r.backend == "replicate"
        assert f"item {r.index} (array[{r.index}])" in str(r.error)
    if status == "422":
        assert "cannot read the batch file" in str(refused[0].error)  # the RFC 7807 detail
    assert all(r.ok and r.backend == "replicate" for r in answered)
    assert len(creates(fake)) == 2  # one per chunk: no retry, no fallback storm
    check_ledger(fake)


@pytest.mark.parametrize("token", ["", "   "], ids=["empty", "blank"])
def test_h9_empty_or_blank_token_sends_nothing(
    fake: FakeReplicate, batch: np.ndarray, monkeypatch: pytest.MonkeyPatch, token: str
) -> None:
    monkeypatch.setenv("REPLICATE_API_TOKEN", token)
    with pytest.warns(FallbackWarning, match="no REPLICATE_API_TOKEN"), Client(model="o/n") as client:
        results = client.classify(batch)
    check_results(results, batch)
    assert {r.backend for r in results} == {"local"}
    assert fake.requests == []  # never "Bearer " nor "Bearer None"


# ---------------------------------------------------------------------- reconciling an ambiguous create


def other_predictions(fake: FakeReplicate, count: int, created: dt.datetime) -> None:
    """``count`` finished predictions of other batches, each echoing a 500-digit input and output
    (~180 KB in a list page, as real ones do), stamped ``created`` on the server's clock."""
    digits = stroke_digits(500, seed=43)[0]
    uri = contract.encode_batch(digits)
    stamp = created.isoformat(timespec="microseconds").replace("+00:00", "Z")
    for i in range(count):
        headers = {"Cancel-After": "60s", "Prefer": "wait=60"}  # as every create must carry
        p = fake._create({"input": {"digits": uri, "request_id": f"someone-else-{i}"}}, headers, None)
        fake.done[p["id"]].wait(5)
        p["created_at"] = stamp


def list_windows(fake: FakeReplicate) -> list[dt.datetime]:
    windows = []
    for r in fake.requests:
        parts = urlsplit(r["path"])
        if parts.path == "/v1/predictions" and r["method"] == "GET":
            after = parse_qs(parts.query)["created_after"][0]
            windows.append(dt.datetime.fromisoformat(after.replace("Z", "+00:00")))
    return windows


@pytest.mark.parametrize("skew", [0, 120, -120], ids=["clock_right", "clock_fast", "clock_slow"])
def test_reconciling_lists_from_just_before_the_create_on_the_servers_clock(
    fake: FakeReplicate, batch: np.ndarray, skew: int
) -> None:
    # given 40 predictions of other batches made 15 s ago (7 MB of list), a client whose clock is
    # off by `skew` seconds, and a create that is made but whose answer is lost
    other_predictions(fake, 40, dt.datetime.now(dt.timezone.utc) - dt.timedelta(seconds=15))
    fake.inject("create", "reset_after")
    with Client(model="o/n", batch_size=30) as client:
        backend = quick(client)._cloud
        assert isinstance(backend, ReplicateBackend)
        backend.wall_clock = lambda: time.time() + skew
        results = client.classify(batch)
    # then it is found and adopted, created once, whatever our clock says
    check_results(results, batch)
    assert {r.backend for r in results} == {"replicate"}
    (ours,) = [p for p in fake.predictions.values() if not p["input"]["request_id"].startswith("someone-else")]
    created = dt.datetime.fromisoformat(ours["created_at"].replace("Z", "+00:00"))
    # and the list was read from a few seconds before it, on the server's clock: the old batches
    # (15 s back, which a 30 s margin on the client's clock would include) are not read
    (window,) = list_windows(fake)
    slack = dt.timedelta(seconds=replicate.LIST_WINDOW + 1.5)  # + the second a Date header rounds off
    assert created - slack <= window <= created
    check_ledger(fake)


def test_a_list_cut_short_by_its_page_cap_never_leads_to_a_second_create(
    fake: FakeReplicate, batch: np.ndarray, monkeypatch: pytest.MonkeyPatch
) -> None:
    # given a create whose answer is lost, and three newer predictions listed before it, one a page
    monkeypatch.setattr(replicate, "LIST_PAGES", 2)
    fake.page_size = 1
    other_predictions(fake, 3, dt.datetime.now(dt.timezone.utc) + dt.timedelta(seconds=30))
    fake.inject("create", "reset_after")
    # when the client has read its two pages without finding it
    with pytest.warns(FallbackWarning, match="whole prediction list"), Client(model="o/n", batch_size=30) as client:
        results = quick(client).classify(batch)
    # then it does not create again (the prediction is on a page it did not read): local answers
    check_results(results, batch)
    assert {r.backend for r in results} == {"local"}
    assert len(creates(fake)) == 1 and len(list_windows(fake)) == 2
    check_ledger(fake)  # one prediction per request_id; ours ran to its end by itself
