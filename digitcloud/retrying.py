"""The one place that decides how long to wait before trying again, and when to stop.

Capped exponential backoff with full jitter; a server's ``Retry-After`` is honoured but capped;
every wait fits inside an overall ``Deadline``; a ``CircuitBreaker`` stops all requests to a service
that keeps failing. Sleep, clock and randomness are injectable, so tests run instantly and
deterministically.
"""

from __future__ import annotations

import datetime
import email.utils
import random
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how long to retry one request."""

    attempts: int = 5
    """Tries in all, the first included."""

    base_delay: float = 0.25
    """Backoff before the second try (seconds); doubles per try before jitter."""

    max_delay: float = 8.0
    """Cap on one backoff (seconds)."""

    retry_after_cap: float = 30.0
    """Cap on a server's ``Retry-After`` (seconds): a server cannot park us for hours."""

    sleep: Callable[[float], None] = field(default=time.sleep, repr=False, compare=False)
    rng: random.Random = field(default_factory=random.Random, repr=False, compare=False)

    def backoff(self, retry: int, retry_after: float | None = None) -> float:
        """Seconds to wait before retry number ``retry`` (1 = the second try)."""
        ceiling = min(self.max_delay, self.base_delay * 2 ** (retry - 1))
        delay = self.rng.uniform(0, ceiling)  # full jitter: clients retrying together spread out
        if retry_after is not None:
            delay = max(delay, min(retry_after, self.retry_after_cap))
        return delay

    def wait(self, delay: float, stop: threading.Event) -> bool:
        """Sleep ``delay`` seconds unless ``stop`` is set; False when it is (before or during).

        The default sleep wakes the moment ``stop`` is set (a call that gives up: Ctrl-C, an error, a
        ``classify_iter`` left early, never waits out a 30 s ``Retry-After``); an injected ``sleep``
        (tests) runs whole, then ``stop`` is checked."""
        if stop.is_set():
            return False
        if self.sleep is time.sleep:
            return not stop.wait(delay)
        self.sleep(delay)
        return not stop.is_set()


def parse_retry_after(value: str | None, now: Callable[[], float] = time.time) -> float | None:
    """``Retry-After`` as seconds: delta-seconds or an HTTP date; ``None`` when absent or unreadable.

    Delta-seconds are ASCII digits only: ``str.isdigit`` is true for ``"²"`` (which ``float``
    refuses) and ``"٣"`` (which it reads), and neither is HTTP."""
    if not value:
        return None
    value = value.strip()
    if value.isascii() and value.isdecimal():
        return float(value)
    when = parse_http_date(value)
    return None if when is None else max(0.0, when - now())


def parse_http_date(value: str | None) -> float | None:
    """An HTTP date (``Date``, ``Retry-After``) as a POSIX timestamp; ``None`` when unreadable."""
    if not value:
        return None
    try:
        when = email.utils.parsedate_to_datetime(value.strip())
        if when.tzinfo is None:  # "-0000": UTC with no zone claimed, never the local time
            when = when.replace(tzinfo=datetime.timezone.utc)
        return when.timestamp()
    except (TypeError, ValueError, IndexError, OverflowError):
        return None


class Deadline:
    """A point in time every attempt, wait and poll of one call must finish by."""

    def __init__(self, seconds: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self.seconds = seconds
        self.expires = clock() + seconds

    def remaining(self) -> float:
        return max(0.0, self.expires - self.clock())

    def expired(self) -> bool:
        return self.remaining() <= 0.0

    def fits(self, delay: float) -> bool:
        """Whether waiting ``delay`` seconds still leaves time for another attempt."""
        return delay < self.remaining()


class CircuitBreaker:
    """Stops sending requests to a service that keeps failing; one free probe finds out when it is back.

    closed: requests flow and their outcomes are recorded. It opens after ``consecutive`` pre-send
    failures in a row (DNS, refused, connect timeout: the host is not there), or when at least
    ``failure_rate`` of the last ``window`` requests failed, once ``min_calls`` are recorded.
    Only unavailability counts (transport errors, timeouts, 5xx, 429), never a 4xx answer.
    open: every request is refused at once, without touching the network, for ``reset`` seconds
    (doubling after each failed probe, up to ``max_reset``).
    half-open: the first caller after that runs the probe (a free request, never a billed create);
    its success closes the breaker, its failure opens it again. Other callers are refused meanwhile.

    The lock guards the counters only, never a request: calls are not serialised (pybreaker's are).
    """

    def __init__(
        self,
        *,
        consecutive: int = 5,
        window: int = 20,
        min_calls: int = 10,
        failure_rate: float = 0.5,
        reset: float = 30.0,
        max_reset: float = 300.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.consecutive = consecutive
        self.window = window
        self.min_calls = min_calls
        self.failure_rate = failure_rate
        self.base_reset = reset
        self.max_reset = max_reset
        self.clock = clock
        self._lock = threading.Lock()
        self._state = "closed"
        self._outcomes: deque[bool] = deque(maxlen=window)
        self._pre_send_failures = 0
        self._opened_at = 0.0
        self._reset = reset
        self.opened = 0
        """How many times the breaker has opened (for tests and reports)."""

    @property
    def state(self) -> str:
        """``"closed"``, ``"open"`` or ``"half-open"``."""
        return self._state

    def retry_in(self) -> float:
        """Seconds until an open breaker lets a probe through."""
        return max(0.0, self._opened_at + self._reset - self.clock())

    def allow(self) -> str:
        """``"pass"`` (send), ``"probe"`` (the caller must probe, then call ``probed``) or ``"refuse"``."""
        with self._lock:
            if self._state == "closed":
                return "pass"
            if self._state == "open" and self.clock() >= self._opened_at + self._reset:
                self._state = "half-open"
                return "probe"
            return "refuse"

    def record(self, ok: bool, *, pre_send: bool = False) -> None:
        """The outcome of one request sent while closed (outcomes arriving while open are stale)."""
        with self._lock:
            if self._state != "closed":
                return
            self._outcomes.append(ok)
            self._pre_send_failures = 0 if ok else self._pre_send_failures + (1 if pre_send else 0)
            failures = self._outcomes.count(False)
            if self._pre_send_failures >= self.consecutive or (
                len(self._outcomes) >= self.min_calls and failures >= self.failure_rate * len(self._outcomes)
            ):
                self._open()

    def trip(self) -> None:
        """Open now: a failure that will not go away by retrying (an untrusted TLS certificate)."""
        with self._lock:
            if self._state == "closed":
                self._open()

    def run_probe(self, probe: Callable[[], bool]) -> bool:
        """Run the half-open probe and record its outcome. Whatever it raises (Ctrl-C, a bug) counts as
        a failed probe and propagates: the breaker is never left half-open, refusing everyone."""
        ok = False
        try:
            ok = probe()
        finally:
            self.probed(ok)
        return ok

    def probed(self, ok: bool) -> None:
        """The half-open probe's outcome."""
        with self._lock:
            if ok:
                self._state = "closed"
                self._reset = self.base_reset
            else:
                self._reset = min(self.max_reset, self._reset * 2)
                self._open()

    def _open(self) -> None:
        self._state = "open"
        self._opened_at = self.clock()
        self._outcomes.clear()
        self._pre_send_failures = 0
        self.opened += 1
