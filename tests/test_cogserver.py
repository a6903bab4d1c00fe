"""The self-hosted Cog backend: unit tests with `responses`, then the real Cog server end to end."""

from __future__ import annotations

import json
import random
import re
import socket
import threading
import warnings
from typing import Any

import numpy as np
import pytest
import requests
import responses

from digitcloud import Client, CloudUnavailableError, FallbackWarning, PredictionFailedError, cogserver
from digitcloud.cogserver import CogServerBackend
from digitcloud.errors import CloudError
from digitcloud.retrying import CircuitBreaker, RetryPolicy

URL = "http://gpu-box:5000"


def _entries(n: int, digit: int = 3) -> list[dict]:
    probs = [0.0] * 10
    probs[digit] = 1.0
    return [{"digit": digit, "confidence": 1.0, "probabilities": probs} for _ in range(n)]


def _ok(n: int) -> dict:
    return {"status": "succeeded", "output": {"predictions": _entries(n), "weights_sha256": "x", "request_id": "r"}}


@pytest.fixture
def sleeps() -> list[float]:
    return []


@pytest.fixture
def backend(sleeps: list[float]) -> CogServerBackend:
    policy = RetryPolicy(attempts=4, sleep=sleeps.append, rng=random.Random(0))
    b = CogServerBackend(URL, timeout=60, policy=policy)
    b._checked = True  # health is tested on its own below
    return b


DIGITS = np.zeros((3, 28, 28), dtype=np.uint8)
PUT_URL = re.compile(rf"{URL}/predictions/digitcloud-[0-9a-f]+$")
CANCEL_URL = re.compile(rf"{URL}/predictions/digitcloud-[0-9a-f]+/cancel$")


def _sent(request: requests.PreparedRequest) -> dict[str, Any]:
    """The JSON body the client sent."""
    assert isinstance(request.body, (bytes, str))
    sent: dict[str, Any] = json.loads(request.body)
    return sent


@responses.activate
def test_success_sends_one_put_with_a_client_made_id(backend: CogServerBackend) -> None:
    responses.add_callback(responses.PUT, PUT_URL, callback=lambda req: (200, {}, json.dumps(_ok(3))))
    answers = backend.predict(DIGITS)
    assert [int(np.argmax(a)) for a in answers] == [3, 3, 3]
    (call,) = responses.calls
    body = _sent(call.request)
    assert str(call.request.url).endswith(body["id"]) and body["id"].startswith("digitcloud-")
    assert body["input"]["request_id"] == body["id"] and body["input"]["digits"].startswith("data:")


@pytest.mark.parametrize("first", [409, 202, 503])
@responses.activate
def test_busy_running_or_5xx_is_retried_with_the_same_id(
    backend: CogServerBackend, sleeps: list[float], first: int
) -> None:
    responses.add(responses.PUT, PUT_URL, json={"status": "processing"}, status=first)
    responses.add(responses.PUT, PUT_URL, json=_ok(3), status=200)
    assert len(backend.predict(DIGITS)) == 3
    ids = {_sent(c.request)["id"] for c in responses.calls}
    assert len(responses.calls) == 2 and len(ids) == 1
    assert len(sleeps) == 1


@responses.activate
def test_connection_error_is_retried(backend: CogServerBackend) -> None:
    responses.add(responses.PUT, PUT_URL, body=requests.ConnectionError("reset"))
    responses.add(responses.PUT, PUT_URL, json=_ok(3))
    assert len(backend.predict(DIGITS)) == 3


@responses.activate
def test_retry_after_is_honoured_but_capped(backend: CogServerBackend, sleeps: list[float]) -> None:
    responses.add(responses.PUT, PUT_URL, status=409, headers={"Retry-After": "3"}, json={})
    responses.add(responses.PUT, PUT_URL, status=409, headers={"Retry-After": "99999"}, json={})
    responses.add(responses.PUT, PUT_URL, json=_ok(3))
    backend.predict(DIGITS)
    assert sleeps[0] >= 3 and sleeps[1] == backend.policy.retry_after_cap


@responses.activate
def test_giving_up_raises_unavailable_and_cancels(backend: CogServerBackend, sleeps: list[float]) -> None:
    responses.add(responses.PUT, PUT_URL, status=409, json={})
    cancel = responses.add(responses.POST, CANCEL_URL, json={})
    with pytest.raises(CloudUnavailableError, match="HTTP 409"):
        backend.predict(DIGITS)
    assert len([c for c in responses.calls if c.request.method == "PUT"]) == 4
    assert cancel.call_count == 1 and len(sleeps) == 3


@responses.activate
def test_no_put_is_sent_once_the_caller_has_given_up() -> None:
    stop = threading.Event()
    policy = RetryPolicy(attempts=4, sleep=lambda s: stop.set(), rng=random.Random(0))  # Ctrl-C in the backoff
    backend = CogServerBackend(URL, timeout=60, policy=policy)
    backend._checked = True
    responses.add(responses.PUT, PUT_URL, status=409, json={})
    cancel = responses.add(responses.POST, CANCEL_URL, json={})
    with pytest.raises(CloudUnavailableError, match="the caller gave up"):
        backend.predict(DIGITS, stop)
    # one PUT (a second would restart a prediction the give-up cancelled), then its cancel
    assert len([c for c in responses.calls if c.request.method == "PUT"]) == 1 and cancel.call_count == 1


@responses.activate
def test_input_rejection_is_not_retried(backend: CogServerBackend) -> None:
    responses.add(responses.PUT, PUT_URL, status=422, json={"detail": [{"msg": "bad"}]})
    responses.add(responses.POST, CANCEL_URL, json={})
    with pytest.raises(CloudError, match="rejected the input"):
        backend.predict(DIGITS)
    assert len([c for c in responses.calls if c.request.method == "PUT"]) == 1


@responses.activate
def test_failed_prediction_and_bad_outputs(backend: CogServerBackend) -> None:
    responses.add(responses.POST, CANCEL_URL, json={})
    responses.add(responses.PUT, PUT_URL, json={"status": "failed", "error": "CUDA out of memory"})
    with pytest.raises(PredictionFailedError, match="CUDA out of memory"):
        backend.predict(DIGITS)
    responses.replace(responses.PUT, PUT_URL, json=_ok(2))  # one entry short: never realigned
    with pytest.raises(CloudError, match="2 entries for 3 digits"):
        backend.predict(DIGITS)
    responses.replace(responses.PUT, PUT_URL, body="<html>gateway</html>")
    with pytest.raises(CloudUnavailableError, match="unreadable body"):
        backend.predict(DIGITS)


DEEP = "[" * 100_000 + "]" * 100_000  # valid JSON that json.loads cannot decode (RecursionError)


@pytest.mark.parametrize("body", [DEEP, "[1, 2]", '"succeeded"'], ids=["nested_too_deep", "a_list", "a_string"])
@responses.activate
def test_an_answer_that_is_not_a_json_object_is_an_unreadable_body(backend: CogServerBackend, body: str) -> None:
    responses.add(responses.POST, CANCEL_URL, json={})
    responses.add(responses.PUT, PUT_URL, body=body)
    with pytest.raises(CloudUnavailableError, match="unreadable body"):
        backend.predict(DIGITS)
    responses.add(responses.GET, f"{URL}/health-check", body=body)
    with pytest.raises(CloudUnavailableError, match=r"not ready|unreachable"):
        CogServerBackend(URL).check_health()


@responses.activate
def test_an_answer_over_the_size_limit_is_refused_and_retried(backend: CogServerBackend) -> None:
    # a valid answer padded past 8 MB + 1 KB per digit: refused while it streams in, like Replicate's
    padded = {**_ok(3), "logs": "x" * (cogserver.BODY_LIMIT + 3 * cogserver.BODY_PER_DIGIT)}
    responses.add(responses.PUT, PUT_URL, json=padded)
    responses.add(responses.PUT, PUT_URL, json=_ok(3))
    assert len(backend.predict(DIGITS)) == 3
    assert len([c for c in responses.calls if c.request.method == "PUT"]) == 2  # the first refused, retried


@responses.activate
def test_health_check_gates_first_use() -> None:
    responses.add(responses.GET, f"{URL}/health-check", json={"status": "STARTING"})
    with pytest.raises(CloudUnavailableError, match="not ready"):
        CogServerBackend(URL).predict(DIGITS)
    assert not any(c.request.method == "PUT" for c in responses.calls)


def _closed_port_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}"


def test_auto_falls_back_to_local_when_the_server_is_down(digits: tuple[np.ndarray, np.ndarray]) -> None:
    pytest.importorskip("torch")
    images, _ = digits
    client = Client(cog_url=_closed_port_url(), batch_size=8)
    with pytest.warns(FallbackWarning, match="unreachable"):
        results = client.classify(images[:20])
    assert [r.backend for r in results] == ["local"] * 20
    assert [r.digit for r in results] == [r.digit for r in Client(backend="local").classify(images[:20])]


@responses.activate
def test_a_server_that_keeps_failing_opens_the_breaker_and_its_health_check_closes_it(sleeps: list[float]) -> None:
    # given a Cog server that cannot be reached (every PUT fails before anything is sent)
    now = [0.0]
    policy = RetryPolicy(attempts=3, sleep=sleeps.append, rng=random.Random(0))
    backend = CogServerBackend(URL, timeout=60, policy=policy, breaker=CircuitBreaker(clock=lambda: now[0]))
    backend._checked = True
    responses.add(responses.PUT, PUT_URL, body=requests.ConnectTimeout("no route to host"))
    responses.add(responses.POST, CANCEL_URL, json={})
    puts = lambda: sum(c.request.method == "PUT" for c in responses.calls)  # noqa: E731
    with pytest.raises(CloudUnavailableError, match="ConnectTimeout"):
        backend.predict(DIGITS)
    # then the fifth failure in a row opens the breaker, and while it is open nothing is sent
    with pytest.raises(CloudUnavailableError, match="keeps failing: no request sent"):
        backend.predict(DIGITS)
    assert puts() == 5 and backend.breaker.state == "open"
    with pytest.raises(CloudUnavailableError, match="circuit open, next probe in 30 s"):
        backend.predict(DIGITS)
    assert puts() == 5
    # and once the wait is over, a good health check (free) closes it and the batch is sent
    now[0] = 31.0
    responses.replace(responses.PUT, PUT_URL, json=_ok(3))
    health = responses.add(responses.GET, f"{URL}/health-check", json={"status": "READY"})
    assert len(backend.predict(DIGITS)) == 3
    assert health.call_count == 1 and puts() == 6 and backend.breaker.state == "closed"


@pytest.mark.parametrize("in_flight", [1, 4])
def test_auto_stops_trying_a_dead_server_and_answers_locally_at_once(
    digits: tuple[np.ndarray, np.ndarray], connects: list[tuple[str, int]], in_flight: int
) -> None:
    pytest.importorskip("torch")
    images, _ = digits
    client = Client(cog_url=_closed_port_url(), batch_size=4, max_concurrency=in_flight)
    with pytest.warns(FallbackWarning, match="unreachable"):
        results = client.classify(images[:40])  # ten chunks
    assert [r.backend for r in results] == ["local"] * 40
    # five refused health checks open the breaker; the chunks after them never touch the network.
    # With 4 in flight, up to 3 more may have passed the closed breaker before the fifth failure.
    assert 5 <= len(connects) <= 5 + in_flight - 1
    assert client._cloud is not None and client._cloud.breaker.state == "open"


def test_cloud_only_reports_each_item_instead_of_falling_back(digits: tuple[np.ndarray, np.ndarray]) -> None:
    images, _ = digits
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        results = Client(backend="cloud", cog_url=_closed_port_url()).classify(images[:5])
    assert [r.ok for r in results] == [False] * 5
    assert all(isinstance(r.error, CloudUnavailableError) for r in results)


def test_offline_never_touches_the_cog_server(digits: tuple[np.ndarray, np.ndarray]) -> None:
    pytest.importorskip("torch")
    client = Client(cog_url=_closed_port_url(), offline=True)
    assert client.classify(digits[0][0]).backend == "local"


def test_classify_through_the_real_cog_server_matches_local(
    cog_server: str, digits: tuple[np.ndarray, np.ndarray]
) -> None:
    pytest.importorskip("torch")
    images, _ = digits
    inputs = [*images, b"not an image", images[0]]
    with Client(cog_url=cog_server, batch_size=7, max_concurrency=3) as client:
        results = client.classify(inputs)
    local = Client(backend="local").classify(images)
    assert len(results) == len(images) + 2
    assert [r.backend for r in results if r.ok] == ["cog"] * (len(images) + 1)
    assert [r.digit for r in results[: len(images)]] == [r.digit for r in local]
    np.testing.assert_allclose(
        [r.probabilities for r in results[: len(images)]], [r.probabilities for r in local], atol=1e-4
    )
    assert not results[-2].ok and "not a supported image" in str(results[-2].error)


class _StallingCogServer:
    """A loopback stand-in for a Cog server whose predictions never finish until cancelled."""

    def __init__(self) -> None:
        import http.server
        import threading

        self.puts: list[str] = []
        self.cancels: list[str] = []
        self.cancelled = threading.Event()
        owner = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def _reply(self, body: dict) -> None:
                data = json.dumps(body).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:
                self._reply({"status": "READY"})

            def do_PUT(self) -> None:
                self.rfile.read(int(self.headers["Content-Length"]))
                owner.puts.append(self.path.rsplit("/", 1)[-1])
                owner.cancelled.wait(10)
                self._reply({"status": "canceled"})

            def do_POST(self) -> None:
                owner.cancels.append(self.path.split("/")[2])
                owner.cancelled.set()
                self._reply({})

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.cancelled.set()
        self.server.shutdown()
        self.server.server_close()


def test_ctrl_c_mid_run_cancels_every_prediction_in_flight(
    digits: tuple[np.ndarray, np.ndarray], ctrl_c_raises: None
) -> None:
    import os
    import signal
    import threading
    import time

    images, _ = digits
    fake = _StallingCogServer()
    try:
        client = Client(backend="cloud", cog_url=fake.url, batch_size=10, max_concurrency=3)

        def press_ctrl_c_once_predictions_run() -> None:
            deadline = time.monotonic() + 10
            while len(fake.puts) < 3 and time.monotonic() < deadline:
                time.sleep(0.01)
            os.kill(os.getpid(), signal.SIGINT)  # a real Ctrl-C: it interrupts blocking waits too

        threading.Thread(target=press_ctrl_c_once_predictions_run, daemon=True).start()
        began = time.monotonic()
        with pytest.raises(KeyboardInterrupt):
            client.classify(images)  # 40 digits: 4 chunks of 10, 3 in flight
        # the cancels went out at once (the stalled predictions would only end after 10 s)
        assert time.monotonic() - began < 5
        assert len(fake.puts) == 3  # the 4th chunk was never sent
        assert sorted(fake.cancels) == sorted(fake.puts)
    finally:
        fake.close()
