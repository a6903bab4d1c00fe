"""The self-hosted Cog server backend: ``PUT /predictions/{id}`` with an id the client makes.

Cog's PUT is an idempotent create: sending the same id again while the prediction runs returns its
current state instead of starting a second run, so every failure here may be retried safely.
When the caller gives up (deadline, Ctrl-C, an exception) the prediction is cancelled. Bodies are
read with the Replicate backend's limits: a size cap (8 MB plus 1 KB per digit) and the batch's
deadline; one over either, or one that is not JSON, is a failed try. While the server keeps
failing, a circuit breaker (the Replicate backend's) sends nothing and the client answers locally
at once; the free ``GET /health-check`` probes for recovery.
"""

from __future__ import annotations

import contextlib
import threading
import time
import uuid
from typing import Any

import numpy as np
import requests

from digitcloud import contract
from digitcloud.errors import CloudError, CloudUnavailableError, PredictionFailedError
from digitcloud.retrying import CircuitBreaker, Deadline, RetryPolicy, parse_retry_after
from digitcloud.sessions import InFlight, may_have_reached_server, read_body, read_json

BODY_LIMIT = 8 * 2**20  # bytes of an answer, plus BODY_PER_DIGIT per digit of the batch (as for Replicate)
BODY_PER_DIGIT = 1024
HEALTH_LIMIT = 64 * 1024

CONNECT_TIMEOUT = 5.0
READY = ("READY", "BUSY")


class CogServerBackend:
    """Runs batches on a Cog server at ``url`` (e.g. ``http://gpu-box:5000``)."""

    name = "cog"

    def __init__(
        self,
        url: str,
        *,
        timeout: float = 120.0,
        session: requests.Session | None = None,
        policy: RetryPolicy | None = None,
        breaker: CircuitBreaker | None = None,
    ) -> None:
        self.url = url.rstrip("/")
        self.timeout = timeout
        self.session = session or requests.Session()
        self.policy = policy or RetryPolicy()
        self.breaker = breaker or CircuitBreaker()
        self._checked = False
        self._in_flight = InFlight()

    def __repr__(self) -> str:
        return f"CogServerBackend(url={self.url!r})"

    def check_health(self) -> None:
        """Raise ``CloudUnavailableError`` unless the server says READY or BUSY."""
        try:
            resp = self.session.get(f"{self.url}/health-check", timeout=(CONNECT_TIMEOUT, 10.0), stream=True)
            with contextlib.closing(resp):
                read_body(resp, HEALTH_LIMIT, time.monotonic() + 10.0)
            health = read_json(resp) if resp.ok else None
            status = health.get("status") if isinstance(health, dict) else f"HTTP {resp.status_code}"
        except (requests.RequestException, ValueError) as exc:
            raise CloudUnavailableError(f"Cog server {self.url} unreachable: {type(exc).__name__}") from exc
        if status not in READY:
            raise CloudUnavailableError(f"Cog server {self.url} is not ready (status {status})")
        self._checked = True

    def _healthy(self) -> bool:
        """``check_health`` as the breaker's probe: True when the server is ready."""
        try:
            self.check_health()
        except CloudUnavailableError:
            return False
        return True

    def predict(self, digits: np.ndarray, stop: threading.Event | None = None) -> list[np.ndarray | str]:
        """Per digit: probabilities, or the predictor's error text; raises ``CloudError`` subclasses.

        ``stop`` is set when the caller gives up; ``cancel_all(stop)`` then cancels this prediction.
        """
        stop = stop or threading.Event()
        self._gate()  # refuses while the breaker is open; when a probe is due, the health check is it
        if not self._checked:
            try:
                self.check_health()
            except CloudUnavailableError:
                self.breaker.record(False, pre_send=True)  # nothing was sent to run; the server is not there
                raise
        prediction_id = f"digitcloud-{uuid.uuid4().hex}"
        body = {"id": prediction_id, "input": {"digits": contract.encode_batch(digits), "request_id": prediction_id}}
        deadline = Deadline(self.timeout)
        self._in_flight.add(prediction_id, prediction_id, stop)
        finished = False
        try:
            result = self._put_until_done(
                prediction_id, body, deadline, BODY_LIMIT + BODY_PER_DIGIT * len(digits), stop
            )
            finished = True
        finally:
            ours = self._in_flight.pop(prediction_id) is not None  # not already cancelled by cancel_all
            if ours and not finished:
                self._cancel(prediction_id)
        return contract.parse_output(result, len(digits))

    def cancel_all(self, stop: threading.Event | None = None) -> None:
        """Cancel the predictions in flight for the call that set ``stop`` (all when ``None``)."""
        active = self._in_flight.take(stop)
        for prediction_id in active:
            self._cancel(prediction_id)

    def _put_until_done(
        self, prediction_id: str, body: dict[str, Any], deadline: Deadline, max_bytes: int, stop: threading.Event
    ) -> Any:
        """PUT the prediction until the server answers with its end; once ``stop`` is set, no further
        PUT is sent (one would restart a prediction ``cancel_all`` just cancelled) and a wait ends."""
        url = f"{self.url}/predictions/{prediction_id}"
        reason = "no attempt made"
        for attempt in range(1, self.policy.attempts + 1):
            retry_after = None
            if stop.is_set():
                raise CloudUnavailableError("prediction abandoned: the caller gave up")
            self._gate()
            try:
                budget = max(1.0, deadline.remaining())
                resp = self.session.put(url, json=body, timeout=(CONNECT_TIMEOUT, budget), stream=True)
                with contextlib.closing(resp):
                    read_body(resp, max_bytes, time.monotonic() + budget)
            except requests.RequestException as exc:
                self.breaker.record(False, pre_send=not may_have_reached_server(exc))
                reason = f"{type(exc).__name__} talking to {self.url}"
            else:
                self.breaker.record(resp.status_code < 500 and resp.status_code != 429)
                if resp.status_code == 200:
                    return self._terminal(resp)
                if resp.status_code == 422:
                    raise CloudError(f"Cog server rejected the input: {resp.text[:300]}", status=422)
                # 202: still running from an earlier attempt; 409: all slots busy; 5xx: transient.
                reason = f"HTTP {resp.status_code} from {self.url}"
                if resp.status_code not in (202, 409, 429) and resp.status_code < 500:
                    raise CloudError(f"unexpected {reason}: {resp.text[:300]}", status=resp.status_code)
                retry_after = parse_retry_after(resp.headers.get("Retry-After"))
            if attempt == self.policy.attempts:
                break
            delay = self.policy.backoff(attempt, retry_after)
            if not deadline.fits(delay):
                break
            self.policy.wait(delay, stop)  # ends early once the caller gives up; the loop's check raises
        raise CloudUnavailableError(f"Cog server gave no answer within {self.timeout:.0f} s ({reason})")

    def _gate(self) -> None:
        """Raise ``CloudUnavailableError`` while the breaker is open; probe the health check when due."""
        verdict = self.breaker.allow()
        if verdict == "pass":
            return
        if verdict == "probe" and self.breaker.run_probe(self._healthy):
            return
        raise CloudUnavailableError(
            f"Cog server {self.url} keeps failing: no request sent "
            f"(circuit open, next probe in {self.breaker.retry_in():.0f} s)"
        )

    @staticmethod
    def _terminal(resp: requests.Response) -> Any:
        try:
            payload = read_json(resp)
        except ValueError:
            payload = None
        if not isinstance(payload, dict):
            raise CloudUnavailableError(f"Cog server sent an unreadable body: {resp.text[:200]!r}")
        status = payload.get("status")
        if status == "succeeded":
            return payload.get("output")
        if status == "failed":
            raise PredictionFailedError(f"prediction failed on the Cog server: {payload.get('error')}")
        raise CloudUnavailableError(f"prediction ended {status!r} on the Cog server")

    def _cancel(self, prediction_id: str) -> None:
        # Best effort: a server that cannot be reached cannot be running our prediction for long.
        with contextlib.suppress(requests.RequestException):
            self.session.post(f"{self.url}/predictions/{prediction_id}/cancel", timeout=(CONNECT_TIMEOUT, 5.0))

    def close(self) -> None:
        self.session.close()
