"""The Replicate backend against a loopback server that speaks Replicate's API, with faults on cue.

Every scenario ends with the invariants: each input has exactly one result, in order; no request_id
was ever turned into two predictions; nothing is left running; the token shows up nowhere but the
Authorization header.
"""

from __future__ import annotations

import logging
import pickle
import random
import traceback
from collections.abc import Iterator

import numpy as np
import pytest

from digitcloud import (
    AuthenticationError,
    Client,
    CloudUnavailableError,
    ConfigError,
    FallbackWarning,
    PredictionFailedError,
    inputs,
)
from digitcloud.replicate import ReplicateBackend, Secret, Target
from digitcloud.retrying import RetryPolicy
from tests.conftest import stroke_digits
from tests.fakes.harness import TOKEN, check_ledger, expected, quick, start
from tests.fakes.replicate_server import FakeReplicate


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeReplicate]:
    """Unlike conftest's ``fake``, the local backend here stays the real model."""
    server = start(monkeypatch)
    yield server
    server.close()


@pytest.fixture(scope="module")
def batch() -> np.ndarray:
    return stroke_digits(60, seed=21)[0]


def check_invariants(fake: FakeReplicate, results: list, n: int) -> None:
    assert len(results) == n and [r.index for r in results] == list(range(n))
    check_ledger(fake, settle=0)  # nothing may be running even for a moment after classify returns


@pytest.mark.parametrize(
    "target",
    [{"model": "owner/digitcloud"}, {"model": "owner/digitcloud:" + "a" * 64}, {"deployment": "owner/digitcloud-prod"}],
    ids=["model", "version", "deployment"],
)
def test_clean_run_in_chunks_with_concurrency(fake: FakeReplicate, batch: np.ndarray, target: dict) -> None:
    with Client(batch_size=16, max_concurrency=3, **target) as client:
        results = client.classify(batch)
    assert [r.digit for r in results] == expected(batch)
    assert {r.backend for r in results} == {"replicate"}
    assert len(fake.predictions) == 4  # 60 digits in chunks of 16
    paths = {r["path"] for r in fake.requests if r["method"] == "POST"}
    want = {
        "model": "/v1/models/owner/digitcloud/predictions",
        "version": "/v1/predictions",
        "deployment": "/v1/deployments/owner/digitcloud-prod/predictions",
    }
    assert paths == {want[Target.parse(**target).kind]}
    check_invariants(fake, results, len(batch))


def test_429_storm_is_waited_out(fake: FakeReplicate, batch: np.ndarray) -> None:
    fake.inject("create", "429", times=3)
    sleeps: list[float] = []
    client = Client(model="owner/digitcloud", batch_size=60)
    assert isinstance(client._cloud, ReplicateBackend)
    client._cloud.policy = RetryPolicy(sleep=sleeps.append, rng=random.Random(0))
    results = client.classify(batch)
    assert [r.digit for r in results] == expected(batch)
    assert sum(1 for s in sleeps if s >= 1.0) >= 3  # Retry-After: 1 honoured each time
    check_invariants(fake, results, len(batch))


@pytest.mark.parametrize(
    "fault", ["500_after", "reset_after", "malformed_after", "deep_after", "500_before", "reset_before"]
)
def test_ambiguous_create_is_reconciled_never_duplicated(fake: FakeReplicate, batch: np.ndarray, fault: str) -> None:
    fake.inject("create", fault)
    results = quick(Client(model="owner/digitcloud", batch_size=60)).classify(batch)
    assert [r.digit for r in results] == expected(batch) and {r.backend for r in results} == {"replicate"}
    assert len(fake.predictions) == 1  # adopted when it existed, created once when it did not
    check_invariants(fake, results, len(batch))


def test_dropped_and_failing_polls_are_retried(fake: FakeReplicate, batch: np.ndarray) -> None:
    fake.run_seconds, fake.max_wait = 0.3, 0.0  # the create answers "starting": the client must poll
    fake.inject("get", "drop", times=2)
    fake.inject("get", "500", times=2)
    fake.inject("get", "deep")  # JSON nested past the recursion limit: an unreadable body, retried
    client = Client(model="owner/digitcloud", batch_size=60)
    assert isinstance(client._cloud, ReplicateBackend)
    client._cloud.policy = RetryPolicy(attempts=6, sleep=lambda s: None)
    results = client.classify(batch)
    assert [r.digit for r in results] == expected(batch)
    assert not fake.faults["get"]  # all five poll faults were met and survived
    assert sum(1 for r in fake.requests if r["method"] == "GET") >= 6
    check_invariants(fake, results, len(batch))


@pytest.mark.parametrize("fault", ["fail", "abort", "cancel_by_server", "short_output"])
def test_bad_endings_fall_back_to_local_in_auto(fake: FakeReplicate, batch: np.ndarray, fault: str) -> None:
    pytest.importorskip("torch")
    fake.inject("create", fault)
    with pytest.warns(FallbackWarning):
        results = quick(Client(model="owner/digitcloud", batch_size=60)).classify(batch[:10])
    assert {r.backend for r in results} == {"local"} and all(r.ok for r in results)
    check_invariants(fake, results, 10)


def test_failed_prediction_is_reported_per_item_in_cloud_mode(fake: FakeReplicate, batch: np.ndarray) -> None:
    fake.inject("create", "fail")
    # one chunk at a time, so the injected failure meets the first chunk, deterministically
    client = Client(model="owner/digitcloud", backend="cloud", batch_size=5, max_concurrency=1)
    results = quick(client).classify(batch[:10])
    assert [isinstance(r.error, PredictionFailedError) for r in results] == [True] * 5 + [False] * 5
    assert "illegal memory access" in str(results[0].error)
    assert [r.digit for r in results[5:]] == expected(batch[5:10])
    check_invariants(fake, results, 10)


def test_prediction_that_never_finishes_is_cancelled_at_the_deadline(fake: FakeReplicate, batch: np.ndarray) -> None:
    fake.inject("create", "never_finish")
    client = Client(model="owner/digitcloud", backend="cloud", batch_size=60, timeout=5)
    results = client.classify(batch[:4])
    assert all(isinstance(r.error, CloudUnavailableError) for r in results)
    assert "deadline" in str(results[0].error)
    (pid,) = fake.predictions
    assert fake.cancels == [pid] and fake.predictions[pid]["status"] in ("canceled", "aborted")
    check_invariants(fake, results, 4)


def test_bad_token_surfaces_and_is_never_shown(
    fake: FakeReplicate, batch: np.ndarray, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("REPLICATE_API_TOKEN", "r8_wrong_SENTINEL_token_value_000000000")
    caplog.set_level(logging.DEBUG)
    client = Client(model="owner/digitcloud", batch_size=60)
    with pytest.raises(AuthenticationError) as exc:
        client.classify(batch[:3])
    assert len(fake.requests) == 1  # one 401, no retry, no fallback storm
    shown = "\n".join(
        [
            str(exc.value),
            repr(exc.value),
            "".join(traceback.format_exception(exc.value)),
            repr(client),
            repr(client.settings),
            caplog.text,
        ]
    )
    assert "SENTINEL" not in shown and "REPLICATE_API_TOKEN" in str(exc.value)


@pytest.fixture(scope="module")
def noise() -> np.ndarray:
    """2,000 digits too big for a data URI: noise inside the central 20x20 box, MNIST-shaped (it
    passes through untouched) and incompressible."""
    noise = np.zeros((2000, 28, 28), dtype=np.uint8)
    noise[:, 4:24, 4:24] = np.random.default_rng(0).integers(1, 256, (2000, 20, 20), dtype=np.uint8)
    return noise


def test_large_batch_goes_through_the_files_api_and_the_file_is_deleted(fake: FakeReplicate, noise: np.ndarray) -> None:
    results = quick(Client(model="owner/digitcloud", batch_size=2000)).classify(noise)
    sent = inputs.stack(inputs.load_items(inputs.expand(noise)))  # what the client normalised and sent
    assert [r.digit for r in results] == expected(sent)
    (prediction,) = fake.predictions.values()
    (file_id,) = fake.file_info
    assert prediction["input"]["digits"] == fake.file_info[file_id]["urls"]["get"]
    assert fake.deleted_files == [file_id]
    # deleted only once the prediction was over: the DELETE is the client's last request
    assert [(r["method"], r["path"]) for r in fake.requests[-1:]] == [("DELETE", f"/v1/files/{file_id}")]
    check_invariants(fake, results, len(noise))


@pytest.mark.parametrize("fault", ["fail", "never_finish"])
def test_an_uploaded_file_is_deleted_when_its_prediction_fails_or_is_abandoned(
    fake: FakeReplicate, noise: np.ndarray, fault: str
) -> None:
    fake.inject("create", fault)
    results = quick(Client(model="owner/digitcloud", backend="cloud", batch_size=2000, timeout=5)).classify(noise)
    assert all(not r.ok for r in results)
    (pid,) = fake.predictions
    assert fake.predictions[pid]["status"] in ("failed", "canceled", "aborted")
    assert len(fake.deleted_files) == 1
    check_invariants(fake, results, len(noise))


@pytest.mark.parametrize("fault", ["500", "drop"])
def test_a_file_that_cannot_be_deleted_costs_a_warning_not_the_answers(
    fake: FakeReplicate, noise: np.ndarray, fault: str, caplog: pytest.LogCaptureFixture
) -> None:
    fake.inject("delete_file", fault)
    with caplog.at_level(logging.WARNING, logger="digitcloud"):
        results = quick(Client(model="owner/digitcloud", backend="cloud", batch_size=2000)).classify(noise)
    sent = inputs.stack(inputs.load_items(inputs.expand(noise)))
    assert [r.digit for r in results] == expected(sent)
    (file_id,) = fake.files
    assert f"could not delete uploaded file {file_id}" in caplog.text and "expires" in caplog.text
    assert sum(r["method"] == "DELETE" for r in fake.requests) == 1  # one try: storage, not compute
    assert TOKEN not in caplog.text
    assert len(results) == len(noise)
    check_ledger(fake, settle=0, files_kept=1)


def test_no_token_means_local_with_a_notice_and_no_request(
    fake: FakeReplicate, batch: np.ndarray, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("torch")
    monkeypatch.delenv("REPLICATE_API_TOKEN")
    with pytest.warns(FallbackWarning, match="no REPLICATE_API_TOKEN"):
        client = Client(model="owner/digitcloud")
    assert client.classify(batch[0]).backend == "local"
    assert fake.requests == []
    with pytest.raises(ConfigError, match="REPLICATE_API_TOKEN"):
        Client(model="owner/digitcloud", backend="cloud")


def test_target_parsing_and_secret_handling() -> None:
    assert Target.parse(model="o/n") == Target("model", "o", "n")
    assert Target.parse(model="o/n:abc") == Target("version", "o", "n", "abc")
    assert Target.parse(deployment="o/n") == Target("deployment", "o", "n")
    assert Target.parse(model="deployments/o/n").kind == "deployment"
    for bad in ("owner", "o/n/x", "/n"):
        with pytest.raises(ConfigError):
            Target.parse(model=bad)
    secret = Secret(TOKEN)
    assert TOKEN not in repr(secret) and TOKEN not in str(secret) and secret.reveal() == TOKEN
    with pytest.raises(TypeError):
        pickle.dumps(secret)
    assert not Secret("   ")


def test_parity_local_cog_and_replicate_paths(
    cog_server: str, monkeypatch: pytest.MonkeyPatch, batch: np.ndarray
) -> None:
    """The same digits get the same labels locally, from the Cog server, and through the Replicate
    API whose predictions run on that Cog server with the project's predict.py."""
    pytest.importorskip("torch")
    import requests

    from digitcloud import contract

    def through_cog(digits: np.ndarray) -> np.ndarray:
        body = {"input": {"digits": contract.encode_batch(digits)}}
        out = requests.post(f"{cog_server}/predictions", json=body, timeout=120).json()
        return np.array([e["probabilities"] for e in out["output"]["predictions"]], dtype=np.float32)

    # 3,000 distinct MNIST-shaped digits: 300 drawn ones at 10 ink intensities
    base = stroke_digits(300, seed=5)[0]
    many = np.concatenate([np.rint(base * level).astype(np.uint8) for level in np.linspace(0.55, 1.0, 10)])
    server = FakeReplicate(model_fn=through_cog, token=TOKEN)
    monkeypatch.setenv("REPLICATE_API_TOKEN", TOKEN)
    monkeypatch.setenv("REPLICATE_BASE_URL", server.url)
    try:
        replicate = Client(model="owner/digitcloud", batch_size=1000, max_concurrency=2).classify(many)
        assert server.schema_errors == []
    finally:
        server.close()
    local = Client(backend="local").classify(many)
    cog = Client(cog_url=cog_server, batch_size=1000).classify(many)
    assert {r.backend for r in replicate} == {"replicate"} and {r.backend for r in cog} == {"cog"}
    assert [r.digit for r in replicate] == [r.digit for r in cog] == [r.digit for r in local]
    np.testing.assert_allclose([r.probabilities for r in replicate], [r.probabilities for r in local], atol=1e-4)


def test_release_resolves_the_latest_version_with_the_official_client(
    fake: FakeReplicate, capsys: pytest.CaptureFixture[str]
) -> None:
    pytest.importorskip("replicate")
    from digitcloud.cli import main

    version = "5c7d5dc6dd8bf75c1acaa8565735e7986bc5b66206b55cca93cb72c9bf15ccaa"
    fake.add_version("owner/digitcloud", version)
    assert main(["release", "owner/digitcloud"]) == 0
    out = capsys.readouterr().out
    assert f"export DIGITCLOUD_MODEL=owner/digitcloud:{version}" in out and TOKEN not in out
    assert any(r["path"] == "/v1/models/owner/digitcloud" for r in fake.requests)
    assert fake.schema_errors == []

    fake.add_version("owner/other", "b" * 64, inputs=("prompt",))
    assert main(["release", "owner/other"]) == 1
    assert "lacks the inputs image, digits, request_id" in capsys.readouterr().err

    fake.add_version("owner/strict", "c" * 64, required=("image", "digits"))  # `x: Path = Input(default=None)`
    assert main(["release", "owner/strict"]) == 1
    assert "requires the inputs image, digits, so it refuses every request" in capsys.readouterr().err

    assert main(["release", "owner/missing"]) == 1
    assert "could not read model owner/missing" in capsys.readouterr().err


def test_release_while_offline_is_a_one_line_error(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    pytest.importorskip("replicate")
    from digitcloud.cli import main

    monkeypatch.setenv("REPLICATE_API_TOKEN", TOKEN)
    monkeypatch.setenv("REPLICATE_BASE_URL", "http://127.0.0.1:9")  # nothing listens on the discard port
    assert main(["release", "owner/digitcloud"]) == 1
    err = capsys.readouterr().err
    assert "could not reach Replicate to read model owner/digitcloud: ConnectError" in err
    assert "Traceback" not in err and TOKEN not in err


def test_the_spec_check_catches_a_body_that_breaks_it() -> None:
    from tests.fakes import openapi

    if not openapi.available():
        pytest.skip("Replicate's OpenAPI spec or jsonschema is not present")
    assert openapi.problems("schemas_prediction_response", {"id": 7, "status": "running"})
    assert openapi.problems("schemas_version_prediction_request", {"input": {}, "webhook_completed": "x"})
    assert openapi.problems("schemas_prediction_request", {"input": {"digits": "data:,"}}) == []


def test_ctrl_c_mid_run_cancels_every_prediction_started(
    fake: FakeReplicate, batch: np.ndarray, ctrl_c_raises: None
) -> None:
    import os
    import signal
    import threading
    import time

    fake.inject("create", "never_finish", times=10)
    client = Client(model="owner/digitcloud", batch_size=10, max_concurrency=3, timeout=60)

    def press_ctrl_c_once_three_run() -> None:
        deadline = time.monotonic() + 10
        while len(fake.predictions) < 3 and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(0.2)
        os.kill(os.getpid(), signal.SIGINT)

    threading.Thread(target=press_ctrl_c_once_three_run, daemon=True).start()
    began = time.monotonic()
    with pytest.raises(KeyboardInterrupt):
        client.classify(batch)  # 60 digits: 6 chunks, 3 in flight
    assert time.monotonic() - began < 30
    assert len(fake.predictions) == 3
    assert sorted(fake.cancels) == sorted(fake.predictions)
    deadline = time.monotonic() + 5
    while fake.unfinished() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert fake.unfinished() == []


@pytest.mark.parametrize(("fault", "stored"), [("500_after", 1), ("drop_after", 1), ("500", 0)])
def test_an_upload_that_may_have_stored_a_file_without_saying_so_is_warned_about(
    fake: FakeReplicate, noise: np.ndarray, fault: str, stored: int, caplog: pytest.LogCaptureFixture
) -> None:
    fake.inject("files", fault)
    with caplog.at_level(logging.WARNING, logger="digitcloud"):
        results = quick(Client(model="owner/digitcloud", backend="cloud", batch_size=2000)).classify(noise)
    sent = inputs.stack(inputs.load_items(inputs.expand(noise)))
    assert [r.digit for r in results] == expected(sent)  # the retried upload carried the batch
    assert fake.unanswered_uploads == stored and len(fake.deleted_files) == 1
    # the client cannot tell a 500 before storing from one after: both are named, as "may have"
    assert "1 upload attempt(s) got no usable answer and may have stored a file" in caplog.text
    check_ledger(fake, settle=0, files_kept=stored)
