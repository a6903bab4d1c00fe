"""What the cloud backends share: a pooled HTTP session, the record of predictions in flight,
whether a failed request may have reached the server, and reading a response body (size cap,
wall-clock limit, JSON that cannot crash the caller)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import requests
import urllib3.exceptions

BODY_CHUNK = 64 * 1024


class ResponseTooLargeError(requests.ConnectionError):
    """The body passed its size limit: read no further, treat it as unreadable."""


class ResponseTooSlowError(requests.ReadTimeout):
    """The body was still arriving at the deadline (a trickle never trips the read timeout)."""


def may_have_reached_server(exc: requests.RequestException) -> bool:
    """Whether the request may have reached the server (so retrying it blindly could duplicate it)."""
    if isinstance(exc, (requests.ConnectTimeout, requests.exceptions.SSLError)):
        return False  # a failed TLS handshake sends no HTTP
    if isinstance(exc, requests.ConnectionError):
        reason = exc.args[0] if exc.args else None
        reason = getattr(reason, "reason", reason)
        return not isinstance(reason, (urllib3.exceptions.NewConnectionError, urllib3.exceptions.NameResolutionError))
    return True


def pooled_session(connections: int) -> requests.Session:
    """A ``requests.Session`` keeping up to ``connections`` (+2 for polls and cancels) alive per host."""
    session = requests.Session()
    adapter = requests.adapters.HTTPAdapter(pool_connections=4, pool_maxsize=max(1, connections) + 2)
    session.mount("https://", adapter)
    session.mount("http://", adapter)
    return session


def declared_length(resp: requests.Response) -> int | None:
    """``Content-Length`` as an int, or ``None`` unless it is plain ASCII digits (``"²"`` and ``"٣"``
    pass ``str.isdigit``, and ``int`` refuses the first and reads the second)."""
    value = resp.headers.get("Content-Length", "").strip()
    return int(value) if value.isascii() and value.isdecimal() else None


def iter_body(resp: requests.Response, max_bytes: int, until: float) -> Iterator[bytes]:
    """``resp``'s body (sent with ``stream=True``) as it arrives, ``BODY_CHUNK`` at most at a time,
    refusing one over ``max_bytes`` or still arriving at ``until`` (``time.monotonic()``); raises
    ``requests`` exceptions only.

    requests' read timeout is a limit on the silence between bytes, not on the whole answer, and
    it reads without a size cap; so the body is read here, chunk by chunk, with both limits."""
    declared = declared_length(resp)
    if declared is not None and declared > max_bytes:
        raise ResponseTooLargeError(f"a {declared:,}-byte response is over the {max_bytes:,}-byte limit")
    raw = resp.raw
    read = getattr(raw, "read1", None) or raw.read  # read1 (urllib3 >= 2.3): what has arrived, without waiting
    size = 0
    try:
        while chunk := read(BODY_CHUNK, decode_content=True):
            size += len(chunk)
            if size > max_bytes:
                raise ResponseTooLargeError(f"the response passed the {max_bytes:,}-byte limit; not read further")
            if time.monotonic() > until:
                raise ResponseTooSlowError("the response was still arriving at the deadline")
            yield chunk
    except requests.RequestException:
        raise
    except urllib3.exceptions.ReadTimeoutError as exc:
        raise requests.ReadTimeout(f"reading the response timed out: {exc}") from None
    except (urllib3.exceptions.HTTPError, OSError) as exc:
        raise requests.ConnectionError(f"reading the response failed: {reason(exc)}") from None


def read_body(resp: requests.Response, max_bytes: int, until: float) -> None:
    """Read ``resp``'s whole body into it, with ``iter_body``'s limits and exceptions."""
    body = bytearray()
    for chunk in iter_body(resp, max_bytes, until):
        body += chunk
    # kept as the bytearray (no second copy of a page that can be tens of MB): requests decodes
    # ``.text`` and ``.json()`` from it as it would from bytes
    resp._content = body  # type: ignore[assignment]
    resp._content_consumed = True


def read_json(resp: requests.Response) -> Any:
    """The body as JSON. Every body that does not decode raises ``ValueError``: malformed, not
    text, or nested deeper than the interpreter's recursion limit (``[[[[…`` raises
    ``RecursionError`` in the json module, which is not a ``ValueError``)."""
    try:
        return resp.json()
    except RecursionError:
        raise ValueError("the JSON body is nested too deeply to decode") from None


def reason(exc: BaseException) -> str:
    """A short cause for a message: the exception's type and its innermost reason (never headers)."""
    inner: BaseException | None = exc
    while inner is not None and inner.args and isinstance(inner.args[0], BaseException):
        inner = inner.args[0]
    inner = getattr(inner, "reason", inner) or inner
    text = str(inner)
    return f"{type(exc).__name__}: {text[:200]}" if text else type(exc).__name__


class InFlight:
    """The predictions a backend has started and not yet seen end, each tagged with the stop event
    of the classify call that started it, so that call's give-up cancels exactly its own."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._entries: dict[str, tuple[str, threading.Event]] = {}  # id -> (cancel handle, stop)

    def add(self, prediction_id: str, cancel: str, stop: threading.Event) -> None:
        with self._lock:
            self._entries[prediction_id] = (cancel, stop)

    def pop(self, prediction_id: str) -> str | None:
        """Its cancel handle, or ``None`` when ``take`` already handed it over for cancelling."""
        with self._lock:
            entry = self._entries.pop(prediction_id, None)
        return entry[0] if entry else None

    def take(self, stop: threading.Event | None) -> list[str]:
        """Remove and return the cancel handles started under ``stop`` (all when ``None``)."""
        with self._lock:
            mine = [pid for pid, (_, event) in self._entries.items() if stop is None or event is stop]
            return [self._entries.pop(pid)[0] for pid in mine]
