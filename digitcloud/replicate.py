"""Replicate's HTTP API, the data plane: create, wait, poll, cancel, and file uploads, over requests.

Safety rules (DESIGN.md §6): a create is retried blindly only when it cannot have reached the
server (connection refused, DNS, connect timeout) or was refused with 429. After an ambiguous
failure (read timeout, a reset after sending, 5xx, an unreadable body) the prediction may exist:
every create carries a fresh ``request_id`` in its input, so the client lists recent predictions
and adopts the one it finds, or creates again if there is none. Every create carries
``Cancel-After`` (the batch's deadline), and whatever was started is cancelled when the caller
gives up. The token lives in a ``Secret`` and appears only in the Authorization header.
"""

from __future__ import annotations

import base64
import datetime as dt
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

import numpy as np
import requests
import urllib3.exceptions

from digitcloud import contract
from digitcloud.config import DEFAULT_BASE_URL, Secret, Target
from digitcloud.errors import (
    AuthenticationError,
    CloudError,
    CloudUnavailableError,
    ConfigError,
    PredictionFailedError,
)
from digitcloud.inputs import write_digits_file
from digitcloud.retrying import Deadline, RetryPolicy, parse_retry_after
from digitcloud.sessions import InFlight

DATA_URI_LIMIT = 256 * 1024  # Replicate: data URLs for files up to 256 KB, uploads beyond
CONNECT_TIMEOUT = 5.0
MAX_WAIT = 60  # Prefer: wait=N accepts 1..60
TERMINAL = ("succeeded", "failed", "canceled", "aborted")
CLOCK_SKEW = 30.0  # seconds subtracted from created_after when reconciling
LIST_PAGES = 5


def _sent(exc: requests.RequestException) -> bool:
    """Whether the request may have reached the server (so retrying it blindly could duplicate it)."""
    if isinstance(exc, requests.ConnectTimeout):
        return False
    if isinstance(exc, requests.ConnectionError):
        reason = exc.args[0] if exc.args else None
        reason = getattr(reason, "reason", reason)
        return not isinstance(reason, (urllib3.exceptions.NewConnectionError, urllib3.exceptions.NameResolutionError))
    return True


class ReplicateBackend:
    """Runs batches as Replicate predictions of predict.py (wire contract v1)."""

    name = "replicate"

    def __init__(
        self,
        target: Target,
        token: Secret,
        *,
        base_url: str = DEFAULT_BASE_URL,
        timeout: float = 120.0,
        session: requests.Session | None = None,
        policy: RetryPolicy | None = None,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        if not token:
            raise ConfigError("Replicate needs a token: set REPLICATE_API_TOKEN")
        self.target = target
        self._token = token
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self.session = session or requests.Session()
        self.policy = policy or RetryPolicy()
        self.wall_clock = wall_clock
        self._in_flight = InFlight()

    def __repr__(self) -> str:
        return f"ReplicateBackend(target={str(self.target)!r}, base_url={self.base_url!r})"

    def close(self) -> None:
        self.session.close()

    # ------------------------------------------------------------------ HTTP with the token

    def _headers(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        return {"Authorization": f"Bearer {self._token.reveal()}", **(extra or {})}

    def _request(self, method: str, url: str, deadline: Deadline, **kwargs: Any) -> requests.Response:
        headers = self._headers(kwargs.pop("headers", None))
        read = kwargs.pop("read_timeout", None) or max(1.0, min(30.0, deadline.remaining()))
        # Never follow redirects on API calls: the token must not travel to another host.
        return self.session.request(
            method, url, headers=headers, timeout=(CONNECT_TIMEOUT, read), allow_redirects=False, **kwargs
        )

    def _same_host(self, url: str | None) -> bool:
        if not url:
            return False
        mine, theirs = urlsplit(self.base_url), urlsplit(url)
        return (mine.scheme, mine.netloc) == (theirs.scheme, theirs.netloc)

    @staticmethod
    def _raise_for_status(resp: requests.Response, what: str) -> None:
        """Map a non-2xx answer to the error tree (never echoing request headers)."""
        if resp.status_code < 300:
            return
        detail = _detail(resp)
        if resp.status_code < 400:
            # API calls never follow redirects: the Authorization header must not travel elsewhere.
            raise CloudError(
                f"Replicate redirected {what} to {resp.headers.get('Location')!r}; not followed",
                status=resp.status_code,
                detail=detail,
            )
        if resp.status_code in (401, 403):
            raise AuthenticationError(
                f"Replicate refused the token ({resp.status_code}) for {what}: check REPLICATE_API_TOKEN",
                status=resp.status_code,
                detail=detail,
            )
        if resp.status_code == 429 or resp.status_code >= 500:
            raise CloudUnavailableError(
                f"Replicate answered {resp.status_code} to {what}: {detail}", status=resp.status_code, detail=detail
            )
        raise CloudError(
            f"Replicate answered {resp.status_code} to {what}: {detail}", status=resp.status_code, detail=detail
        )

    # ------------------------------------------------------------------ one batch

    def predict(self, digits: np.ndarray, stop: threading.Event | None = None) -> list[np.ndarray | str]:
        """Per digit: probabilities or the predictor's error text; raises ``CloudError`` subclasses.

        ``stop`` is set when the caller gives up: a prediction created after that is cancelled
        at once, and polling stops.
        """
        stop = stop or threading.Event()
        deadline = Deadline(self.timeout)
        request_id = f"digitcloud-{uuid.uuid4().hex}"
        payload = {"digits": self._digits_input(digits, deadline), "request_id": request_id}
        prediction = self._create(payload, request_id, deadline)
        prediction_id = str(prediction["id"])
        self._in_flight.add(prediction_id, self._cancel_url(prediction), stop)
        finished = False
        try:
            prediction = self._wait(prediction, deadline, stop)
            finished = True
        finally:
            cancel_url = self._in_flight.pop(prediction_id)
            if cancel_url is not None and not finished:
                self._cancel(cancel_url)
        return self._outcome(prediction, len(digits))

    def cancel_all(self, stop: threading.Event | None = None) -> None:
        """Cancel the predictions in flight for the call that set ``stop`` (all when ``None``)."""
        for url in self._in_flight.take(stop):
            self._cancel(url)

    def _cancel_url(self, prediction: dict[str, Any]) -> str:
        url = (prediction.get("urls") or {}).get("cancel")
        if isinstance(url, str) and self._same_host(url):
            return url
        return f"{self.base_url}/v1/predictions/{prediction['id']}/cancel"

    def _cancel(self, url: str) -> None:
        deadline = Deadline(10.0)
        for attempt in range(1, 4):
            try:
                resp = self._request("POST", url, deadline, read_timeout=5.0)
                if resp.status_code < 500:
                    return
            except requests.RequestException:
                pass
            if attempt < 3:
                self.policy.sleep(self.policy.backoff(attempt))

    def _digits_input(self, digits: np.ndarray, deadline: Deadline) -> str:
        blob = write_digits_file(digits, compressed=True)
        if len(blob) <= DATA_URI_LIMIT:
            return "data:application/octet-stream;base64," + base64.b64encode(blob).decode("ascii")
        return self._upload(blob, deadline)

    def _upload(self, blob: bytes, deadline: Deadline) -> str:
        """POST /v1/files; a duplicate upload costs storage, not compute, so every failure is retried."""
        reason = "no attempt made"
        for attempt in range(1, self.policy.attempts + 1):
            retry_after = None
            try:
                resp = self._request(
                    "POST",
                    f"{self.base_url}/v1/files",
                    deadline,
                    files={"content": ("digits.npz", blob, "application/octet-stream")},
                    data={"filename": "digits.npz", "type": "application/octet-stream"},
                )
                if resp.status_code in (200, 201):
                    url = (resp.json().get("urls") or {}).get("get")
                    if isinstance(url, str) and url:
                        return url
                    reason = "the files API answered without urls.get"
                else:
                    if resp.status_code not in (429,) and resp.status_code < 500:
                        self._raise_for_status(resp, "a file upload")
                    reason = f"HTTP {resp.status_code}"
                    retry_after = parse_retry_after(resp.headers.get("Retry-After"), self.wall_clock)
            except (requests.RequestException, ValueError) as exc:
                reason = type(exc).__name__
            if not self._pause(attempt, retry_after, deadline):
                break
        raise CloudUnavailableError(f"could not upload the batch to Replicate ({reason})")

    def _pause(self, attempt: int, retry_after: float | None, deadline: Deadline) -> bool:
        """Sleep before the next attempt; False when attempts or the deadline are spent."""
        if attempt >= self.policy.attempts:
            return False
        delay = self.policy.backoff(attempt, retry_after)
        if not deadline.fits(delay):
            return False
        self.policy.sleep(delay)
        return True

    def _create(self, payload: dict[str, Any], request_id: str, deadline: Deadline) -> dict[str, Any]:
        url = self.base_url + self.target.create_path()
        body = self.target.body(payload)
        created_after = self.wall_clock() - CLOCK_SKEW
        reason = "no attempt made"
        for attempt in range(1, self.policy.attempts + 1):
            wait = int(max(1, min(MAX_WAIT, deadline.remaining() - 2)))
            headers = {"Prefer": f"wait={wait}", "Cancel-After": f"{max(5, int(deadline.remaining()) + 1)}s"}
            retry_after = None
            ambiguous = False
            try:
                resp = self._request("POST", url, deadline, json=body, headers=headers, read_timeout=wait + 5.0)
            except requests.RequestException as exc:
                reason = f"{type(exc).__name__} creating the prediction"
                ambiguous = _sent(exc)
            else:
                if resp.status_code in (200, 201, 202):
                    try:
                        prediction = resp.json()
                        if isinstance(prediction, dict) and prediction.get("id"):
                            return prediction
                    except ValueError:
                        pass
                    reason, ambiguous = f"an unreadable {resp.status_code} body", True
                elif resp.status_code == 429:
                    reason = "429 rate limited"
                    retry_after = parse_retry_after(resp.headers.get("Retry-After"), self.wall_clock)
                elif resp.status_code >= 500:
                    reason, ambiguous = f"HTTP {resp.status_code}", True
                else:
                    self._raise_for_status(resp, f"creating a prediction of {self.target}")
            if ambiguous:
                # The prediction may exist: find it by our request_id before creating another.
                found = self._find(request_id, created_after, deadline)
                if found is not None:
                    return found
            if not self._pause(attempt, retry_after, deadline):
                break
        raise CloudUnavailableError(f"could not create a prediction of {self.target} ({reason})")

    def _find(self, request_id: str, created_after: float, deadline: Deadline) -> dict[str, Any] | None:
        """The prediction whose input carries ``request_id``, from the recent-predictions list."""
        since = dt.datetime.fromtimestamp(created_after, dt.timezone.utc).isoformat().replace("+00:00", "Z")
        url: str | None = f"{self.base_url}/v1/predictions"
        params: dict[str, str] | None = {"created_after": since}
        for _ in range(LIST_PAGES):
            if url is None or deadline.expired():
                break
            page = self._get_json(url, deadline, params=params)
            for prediction in page.get("results") or []:
                if isinstance(prediction, dict) and (prediction.get("input") or {}).get("request_id") == request_id:
                    return prediction
            following = page.get("next")
            url, params = (following, None) if self._same_host(following) else (None, None)
        return None

    def _get_json(self, url: str, deadline: Deadline, params: dict[str, str] | None = None) -> dict[str, Any]:
        """A GET retried with backoff (GETs are safe to repeat) until it answers or time runs out."""
        reason = "no attempt made"
        for attempt in range(1, self.policy.attempts + 1):
            retry_after = None
            try:
                resp = self._request("GET", url, deadline, params=params)
                if resp.status_code == 200:
                    payload = resp.json()
                    if isinstance(payload, dict):
                        return payload
                    reason = "a body that is not a JSON object"
                elif resp.status_code == 429 or resp.status_code >= 500:
                    reason = f"HTTP {resp.status_code}"
                    retry_after = parse_retry_after(resp.headers.get("Retry-After"), self.wall_clock)
                else:
                    self._raise_for_status(resp, "reading a prediction")
            except (requests.RequestException, ValueError) as exc:
                reason = type(exc).__name__
            if not self._pause(attempt, retry_after, deadline):
                break
        raise CloudUnavailableError(f"Replicate did not answer a GET ({reason})")

    def _wait(self, prediction: dict[str, Any], deadline: Deadline, stop: threading.Event) -> dict[str, Any]:
        """Poll until the prediction is terminal, the deadline passes or the caller gives up (then
        the caller cancels it)."""
        poll = 0
        while prediction.get("status") not in TERMINAL:
            if stop.is_set():
                raise CloudUnavailableError(f"prediction {prediction.get('id')} abandoned: the caller gave up")
            poll += 1
            delay = min(2.0, 0.1 * 2 ** min(poll, 5))
            if not deadline.fits(delay):
                raise CloudUnavailableError(
                    f"prediction {prediction.get('id')} still {prediction.get('status')!r} at the deadline "
                    f"({self.timeout:.0f} s)"
                )
            self.policy.sleep(delay)
            get_url = (prediction.get("urls") or {}).get("get")
            url = get_url if isinstance(get_url, str) and self._same_host(get_url) else None
            url = url or f"{self.base_url}/v1/predictions/{prediction['id']}"
            prediction = self._get_json(url, deadline)
        return prediction

    @staticmethod
    def _outcome(prediction: dict[str, Any], count: int) -> list[np.ndarray | str]:
        status = prediction.get("status")
        if status == "succeeded":
            return contract.parse_output(prediction.get("output"), count)
        if status == "failed":
            raise PredictionFailedError(f"prediction {prediction.get('id')} failed: {prediction.get('error')}")
        raise CloudUnavailableError(f"prediction {prediction.get('id')} ended {status!r}")


def _detail(resp: requests.Response) -> str:
    try:
        payload = resp.json()
        detail = payload.get("detail") if isinstance(payload, dict) else None
    except ValueError:
        detail = None
    text = str(detail) if detail else resp.text
    return text[:200]
