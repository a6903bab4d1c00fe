"""The one place that decides how long to wait before trying again, and when to stop.

Capped exponential backoff with full jitter; a server's ``Retry-After`` is honoured but capped;
every wait fits inside an overall ``Deadline``. Sleep, clock and randomness are injectable, so
tests run instantly and deterministically.
"""

from __future__ import annotations

import email.utils
import random
import time
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


def parse_retry_after(value: str | None, now: Callable[[], float] = time.time) -> float | None:
    """``Retry-After`` as seconds: delta-seconds or an HTTP date; ``None`` when absent or unreadable."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - now())


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
