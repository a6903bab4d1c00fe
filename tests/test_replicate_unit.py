"""Data-plane functions of the Replicate backend, with `responses` (no sockets)."""

from __future__ import annotations

import json
import random
import re
import threading
import time
import traceback
import tracemalloc
from typing import Any

import numpy as np
import pytest
import requests
import responses
import urllib3.connection
import urllib3.exceptions

from digitcloud.errors import AuthenticationError, CloudError, CloudUnavailableError
from digitcloud.replicate import ReplicateBackend, ResponseTooLargeError, Secret, Target
from digitcloud.retrying import CircuitBreaker, Deadline, RetryPolicy, parse_retry_after
from digitcloud.sessions import may_have_reached_server

BASE = "https://api.example.test"
TOKEN = "r8_unit_SENTINEL_token"


def backend(**kwargs: Any) -> ReplicateBackend:
    return ReplicateBackend(
        Target.parse(model="o/n"),
        Secret(TOKEN),
        base_url=BASE,
        timeout=30,
        policy=RetryPolicy(sleep=lambda s: None, rng=random.Random(0)),
        **kwargs,
    )


def test_which_failures_may_have_reached_the_server() -> None:
    pool = urllib3.HTTPConnectionPool("api.example.test")
    refused = urllib3.exceptions.NewConnectionError(urllib3.connection.HTTPConnection(pool.host), "refused")
    assert not may_have_reached_server(requests.ConnectTimeout())
    assert not may_have_reached_server(requests.ConnectionError(urllib3.exceptions.MaxRetryError(pool, "/", refused)))
    assert may_have_reached_server(requests.ConnectionError(urllib3.exceptions.ProtocolError("Connection aborted")))
    assert may_have_reached_server(requests.ReadTimeout())


def test_retry_after_in_seconds_or_as_a_date() -> None:
    assert parse_retry_after("7") == 7.0
    assert parse_retry_after("Wed, 21 Oct 2026 07:28:00 GMT", now=lambda: 1792567670.0) == pytest.approx(10.0)
    assert parse_retry_after("soon") is None and parse_retry_after(None) is None


def test_backoff_is_capped_jittered_and_respects_the_deadline() -> None:
    policy = RetryPolicy(base_delay=1, max_delay=4, rng=random.Random(1))
    delays = [policy.backoff(n) for n in range(1, 10)]
    assert all(0 <= d <= 4 for d in delays) and len(set(delays)) > 1
    assert policy.backoff(1, retry_after=3600) == policy.retry_after_cap
    clock = iter([0.0, 0.0, 9.5]).__next__
    deadline = Deadline(10, clock=clock)
    assert deadline.fits(5) and not deadline.fits(1)


@responses.activate
def test_create_sends_wait_cancel_after_and_the_token_only_in_the_header() -> None:
    created = responses.add(
        responses.POST,
        f"{BASE}/v1/models/o/n/predictions",
        status=201,
        json={
            "id": "p1",
            "status": "succeeded",
            "urls": {"get": f"{BASE}/v1/predictions/p1"},
            "output": {"predictions": [{"digit": 1, "confidence": 1.0, "probabilities": [0, 1] + [0] * 8}]},
        },
    )
    answers = backend().predict(np.zeros((1, 28, 28), dtype=np.uint8))
    assert int(np.argmax(answers[0])) == 1
    request = created.calls[0].request
    assert request.headers["Authorization"] == f"Bearer {TOKEN}"
    prefer, cancel_after, body = request.headers["Prefer"], request.headers["Cancel-After"], request.body
    assert isinstance(prefer, str) and isinstance(cancel_after, str) and isinstance(body, bytes)
    assert re.fullmatch(r"wait=\d+", prefer)
    assert re.fullmatch(r"\d+s", cancel_after) and int(cancel_after[:-1]) >= 5
    assert TOKEN not in str(request.url) and TOKEN.encode() not in body


@responses.activate
def test_redirects_are_never_followed() -> None:
    responses.add(
        responses.POST,
        f"{BASE}/v1/models/o/n/predictions",
        status=307,
        headers={"Location": "https://elsewhere.test/steal"},
    )
    with pytest.raises(CloudError, match="not followed") as exc:
        backend().predict(np.zeros((1, 28, 28), dtype=np.uint8))
    assert exc.value.status == 307 and len(responses.calls) == 1


@responses.activate
def test_403_is_an_authentication_error_without_the_token() -> None:
    responses.add(
        responses.POST, f"{BASE}/v1/models/o/n/predictions", status=403, json={"detail": "You do not have permission"}
    )
    with pytest.raises(AuthenticationError) as exc:
        backend().predict(np.zeros((1, 28, 28), dtype=np.uint8))
    assert "REPLICATE_API_TOKEN" in str(exc.value) and TOKEN not in str(exc.value) and len(responses.calls) == 1
    assert TOKEN not in repr(backend())


@responses.activate
@pytest.mark.parametrize("answer", ["403", "422", "failed", "per-digit error", "not the contract"])
def test_a_server_that_echoes_the_token_never_gets_it_shown(answer: str) -> None:
    # given a server that writes the token back into what it says
    echo = f"bad request from Bearer {TOKEN}!"
    create = f"{BASE}/v1/models/o/n/predictions"
    if answer in ("403", "422"):
        responses.add(responses.POST, create, status=int(answer), json={"detail": echo})
    else:
        output: object = {"predictions": [{"error": echo}]} if answer == "per-digit error" else {"oops": echo}
        prediction = (
            {**ONE_DIGIT, "status": "failed", "error": echo} if answer == "failed" else {**ONE_DIGIT, "output": output}
        )
        responses.add(responses.POST, create, status=201, json=prediction)
    # then neither the error (message, detail, traceback) nor the per-digit answer shows it
    try:
        answers = backend().predict(np.zeros((1, 28, 28), dtype=np.uint8))
    except CloudError as exc:
        shown = ["".join(traceback.format_exception(exc)), exc.detail, repr(exc)]
    else:
        shown = [str(a) for a in answers]
    assert any("<REPLICATE_API_TOKEN>" in text for text in shown)
    assert not any(TOKEN in text for text in shown)


def test_retry_after_delta_seconds_are_ascii_digits_only() -> None:
    # "²" passes str.isdigit() and float() refuses it; "٣" and "３" pass and float() reads them
    for odd in ("²", "٣", "３", "1²", "-5", "1e3", "+7"):
        assert parse_retry_after(odd) is None, odd
    assert parse_retry_after(" 12 ") == 12.0
    # a date with "-0000" (no zone claimed) is UTC, not this machine's local time
    assert parse_retry_after("Wed, 21 Oct 2026 07:28:00 -0000", now=lambda: 1792567670.0) == pytest.approx(10.0)


ONE_DIGIT = {
    "id": "p1",
    "status": "succeeded",
    "urls": {"get": f"{BASE}/v1/predictions/p1"},
    "output": {"predictions": [{"digit": 1, "confidence": 1.0, "probabilities": [0, 1] + [0] * 8}]},
}
DEEP = "[" * 100_000 + "]" * 100_000  # valid JSON that json.loads cannot decode (RecursionError)


@responses.activate
def test_a_content_length_that_is_not_ascii_digits_is_ignored_and_the_cap_still_holds() -> None:
    create = f"{BASE}/v1/models/o/n/predictions"
    responses.add(responses.POST, create, status=201, json=ONE_DIGIT, headers={"Content-Length": "²"})
    (answer,) = backend().predict(np.zeros((1, 28, 28), dtype=np.uint8))
    assert int(np.argmax(answer)) == 1
    # the size cap does not rest on the header: a body over it is cut while it streams in
    responses.add(responses.GET, f"{BASE}/v1/big", body=b"x" * 5000, headers={"Content-Length": "²"})
    with pytest.raises(ResponseTooLargeError):
        backend()._request("GET", f"{BASE}/v1/big", Deadline(5), max_bytes=1000)


@responses.activate
def test_json_nested_past_the_recursion_limit_is_an_unreadable_body() -> None:
    create = f"{BASE}/v1/models/o/n/predictions"
    # a 201 that cannot be decoded is ambiguous: the list is read (empty here), then it is created again
    responses.add(responses.POST, create, status=201, body=DEEP)
    responses.add(responses.GET, f"{BASE}/v1/predictions", json={"next": None, "previous": None, "results": []})
    responses.add(responses.POST, create, status=201, json=ONE_DIGIT)
    (answer,) = backend().predict(np.zeros((1, 28, 28), dtype=np.uint8))
    assert int(np.argmax(answer)) == 1
    assert [c.request.method for c in responses.calls if str(c.request.url).startswith(create)] == ["POST", "POST"]
    # a refusal whose detail cannot be decoded is still the refusal
    responses.replace(responses.POST, create, status=422, body=DEEP)
    with pytest.raises(CloudError) as refused:
        backend().predict(np.zeros((1, 28, 28), dtype=np.uint8))
    assert refused.value.status == 422


def _list_page(request_id: str, others: int) -> bytes:
    """A page of the prediction list as Replicate sends it: each prediction with its input (a
    data URI of 500 digits) and its output (500 entries), ours last."""
    entries = [{"digit": 1, "confidence": 0.91, "probabilities": [0.01, 0.91] + [0.01] * 8}] * 500
    uri = "data:application/octet-stream;base64," + "QUJD" * 30_000  # a 120 KB batch file
    results = []
    for i in range(others + 1):
        rid = request_id if i == others else f"other-{i}"
        results.append(
            {
                "id": f"p{i}",
                "status": "succeeded",
                "input": {"digits": uri, "request_id": rid},
                "output": {"predictions": entries, "weights_sha256": "f" * 64, "request_id": rid},
                "urls": {"get": f"{BASE}/v1/predictions/p{i}", "cancel": f"{BASE}/v1/predictions/p{i}/cancel"},
                "created_at": "2026-11-27T18:00:00.000000Z",
            }
        )
    return json.dumps({"next": None, "previous": None, "results": results}).encode()


@responses.activate
def test_reconciling_reads_a_page_without_holding_its_inputs_and_outputs() -> None:
    # given a full page of the list (100 predictions, 18 MB) with ours last
    page = _list_page("digitcloud-ours", 99)
    responses.add(responses.GET, f"{BASE}/v1/predictions", body=page, content_type="application/json")
    b = backend()
    b._server_ahead = 0.0  # the server's clock is known (no account probe)
    # when the client looks for its request_id
    tracemalloc.start()
    try:
        found = b._find("digitcloud-ours", time.time(), Deadline(30))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    # then it finds it, and keeps only its id and URLs (its state comes from polling it) ...
    assert found == {
        "id": "p99",
        "urls": {"get": f"{BASE}/v1/predictions/p99", "cancel": f"{BASE}/v1/predictions/p99/cancel"},
        "status": None,
    }
    # ... and never holds the page: it is parsed as it arrives, about one prediction at a time
    # (the page holds 100). Read whole, it was held twice (bytes and str, 2x the page), and parsed
    # whole with its 50,000 output entries as Python objects, 4.5x
    assert peak < 8 * len(page) / 100


@responses.activate
def test_an_upload_is_deleted_by_its_id_but_not_while_the_breaker_is_open(caplog: pytest.LogCaptureFixture) -> None:
    deleted = responses.delete(f"{BASE}/v1/files/a%2Fb", status=204)  # an id is one path segment, quoted
    b = backend()
    b._delete_upload("a/b")
    assert deleted.call_count == 1
    b._delete_upload(None)  # the upload's answer had no id: nothing to delete
    b.breaker.trip()
    with caplog.at_level("WARNING", logger="digitcloud"):
        b._delete_upload("a/b")
    assert deleted.call_count == 1 and len(responses.calls) == 1  # an open breaker: no request at all
    assert "could not delete uploaded file a/b (Replicate is failing" in caplog.text


@responses.activate
def test_no_create_is_sent_once_the_caller_has_given_up() -> None:
    throttled = responses.post(f"{BASE}/v1/models/o/n/predictions", status=429, json={"detail": "throttled"})
    stop = threading.Event()
    b = ReplicateBackend(
        Target.parse(model="o/n"),
        Secret(TOKEN),
        base_url=BASE,
        timeout=30,
        policy=RetryPolicy(sleep=lambda s: stop.set(), rng=random.Random(0)),  # Ctrl-C during the backoff
    )
    with pytest.raises(CloudUnavailableError, match="the caller gave up"):
        b.predict(np.zeros((1, 28, 28), dtype=np.uint8), stop)
    assert throttled.call_count == 1  # not the 5 tries a throttled create otherwise gets


@responses.activate
def test_giving_up_ends_a_retry_after_wait_at_once() -> None:
    responses.post(
        f"{BASE}/v1/models/o/n/predictions", status=429, json={"detail": "throttled"}, headers={"Retry-After": "30"}
    )
    stop = threading.Event()
    b = ReplicateBackend(Target.parse(model="o/n"), Secret(TOKEN), base_url=BASE, timeout=120)  # real sleep
    timer = threading.Timer(0.2, stop.set)
    timer.start()
    began = time.monotonic()
    with pytest.raises(CloudUnavailableError, match="the caller gave up"):
        b.predict(np.zeros((1, 28, 28), dtype=np.uint8), stop)
    timer.join()
    assert time.monotonic() - began < 10  # woken by the stop, not after the 30 s asked for
    assert len(responses.calls) == 1


@responses.activate
def test_a_probe_interrupted_by_ctrl_c_leaves_the_breaker_open_not_stuck_half_open() -> None:
    def interrupted(request: object) -> tuple[int, dict[str, str], str]:
        raise KeyboardInterrupt

    now = [0.0]
    b = backend(breaker=CircuitBreaker(reset=30, clock=lambda: now[0]))
    b.breaker.trip()
    now[0] = 31.0
    responses.add_callback(responses.GET, f"{BASE}/v1/account", callback=interrupted)
    with pytest.raises(KeyboardInterrupt):
        b._gate()
    assert b.breaker.state == "open"  # half-open would refuse every later call, forever
    responses.replace(responses.GET, f"{BASE}/v1/account", json={"username": "u"})
    now[0] += 61.0  # the failed probe doubled the wait
    b._gate()  # the next probe is due, answers, and closes it
    assert b.breaker.state == "closed"


@responses.activate
def test_a_poll_answer_without_id_or_urls_keeps_polling_the_same_prediction() -> None:
    responses.post(
        f"{BASE}/v1/models/o/n/predictions",
        status=201,
        json={"id": "p1", "status": "starting", "urls": {"get": f"{BASE}/v1/predictions/p1"}},
    )
    output = {"predictions": [{"digit": 3, "confidence": 1.0, "probabilities": [0, 0, 0, 1] + [0] * 6}]}
    polls = [
        responses.get(f"{BASE}/v1/predictions/p1", json={"status": "processing"}),  # no id, no urls
        responses.get(f"{BASE}/v1/predictions/p1", json={"status": "succeeded", "output": output}),
    ]
    answers = backend().predict(np.zeros((1, 28, 28), dtype=np.uint8))
    assert int(np.argmax(answers[0])) == 3
    assert [p.call_count for p in polls] == [1, 1]


@responses.activate
def test_cancelling_on_give_up_shares_one_budget_and_never_waits_long(monkeypatch: pytest.MonkeyPatch) -> None:
    throttled = responses.post(
        re.compile(rf"{BASE}/v1/predictions/p[0-9]/cancel"), status=429, json={}, headers={"Retry-After": "30"}
    )
    slept: list[float] = []

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        time.sleep(seconds)

    b = ReplicateBackend(
        Target.parse(model="o/n"),
        Secret(TOKEN),
        base_url=BASE,
        policy=RetryPolicy(sleep=sleep, rng=random.Random(0)),
    )
    monkeypatch.setattr("digitcloud.replicate.CANCEL_SECONDS", 0.5)
    stop = threading.Event()
    for pid in ("p1", "p2", "p3"):
        b._in_flight.add(pid, f"{BASE}/v1/predictions/{pid}/cancel", stop)
    b.cancel_all(stop)
    # the first cancel spends the shared 0.5 s (try, wait, try); the others get one try each,
    # not three apiece; no wait honours the 30 s asked for
    assert throttled.call_count == 4
    assert slept and max(slept) <= 0.5
