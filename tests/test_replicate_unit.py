"""Data-plane functions of the Replicate backend, with `responses` (no sockets)."""

from __future__ import annotations

import random
import re

import numpy as np
import pytest
import requests
import responses
import urllib3.exceptions

from digitcloud.errors import AuthenticationError, CloudError
from digitcloud.replicate import ReplicateBackend, Secret, Target, _sent
from digitcloud.retrying import Deadline, RetryPolicy, parse_retry_after

BASE = "https://api.example.test"
TOKEN = "r8_unit_SENTINEL_token"


def backend(**kwargs: object) -> ReplicateBackend:
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
    refused = urllib3.exceptions.NewConnectionError(pool, "refused")
    assert not _sent(requests.ConnectTimeout())
    assert not _sent(requests.ConnectionError(urllib3.exceptions.MaxRetryError(pool, "/", refused)))
    assert _sent(requests.ConnectionError(urllib3.exceptions.ProtocolError("Connection aborted")))
    assert _sent(requests.ReadTimeout())


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
    assert re.fullmatch(r"wait=\d+", request.headers["Prefer"])
    assert re.fullmatch(r"\d+s", request.headers["Cancel-After"]) and int(request.headers["Cancel-After"][:-1]) >= 5
    assert TOKEN not in request.url and TOKEN.encode() not in request.body


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
