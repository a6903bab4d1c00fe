"""Replicate's HTTP API, the data plane: create, wait, poll, cancel, and file uploads (deleted once
their prediction is over), over requests.

Safety rules (DESIGN.md §6): a create is retried blindly only when it cannot have reached the
server (connection refused, DNS, connect timeout) or was refused with 429. After an ambiguous
failure (read timeout, a reset after sending, 5xx, an unreadable body) the prediction may exist:
every create carries a fresh ``request_id`` in its input, so the client lists recent predictions
and adopts the one it finds, or creates again if there is none. Every create carries
``Cancel-After`` (the batch's deadline), and whatever was started is cancelled when the caller
gives up. The token lives in a ``Secret`` and appears only in the Authorization header.

Every response body is read with a size cap and inside the batch's deadline (a server that trickles
bytes or streams junk cannot hold the client past it or fill its memory), and any body that does not
decode is an unreadable body, never an exception of its own. A ``CircuitBreaker`` stops all requests
while Replicate keeps failing; a free ``GET /v1/account`` probes for recovery.

Reconciling stays cheap however many predictions the account holds (a page of the list echoes up
to 100 of them, inputs and outputs included): the listing starts a few seconds before the create on
the server's own clock, learnt from ``Date`` headers; a page is parsed as it arrives, one prediction
at a time, keeping only ids, URLs and request_ids (``list_page.ListPageReader``); paging stops at the match,
and pages and bytes are capped. A listing cut short by a cap raises instead of creating again: the
prediction may be on a page not read.
"""

from __future__ import annotations

import base64
import datetime as dt
import logging
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any
from urllib.parse import quote, urlsplit

import numpy as np
import requests

from digitcloud import contract, list_page
from digitcloud.config import DEFAULT_BASE_URL, Secret, Target
from digitcloud.digits_file import write_digits_file
from digitcloud.errors import (
    AuthenticationError,
    CloudError,
    CloudUnavailableError,
    ConfigError,
    PredictionFailedError,
)
from digitcloud.retrying import CircuitBreaker, Deadline, RetryPolicy, parse_http_date, parse_retry_after
from digitcloud.sessions import (
    InFlight,
    ResponseTooLargeError,
    ResponseTooSlowError,
    may_have_reached_server,
    read_body,
    read_json,
)
from digitcloud.sessions import reason as _reason

__all__ = ["ReplicateBackend", "ResponseTooLargeError", "ResponseTooSlowError"]

logger = logging.getLogger("digitcloud")

CANCEL_SECONDS = 10.0  # for the cancels of one give-up, all tries included
CANCEL_PAUSE = 2.0  # the longest wait between two tries of a cancel
DATA_URI_LIMIT = 256 * 1024  # Replicate: data URLs for files up to 256 KB, uploads beyond
CONNECT_TIMEOUT = 5.0
MAX_WAIT = 60  # Prefer: wait=N accepts 1..60
TERMINAL = ("succeeded", "failed", "canceled", "aborted")
CLOCK_SKEW = 30.0  # created_after is this long before the create while the server's clock is unknown
LIST_WINDOW = 2.0  # ... and this long before it on the server's clock, once a Date header showed that clock
LIST_PAGES = 5  # pages of the prediction list read to reconcile one create, at most
READ_MARGIN = 5.0  # a create's read timeout is its Prefer: wait plus this
READ_TIMEOUT = 30.0  # longest silence accepted from any other request
PRE_SEND_ATTEMPTS = 3  # tries of a create that cannot reach the host (refused, DNS, connect timeout)
BODY_LIMIT = 8 * 2**20  # bytes of a prediction body, plus BODY_PER_DIGIT per digit of the batch
BODY_PER_DIGIT = 1024  # a wire-contract entry is ~170 bytes
LIST_BODY_LIMIT = 64 * 2**20  # bytes of all list pages read for one create (100 predictions a page, with inputs)


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
        breaker: CircuitBreaker | None = None,
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
        self.breaker = breaker or CircuitBreaker()
        self._in_flight = InFlight()
        self._hold_until = 0.0  # monotonic time before which no create is sent (Retry-After on 429/503)
        self._server_ahead: float | None = None  # a lower bound on (server clock - wall_clock), from Date

    def __repr__(self) -> str:
        return f"ReplicateBackend(target={str(self.target)!r}, base_url={self.base_url!r})"

    def close(self) -> None:
        self.session.close()

    # ------------------------------------------------------------------ HTTP with the token

    def _headers(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        return {"Authorization": f"Bearer {self._token.reveal()}", **(extra or {})}

    def _request(
        self,
        method: str,
        url: str,
        deadline: Deadline,
        *,
        read_timeout: float | None = None,
        max_bytes: int | None = None,
        gate: bool = True,
        reader: Callable[[requests.Response, int, float], None] = read_body,
        **kwargs: Any,
    ) -> requests.Response:
        """One request, its body read whole within ``deadline`` and ``max_bytes`` (by ``reader``, which
        gets the limits ``read_body`` gets). ``gate``: ask the circuit breaker first and tell it the
        outcome (cancels and the probe bypass it)."""
        if gate:
            self._gate()
        headers = self._headers(kwargs.pop("headers", None))
        budget = max(1.0, deadline.remaining())
        read_timeout = READ_TIMEOUT if read_timeout is None else read_timeout
        try:
            # Never follow redirects on API calls: the token must not travel to another host.
            resp = self.session.request(
                method,
                url,
                headers=headers,
                timeout=(CONNECT_TIMEOUT, min(read_timeout, budget)),
                allow_redirects=False,
                stream=True,
                **kwargs,
            )
            self._observe_clock(resp)
            try:
                reader(resp, BODY_LIMIT if max_bytes is None else max_bytes, time.monotonic() + budget)
            finally:
                resp.close()
        except requests.RequestException as exc:
            if gate and isinstance(exc, requests.exceptions.SSLError):
                self.breaker.trip()  # an untrusted certificate does not heal by retrying
            elif gate:
                self.breaker.record(False, pre_send=not may_have_reached_server(exc))
            raise
        if gate:
            self.breaker.record(resp.status_code < 500 and resp.status_code != 429)
        return resp

    def _observe_clock(self, resp: requests.Response) -> None:
        """Learn how far the server's clock is ahead of ours: its ``Date`` (whole seconds, rounded
        down) was stamped before we received it, so ``Date - now`` never overstates it. The latest
        answer wins, so a step of our clock is forgotten at the next response."""
        server = parse_http_date(resp.headers.get("Date"))
        if server is not None:
            self._server_ahead = server - self.wall_clock()

    def _gate(self) -> None:
        """Raise ``CloudUnavailableError`` while the breaker is open; run the probe when it is due."""
        verdict = self.breaker.allow()
        if verdict == "pass":
            return
        if verdict == "probe" and self.breaker.run_probe(self._probe):
            return
        raise CloudUnavailableError(
            f"Replicate keeps failing: no request sent (circuit open, next probe in {self.breaker.retry_in():.0f} s)"
        )

    def _probe(self) -> bool:
        """A free request (``GET /v1/account``, never a billed create): is Replicate answering again?"""
        try:
            resp = self._request("GET", f"{self.base_url}/v1/account", Deadline(10.0), read_timeout=5.0, gate=False)
        except requests.RequestException:
            return False
        return resp.status_code < 500 and resp.status_code != 429

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
        at once, and polling stops. Server text in what comes back (error details, a failed
        prediction's message, per-digit errors) has the token redacted, should a server echo it.
        """
        try:
            answers = self._predict(digits, stop or threading.Event())
        except CloudError as exc:
            exc.args = tuple(self._token.redact(a) if isinstance(a, str) else a for a in exc.args)
            exc.detail = self._token.redact(exc.detail)
            raise
        return [self._token.redact(a) if isinstance(a, str) else a for a in answers]

    def _predict(self, digits: np.ndarray, stop: threading.Event) -> list[np.ndarray | str]:
        deadline = Deadline(self.timeout)
        blob = write_digits_file(digits, compressed=True)
        if len(blob) <= DATA_URI_LIMIT:
            data_uri = "data:application/octet-stream;base64," + base64.b64encode(blob).decode("ascii")
            return self._run_prediction(digits, data_uri, deadline, stop)
        url, file_id = self._upload(blob, deadline, stop)
        try:
            return self._run_prediction(digits, url, deadline, stop)
        finally:  # the prediction is over, or given up and cancelled: its input is no longer needed
            self._delete_upload(file_id)

    def _run_prediction(
        self, digits: np.ndarray, digits_input: str, deadline: Deadline, stop: threading.Event
    ) -> list[np.ndarray | str]:
        """Create the prediction of ``digits`` (sent as ``digits_input``), wait for it, cancel it when abandoned."""
        request_id = f"digitcloud-{uuid.uuid4().hex}"
        payload = {"digits": digits_input, "request_id": request_id}
        prediction = self._create(payload, request_id, deadline, len(digits), stop)
        prediction_id = str(prediction["id"])
        self._in_flight.add(prediction_id, self._cancel_url(prediction), stop)
        try:
            prediction = self._wait(prediction, deadline, stop, len(digits))
        except BaseException as exc:
            cancel_url = self._in_flight.pop(prediction_id)  # None: cancel_all already cancelled it
            late = self._cancel(cancel_url, len(digits)) if cancel_url is not None else None
            # A success that crossed our cancel is paid for and valid: the first valid result wins.
            if not (isinstance(exc, CloudUnavailableError) and not stop.is_set() and _succeeded(late)):
                raise
            assert late is not None
            prediction = late
        else:
            self._in_flight.pop(prediction_id)
        return self._outcome(prediction, len(digits))

    def cancel_all(self, stop: threading.Event | None = None) -> None:
        """Cancel the predictions in flight for the call that set ``stop`` (all when ``None``): one
        ``CANCEL_SECONDS`` budget for them all, so Ctrl-C during a 429 storm returns in about that long
        however many were in flight (each still gets one try)."""
        deadline = Deadline(CANCEL_SECONDS)
        for url in self._in_flight.take(stop):
            self._cancel(url, deadline=deadline)

    def _cancel_url(self, prediction: dict[str, Any]) -> str:
        url = _urls(prediction).get("cancel")
        if isinstance(url, str) and self._same_host(url):
            return url
        return f"{self.base_url}/v1/predictions/{quote(str(prediction['id']), safe='')}/cancel"

    def _cancel(self, url: str, count: int = 0, deadline: Deadline | None = None) -> dict[str, Any] | None:
        """Cancel (3 tries within ``deadline``, by default ~10 s, breaker or not: a cancel only saves
        money). Returns the prediction as the cancel saw it, or ``None``; when every try fails (no
        answer, 5xx, or 429: throttled, so not cancelled) it logs the id, and the create's
        ``Cancel-After`` ends the prediction. Waits between tries are at most ``CANCEL_PAUSE``, a
        ``Retry-After`` included: the caller is waiting on Ctrl-C."""
        deadline = deadline or Deadline(CANCEL_SECONDS)
        reason = "no attempt made"
        for attempt in range(1, 4):
            retry_after = None
            try:
                resp = self._request(
                    "POST", url, deadline, read_timeout=5.0, max_bytes=BODY_LIMIT + BODY_PER_DIGIT * count, gate=False
                )
                if resp.status_code < 500 and resp.status_code != 429:
                    try:
                        reply = read_json(resp)
                    except ValueError:
                        return None
                    return reply if isinstance(reply, dict) else None
                reason = f"HTTP {resp.status_code}"
                retry_after = parse_retry_after(resp.headers.get("Retry-After"), self.wall_clock)
            except requests.RequestException as exc:
                reason = type(exc).__name__
            if attempt == 3 or deadline.expired():
                break
            self.policy.sleep(min(self.policy.backoff(attempt, retry_after), CANCEL_PAUSE, deadline.remaining()))
        logger.warning(
            "could not cancel Replicate prediction %s (%s); its Cancel-After deadline will end it",
            url.rstrip("/").split("/")[-2],
            reason,
        )
        return None

    def _upload(self, blob: bytes, deadline: Deadline, stop: threading.Event) -> tuple[str, str | None]:
        """POST /v1/files: the file's URL for the prediction's input, and its id for the delete (``None``
        when the answer has none). A duplicate upload costs storage, not compute, so every failure is retried.

        An attempt that may have stored the file without saying so (no answer after sending, a 5xx,
        an unreadable 2xx) leaves a file whose id we never learn: it is counted and, at the end, named
        in one warning (Replicate deletes such a file when it expires). A 2xx with an id but no
        ``urls.get`` is deleted at once."""
        reason = "no attempt made"
        maybe_stored = 0
        try:
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
                        uploaded = read_json(resp)
                        url = _urls(uploaded).get("get")
                        file_id = uploaded.get("id") if isinstance(uploaded, dict) else None
                        file_id = file_id if isinstance(file_id, str) and file_id else None
                        if isinstance(url, str) and url:
                            return url, file_id
                        reason = "the files API answered without urls.get"
                        if file_id is None:
                            maybe_stored += 1
                        else:
                            self._delete_upload(file_id)
                    else:
                        if resp.status_code not in (429,) and resp.status_code < 500:
                            self._raise_for_status(resp, "a file upload")
                        reason = f"HTTP {resp.status_code}"
                        maybe_stored += resp.status_code >= 500
                        retry_after = parse_retry_after(resp.headers.get("Retry-After"), self.wall_clock)
                except (requests.RequestException, ValueError) as exc:  # ValueError: an unreadable 2xx body
                    reason = type(exc).__name__
                    maybe_stored += isinstance(exc, ValueError) or may_have_reached_server(exc)
                if not self._pause(attempt, retry_after, deadline, stop):
                    break
            raise CloudUnavailableError(f"could not upload the batch to Replicate ({reason})")
        finally:
            if maybe_stored:
                logger.warning(
                    "%d upload attempt(s) got no usable answer and may have stored a file whose id is unknown, "
                    "so it cannot be deleted; Replicate deletes it when it expires",
                    maybe_stored,
                )

    def _delete_upload(self, file_id: str | None) -> None:
        """DELETE /v1/files/{id}: one try of at most ~5 s, and none while the breaker is not closed. A file
        left behind costs storage, not compute, until Replicate expires it (its ``expires_at``)."""
        if file_id is None:
            return
        reason = "Replicate is failing (circuit not closed)"
        if self.breaker.state == "closed":
            try:
                url = f"{self.base_url}/v1/files/{quote(file_id, safe='')}"
                resp = self._request("DELETE", url, Deadline(5.0), read_timeout=5.0, gate=False)
                if resp.status_code in (200, 204, 404):  # 404: already gone
                    return
                reason = f"HTTP {resp.status_code}"
            except requests.RequestException as exc:
                reason = type(exc).__name__
        logger.warning(
            "could not delete uploaded file %s (%s); Replicate deletes it when it expires",
            self._token.redact(file_id[:64]),
            reason,
        )

    def _pause(
        self, attempt: int, retry_after: float | None, deadline: Deadline, stop: threading.Event | None = None
    ) -> bool:
        """Sleep before the next attempt; False when attempts or the deadline are spent. With ``stop``,
        the sleep ends when it is set, and this raises ``CloudUnavailableError`` (the caller gave up)."""
        if attempt >= self.policy.attempts:
            return False
        delay = self.policy.backoff(attempt, retry_after)
        if not deadline.fits(delay):
            return False
        if stop is None:
            self.policy.sleep(delay)
        elif not self.policy.wait(delay, stop):
            raise _gave_up("stopped retrying")
        return True

    def _hold(self, deadline: Deadline, stop: threading.Event) -> None:
        """Wait out a ``Retry-After`` that an earlier create (of any chunk) was given."""
        hold = self._hold_until - time.monotonic()
        if hold <= 0:
            return
        if not deadline.fits(hold):
            raise CloudUnavailableError(f"Replicate asked for {hold:.0f} s of quiet, past this batch's deadline")
        if not self.policy.wait(hold, stop):
            raise _gave_up()

    def _create(
        self, payload: dict[str, Any], request_id: str, deadline: Deadline, count: int, stop: threading.Event
    ) -> dict[str, Any]:
        """Create the prediction: retried while no prediction can exist twice (an ambiguous failure is
        looked up by ``request_id`` first). Once ``stop`` is set, no further create is sent and any
        wait between tries ends: this raises ``CloudUnavailableError`` (the caller gave up)."""
        url = self.base_url + self.target.create_path()
        body = self.target.body(payload)
        sent_at = self.wall_clock()  # before the first try: any try may have made the prediction
        reason = "no attempt made"
        unreachable = 0
        for attempt in range(1, self.policy.attempts + 1):
            if stop.is_set():
                raise _gave_up()
            self._hold(deadline, stop)
            wait = int(max(1, min(MAX_WAIT, deadline.remaining() - 2)))
            headers = {"Prefer": f"wait={wait}", "Cancel-After": f"{max(5, int(deadline.remaining()) + 1)}s"}
            retry_after = None
            ambiguous = False
            try:
                resp = self._request(
                    "POST",
                    url,
                    deadline,
                    json=body,
                    headers=headers,
                    read_timeout=wait + READ_MARGIN,
                    max_bytes=BODY_LIMIT + BODY_PER_DIGIT * count,
                )
            except requests.exceptions.SSLError as exc:
                host = urlsplit(self.base_url).netloc
                raise CloudUnavailableError(f"TLS failure talking to {host}, not retried: {_reason(exc)}") from None
            except requests.RequestException as exc:
                reason = f"{_reason(exc)} creating the prediction"
                ambiguous = may_have_reached_server(exc)
                unreachable += not ambiguous
            else:
                if resp.status_code in (200, 201, 202):
                    try:
                        prediction = read_json(resp)
                        if isinstance(prediction, dict) and prediction.get("id"):
                            return prediction
                    except ValueError:
                        pass
                    reason, ambiguous = f"an unreadable {resp.status_code} body", True
                elif resp.status_code == 429 or resp.status_code >= 500:
                    reason, ambiguous = f"HTTP {resp.status_code}", resp.status_code != 429
                    retry_after = parse_retry_after(resp.headers.get("Retry-After"), self.wall_clock)
                    if retry_after is not None:  # the whole backend holds off, not just this chunk
                        pause = min(retry_after, self.policy.retry_after_cap)
                        self._hold_until = max(self._hold_until, time.monotonic() + pause)
                else:
                    self._raise_for_status(resp, f"creating a prediction of {self.target}")
            if ambiguous:
                if deadline.expired():
                    break  # no time to look for it; its Cancel-After ends it if it exists
                # The prediction may exist: find it by our request_id before creating another.
                found = self._find(request_id, sent_at, deadline)
                if found is not None:
                    return found
            if unreachable >= PRE_SEND_ATTEMPTS or not self._pause(attempt, retry_after, deadline, stop):
                break
        raise CloudUnavailableError(f"could not create a prediction of {self.target} ({reason})")

    def _find(self, request_id: str, sent_at: float, deadline: Deadline) -> dict[str, Any] | None:
        """The prediction whose input carries ``request_id``, from the prediction list; ``None`` only
        when the whole list since the create was read and it is not there.

        The answer carries only the prediction's ``id`` and ``urls`` (a page is parsed without its
        inputs and outputs) and no status: polling it gives its state and output. Paging stops at
        the match. When ``LIST_PAGES`` pages or ``LIST_BODY_LIMIT`` bytes are read with more to come,
        or ``next`` points off the API host, this raises ``CloudUnavailableError``: the prediction
        may be on a page not read, and creating another could run the batch twice."""
        url, params = f"{self.base_url}/v1/predictions", {"created_after": _iso(self._list_since(sent_at))}
        budget = LIST_BODY_LIMIT
        for _ in range(LIST_PAGES):
            page, size = self._fetch_json(url, deadline, params=params, max_bytes=budget, listing=True)
            budget -= size
            results = page.get("results")
            for prediction in results if isinstance(results, list) else []:
                if _request_id(prediction) != request_id:
                    continue
                pid = prediction.get("id")
                if not isinstance(pid, str) or not pid:
                    raise CloudUnavailableError("the prediction list shows this batch's prediction without an id")
                return {"id": pid, "urls": _urls(prediction), "status": None}
            following = page.get("next")
            if not following:
                return None  # the whole window was read
            if not isinstance(following, str) or not self._same_host(following) or budget <= 0 or deadline.expired():
                break
            url, params = following, {}
        raise CloudUnavailableError(
            "could not read the whole prediction list to tell whether an unanswered create made a prediction; "
            "not creating another"
        )

    def _list_since(self, sent_at: float) -> float:
        """Where the listing starts: ``LIST_WINDOW`` s before the create on the server's clock. With
        that clock still unknown (no answer yet), a free ``GET /v1/account`` shows it; failing that,
        ``CLOCK_SKEW`` s before the create on ours."""
        if self._server_ahead is None:
            self._probe()  # its Date header is observed like any other
        ahead = self._server_ahead
        return sent_at - CLOCK_SKEW if ahead is None else sent_at + ahead - LIST_WINDOW

    def _get_json(
        self,
        url: str,
        deadline: Deadline,
        params: dict[str, str] | None = None,
        max_bytes: int | None = None,
        stop: threading.Event | None = None,
    ) -> dict[str, Any]:
        """A GET retried with backoff (GETs are safe to repeat) until it answers or time runs out
        (or ``stop`` is set: see ``_pause``)."""
        return self._fetch_json(url, deadline, params=params, max_bytes=max_bytes, stop=stop)[0]

    def _fetch_json(
        self,
        url: str,
        deadline: Deadline,
        params: dict[str, str] | None = None,
        max_bytes: int | None = None,
        listing: bool = False,
        stop: threading.Event | None = None,
    ) -> tuple[dict[str, Any], int]:
        """``_get_json``, also returning the bytes read in all tries; ``listing``: the answer is a page
        of the prediction list, parsed as it arrives by ``list_page.ListPageReader``."""
        reason = "no attempt made"
        size = 0
        for attempt in range(1, self.policy.attempts + 1):
            retry_after = None
            try:
                page = list_page.ListPageReader() if listing else None
                resp = self._request("GET", url, deadline, params=params, max_bytes=max_bytes, reader=page or read_body)
                size += page.size if page else len(resp.content)
                if resp.status_code == 200:
                    payload = page.result() if page else read_json(resp)
                    if isinstance(payload, dict):
                        return payload, size
                    reason = "a body that is not a JSON object"
                elif resp.status_code == 429 or resp.status_code >= 500:
                    reason = f"HTTP {resp.status_code}"
                    retry_after = parse_retry_after(resp.headers.get("Retry-After"), self.wall_clock)
                else:
                    self._raise_for_status(resp, "reading a prediction")
            except (requests.RequestException, ValueError) as exc:
                reason = type(exc).__name__
            if not self._pause(attempt, retry_after, deadline, stop):
                break
        raise CloudUnavailableError(f"Replicate did not answer a GET ({reason})")

    def _wait(
        self, prediction: dict[str, Any], deadline: Deadline, stop: threading.Event, count: int
    ) -> dict[str, Any]:
        """Poll until the prediction is terminal, the deadline passes or the caller gives up (then
        the caller cancels it). The id and poll URL come from the create's answer; a poll answer
        without them (or with a ``urls.get`` off the API host) keeps the ones known."""
        prediction_id = str(prediction["id"])
        poll_url = f"{self.base_url}/v1/predictions/{quote(prediction_id, safe='')}"
        poll = 0
        while prediction.get("status") not in TERMINAL:
            if stop.is_set():
                raise _gave_up(f"prediction {prediction_id} abandoned")
            poll += 1
            delay = min(2.0, 0.1 * 2 ** min(poll, 5))
            if not deadline.fits(delay):
                raise CloudUnavailableError(
                    f"prediction {prediction_id} still {prediction.get('status')!r} at the deadline "
                    f"({self.timeout:.0f} s)"
                )
            if not self.policy.wait(delay, stop):
                continue  # the caller gave up: the check at the top raises
            get_url = _urls(prediction).get("get")
            if isinstance(get_url, str) and self._same_host(get_url):
                poll_url = get_url
            prediction = self._get_json(poll_url, deadline, max_bytes=BODY_LIMIT + BODY_PER_DIGIT * count, stop=stop)
            prediction.setdefault("id", prediction_id)  # for messages about it
        return prediction

    @staticmethod
    def _outcome(prediction: dict[str, Any], count: int) -> list[np.ndarray | str]:
        status = prediction.get("status")
        if status == "succeeded":
            return contract.parse_output(prediction.get("output"), count)
        if status == "failed":
            raise PredictionFailedError(f"prediction {prediction.get('id')} failed: {prediction.get('error')}")
        raise CloudUnavailableError(f"prediction {prediction.get('id')} ended {status!r}")


def _gave_up(what: str = "no prediction created") -> CloudUnavailableError:
    return CloudUnavailableError(f"{what}: the caller gave up")


def _succeeded(prediction: dict[str, Any] | None) -> bool:
    return prediction is not None and prediction.get("status") == "succeeded"


def _urls(prediction: Any) -> dict[str, Any]:
    """A prediction's ``urls`` object, or ``{}`` when the answer has none (or something else there)."""
    urls = prediction.get("urls") if isinstance(prediction, dict) else None
    return urls if isinstance(urls, dict) else {}


def _request_id(prediction: Any) -> Any:
    given = prediction.get("input") if isinstance(prediction, dict) else None
    return given.get("request_id") if isinstance(given, dict) else None


def _iso(timestamp: float) -> str:
    """``2026-11-27T18:00:00.000000Z``: microseconds always written, so that it also sorts as text."""
    when = dt.datetime.fromtimestamp(timestamp, dt.timezone.utc)
    return when.isoformat(timespec="microseconds").replace("+00:00", "Z")


def _detail(resp: requests.Response) -> str:
    try:
        payload = read_json(resp)
        detail = payload.get("detail") if isinstance(payload, dict) else None
    except ValueError:
        detail = None
    text = str(detail) if detail else resp.text
    return text[:200]
