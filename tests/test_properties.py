"""Property tests: the client against the loopback Replicate API under random fault schedules,
batch sizes, concurrency, backends and bad items. After every run, whatever happened:

1. every input has exactly one result, in input order: a correct digit (the fake model and the
   local fallback share an oracle, so each answer is checked exactly) or a named digitcloud error;
2. no chunk became two predictions (each create carries a request_id; the server counts them);
3. no prediction the client learned of is left running when classify returns (unless all three
   cancels failed, and then its id is logged), and nothing at all is running moments later;
4. the token appears nowhere but the Authorization header: not in URLs, bodies or other headers,
   log records (urllib3's DEBUG included), warnings, results, errors and their tracebacks, reprs.

With several chunks in flight, which chunk meets which fault is a race: the invariants hold for
every interleaving, so they are all that is asserted.
"""

from __future__ import annotations

import logging
import traceback
import warnings
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from digitcloud import Client, CloudError, DigitCloudError, InputError
from digitcloud.replicate import ReplicateBackend
from tests.conftest import stroke_digits
from tests.fakes.harness import TOKEN, expected, oracle_locally, quick
from tests.fakes.replicate_server import TERMINAL, FakeReplicate

FAULTS = {
    "create": [
        "ok",
        "429",
        "429:none",
        "500_before",
        "503_before:0",
        "reset_before",
        "500_after",
        "503_after",
        "reset_after",
        "malformed_after",
        "deep_after",
        "fail",
        "abort",
        "cancel_by_server",
        "short_output",
        "unknown_status:queued",
        "422",
    ],
    "get": ["ok", "drop", "500", "deep"],
    "list": ["ok", "500"],
    "cancel": ["ok", "500", "drop"],
}
INJECTED = sorted({f"{endpoint}:{fault}" for endpoint, faults in FAULTS.items() for fault in faults if fault != "ok"})

DIGITS = stroke_digits(40, seed=71)[0]
BAD = np.full((28, 28), np.nan)  # a per-item InputError, caught before any request


class Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))


@st.composite
def scenarios(draw: st.DrawFn) -> dict[str, Any]:
    n = draw(st.integers(0, len(DIGITS)))
    return {
        "n": n,
        "bad": draw(st.sets(st.integers(0, max(0, n - 1)), max_size=3)) if n else set(),
        "batch_size": draw(st.integers(1, 16)),
        "max_concurrency": draw(st.integers(1, 4)),
        "backend": draw(st.sampled_from(["auto", "cloud"])),
        "schedule": {
            endpoint: draw(st.lists(st.sampled_from(faults), max_size=6)) for endpoint, faults in FAULTS.items()
        },
        "max_wait": draw(st.sampled_from([0.0, 5.0])),  # 0: every create answers "starting" and is polled
        "run_seconds": draw(st.sampled_from([0.0, 0.05])),
        "latency": draw(st.sampled_from([0.0, 0.003])),
    }


def run(scenario: dict[str, Any], consume: int | None = None) -> None:
    """Run one scenario and check every invariant. ``consume``: stop after that many results."""
    n, bad = scenario["n"], scenario["bad"]
    items: list[Any] = [BAD if i in bad else DIGITS[i] for i in range(n)]
    fake = FakeReplicate(
        token=TOKEN,
        max_wait=scenario["max_wait"],
        run_seconds=scenario["run_seconds"],
        latency=scenario["latency"],
    )
    for endpoint, faults in scenario["schedule"].items():
        for fault in faults:
            fake.inject(endpoint, fault)
    records = Records()
    root = logging.getLogger()
    old_level = root.level
    root.addHandler(records)
    root.setLevel(logging.DEBUG)
    raised: BaseException | None = None
    results: list[Any] = []
    try:
        with pytest.MonkeyPatch.context() as mp, warnings.catch_warnings(record=True) as warned:
            warnings.simplefilter("always")
            oracle_locally(mp)
            mp.setenv("REPLICATE_API_TOKEN", TOKEN)
            mp.setenv("REPLICATE_BASE_URL", fake.url)
            client = Client(
                model="owner/digitcloud",
                backend=scenario["backend"],
                batch_size=scenario["batch_size"],
                max_concurrency=scenario["max_concurrency"],
                timeout=20,
            )
            with client:
                quick(client)
                try:
                    if consume is None:
                        results = list(client.classify(items))
                    else:
                        stream = client.classify_iter(items)
                        for r in stream:
                            results.append(r)
                            if len(results) >= consume:
                                break
                        stream.close()  # the consumer stops: what was started is cancelled
                except Exception as exc:  # checked below: nothing in these schedules may raise
                    raised = exc
                running_at_return = [
                    pid for pid in fake.unfinished() if pid in fake.revealed_directly and fake.cancel_attempts(pid) < 3
                ]
                assert isinstance(client._cloud, ReplicateBackend)
                client_repr = repr(client)
        settled = fake.settle(3.0)
    finally:
        root.removeHandler(records)
        root.setLevel(old_level)
        fake.close()

    # 4: the token, nowhere but the Authorization header (checked first: a failing assertion
    # below prints things, and they must not be where the token shows)
    seen = [client_repr, *records.lines, *(str(w.message) for w in warned)]
    for r in results:
        seen += [repr(r), str(r.error or ""), repr(r.error)]
        if r.error is not None:
            seen.append("".join(traceback.format_exception(r.error)))
    if raised is not None:
        seen += [str(raised), repr(raised), "".join(traceback.format_exception(raised))]
    for request in fake.requests:
        seen += [request["path"], request["body"].decode("latin-1")]
        seen += [f"{k}: {v}" for k, v in request["headers"].items() if k.lower() != "authorization"]
    assert not [s for s in seen if TOKEN in s], "the token leaked"

    # 1: exactly one result per input, in order; a correct digit or a named error
    assert raised is None, f"classify raised {type(raised).__name__}: {raised}"
    want = expected(np.stack([DIGITS[i] for i in range(n)])) if n else []
    assert [r.index for r in results] == list(range(len(results)))
    assert len(results) == (n if consume is None else min(n, consume))
    for r in results:
        if r.index in bad:
            assert isinstance(r.error, InputError) and f"item {r.index}" in str(r.error)
        elif r.ok:
            assert r.digit == want[r.index] and r.backend in ("replicate", "local")
        else:
            assert isinstance(r.error, CloudError), r.error
            assert scenario["backend"] == "cloud" or r.error.status == 422  # auto answers locally otherwise
            assert isinstance(r.error, DigitCloudError) and f"item {r.index} " in str(r.error)

    # 2: no chunk ran twice, and no more predictions than chunks with a good item
    assert all(count == 1 for count in fake.predictions_per_request_id().values()), "a chunk ran twice"
    good = [i for i in range(n) if i not in bad]
    chunks = {i // scenario["batch_size"] for i in good}
    assert len(fake.predictions) <= len(chunks)

    # 3: nothing the client knew of left running (unless its cancels all failed, and it said so)
    for pid in running_at_return:
        raise AssertionError(f"prediction {pid} left {fake.predictions[pid]['status']!r} after classify")
    for pid in fake.unfinished():
        if pid in fake.revealed_directly:
            assert any(pid in line for line in records.lines), "a cancel that never got through went unlogged"
    assert settled == [] or all(fake.predictions[p]["status"] in TERMINAL for p in settled), "predictions left running"
    assert fake.schema_errors == []


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scenarios())
def test_any_fault_schedule_keeps_every_invariant(scenario: dict[str, Any]) -> None:
    run(scenario)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scenarios(), st.integers(1, 20))
def test_stopping_early_leaves_nothing_running(scenario: dict[str, Any], consume: int) -> None:
    scenario = {**scenario, "run_seconds": 0.3}  # long enough to still be running when the consumer stops
    run(scenario, consume=consume)
