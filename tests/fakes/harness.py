"""What every fault test against the fake Replicate server shares: the sentinel token, instant
backoff, a local backend that answers with the server's oracle (so every answer can be checked
exactly, whichever backend gave it), and the invariants checked after each scenario."""

from __future__ import annotations

import random
import traceback
from collections.abc import Iterable
from typing import Any

import numpy as np
import pytest

from digitcloud import Client
from digitcloud.errors import DigitCloudError
from digitcloud.local import LocalBackend
from digitcloud.replicate import ReplicateBackend
from digitcloud.retrying import RetryPolicy
from tests.fakes.replicate_server import FakeReplicate, oracle

TOKEN = "r8_SENTINEL_do_not_leak_0123456789abcdef"


def start(monkeypatch: pytest.MonkeyPatch, **kwargs: Any) -> FakeReplicate:
    """A fake Replicate on loopback, with the client's environment pointing at it."""
    server = FakeReplicate(token=TOKEN, **kwargs)
    monkeypatch.setenv("REPLICATE_API_TOKEN", TOKEN)
    monkeypatch.setenv("REPLICATE_BASE_URL", server.url)
    return server


def quick(client: Client, sleeps: list[float] | None = None, seed: int = 0) -> Client:
    """Backoff sleeps recorded instead of slept (deadlines still run on the real clock)."""
    assert isinstance(client._cloud, ReplicateBackend)
    client._cloud.policy = RetryPolicy(
        sleep=(sleeps.append if sleeps is not None else _no_sleep), rng=random.Random(seed)
    )
    return client


def _no_sleep(seconds: float) -> None:
    pass


def oracle_locally(monkeypatch: pytest.MonkeyPatch) -> None:
    """The local fallback answers with the fake server's oracle: fast, and checkable digit by digit."""
    monkeypatch.setattr(LocalBackend, "predict", lambda self, digits: oracle(digits))


def expected(digits: np.ndarray) -> list[int]:
    return [int(d) for d in oracle(digits).argmax(1)]


def check_results(results: list[Any], digits: np.ndarray) -> None:
    """One result per input, in order; each a correct digit or a named digitcloud error."""
    assert len(results) == len(digits) and [r.index for r in results] == list(range(len(digits)))
    want = expected(digits)
    for r in results:
        if r.ok:
            assert r.digit == want[r.index] and r.backend in ("replicate", "local")
        else:
            assert isinstance(r.error, DigitCloudError)


def check_ledger(fake: FakeReplicate, *, settle: float = 2.0, files_kept: int = 0) -> None:
    """No request_id became two predictions; nothing is left running; every uploaded file but
    ``files_kept`` was deleted; every create carried Cancel-After and Prefer: wait; every body the
    server sent or got fits Replicate's spec; the token travelled in the Authorization header only."""
    assert all(count == 1 for count in fake.predictions_per_request_id().values()), "a batch ran twice"
    assert fake.settle(settle) == [], "predictions left running"
    assert len(fake.files) == files_kept, "uploaded files left behind"
    assert fake.schema_errors == [], "a body broke Replicate's OpenAPI spec"
    for create in fake.accepted_creates:
        assert create.get("Cancel-After", "").endswith("s") and int(create["Cancel-After"][:-1]) >= 5
        assert create.get("Prefer", "").startswith("wait=")
    for request in fake.requests:
        assert TOKEN not in request["path"] and TOKEN.encode() not in request["body"]
        assert all(TOKEN not in v for k, v in request["headers"].items() if k.lower() != "authorization")


def shown(*things: Any) -> str:
    """Everything a user or a log could see of ``things``: str, repr, and whole tracebacks of errors."""
    parts = []
    for thing in things:
        parts += [str(thing), repr(thing)]
        if isinstance(thing, BaseException):
            parts.append("".join(traceback.format_exception(thing)))
    return "\n".join(parts)


def leaks(texts: Iterable[str]) -> list[str]:
    return [t for t in texts if TOKEN in t or TOKEN[3:] in t]
