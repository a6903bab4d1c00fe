"""Fault matrix, network and transport rows (T1-T9): the Replicate backend against loopback servers
that refuse, never resolve, never accept, speak untrusted TLS, go silent, trickle or flood.

Rows T5-T9 change the client's timeouts through its module constants so each scenario takes
seconds, not minutes; the code paths are the ones the defaults take.
"""

from __future__ import annotations

import contextlib
import socket
import ssl
import threading
import time
import tracemalloc

import numpy as np
import pytest

from digitcloud import Client, FallbackWarning, replicate
from digitcloud.replicate import ReplicateBackend
from tests.conftest import stroke_digits
from tests.fakes.harness import TOKEN, check_ledger, check_results, oracle_locally, quick
from tests.fakes.replicate_server import FakeReplicate


@pytest.fixture(scope="module")
def batch() -> np.ndarray:
    return stroke_digits(30, seed=31)[0]


def cloud(client: Client) -> ReplicateBackend:
    assert isinstance(client._cloud, ReplicateBackend)
    return client._cloud


def test_t1_connection_refused_goes_local_after_three_tries(
    monkeypatch: pytest.MonkeyPatch, batch: np.ndarray, connects: list[tuple[str, int]]
) -> None:
    oracle_locally(monkeypatch)
    with socket.socket() as s:  # a port that was bound, then closed: nobody listens there
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv("REPLICATE_API_TOKEN", TOKEN)
    monkeypatch.setenv("REPLICATE_BASE_URL", f"http://127.0.0.1:{port}")
    began = time.monotonic()
    with pytest.warns(FallbackWarning) as warned, Client(model="o/n", batch_size=30) as client:
        results = quick(client).classify(batch)
    check_results(results, batch)
    assert {r.backend for r in results} == {"local"}
    assert len(connects) == 3  # a pre-send failure is retried, twice
    assert len([w for w in warned if w.category is FallbackWarning]) == 1  # one warning, not one per item
    assert time.monotonic() - began < 5


def test_t2_dns_failure_opens_the_breaker_and_stops_lookups(monkeypatch: pytest.MonkeyPatch, batch: np.ndarray) -> None:
    oracle_locally(monkeypatch)
    lookups: list[str] = []
    real = socket.getaddrinfo

    def failing(host: str, *args: object, **kwargs: object) -> object:
        if host == "api.replicate.invalid":
            lookups.append(host)
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return real(host, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(socket, "getaddrinfo", failing)
    monkeypatch.setenv("REPLICATE_API_TOKEN", TOKEN)
    monkeypatch.setenv("REPLICATE_BASE_URL", "http://api.replicate.invalid")
    with pytest.warns(FallbackWarning), Client(model="o/n", batch_size=5, max_concurrency=1) as client:
        results = quick(client).classify(batch)  # 6 chunks
        breaker = cloud(client).breaker
        assert breaker.state == "open" and breaker.opened == 1
        # 3 lookups for the first chunk, 2 more open the breaker (5 pre-send failures in a row);
        # the 4 chunks after that are answered locally without a single lookup
        assert len(lookups) == 5
        again = client.classify(batch[:5])
        assert len(lookups) == 5 and {r.backend for r in again} == {"local"}
    check_results(results, batch)
    assert {r.backend for r in results} == {"local"}


def test_t3_connect_timeout_costs_attempts_times_the_connect_timeout(
    monkeypatch: pytest.MonkeyPatch, batch: np.ndarray, connects: list[tuple[str, int]]
) -> None:
    oracle_locally(monkeypatch)
    monkeypatch.setattr(replicate, "CONNECT_TIMEOUT", 0.3)
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)  # never accepts; once its queue is full, Linux drops further SYNs
    port = listener.getsockname()[1]
    fillers = []
    try:
        for _ in range(4):
            s = socket.socket()
            s.setblocking(False)
            with contextlib.suppress(BlockingIOError):
                s.connect(("127.0.0.1", port))
            fillers.append(s)
        time.sleep(0.1)
        with socket.socket() as probe:
            probe.settimeout(0.3)
            try:
                probe.connect(("127.0.0.1", port))
                pytest.skip("this platform accepts connections past a full listen queue")
            except TimeoutError:
                pass
        monkeypatch.setenv("REPLICATE_API_TOKEN", TOKEN)
        monkeypatch.setenv("REPLICATE_BASE_URL", f"http://127.0.0.1:{port}")
        began = time.monotonic()
        with pytest.warns(FallbackWarning, match="ConnectTimeout"), Client(model="o/n", batch_size=30) as client:
            results = quick(client).classify(batch)
        elapsed = time.monotonic() - began
    finally:
        for s in fillers:
            s.close()
        listener.close()
    check_results(results, batch)
    assert {r.backend for r in results} == {"local"}
    assert len(connects) == 3
    assert 3 * 0.3 <= elapsed < 3 * 0.3 + 2.0  # attempts x connect timeout (+ instant backoff)


class _UntrustedTLSServer:
    """Loopback TLS with a certificate from a CA nobody trusts; records handshakes and any bytes
    that arrive after one (an HTTP request, with its Authorization header, would)."""

    def __init__(self) -> None:
        trustme = pytest.importorskip("trustme")
        ca = trustme.CA()
        self.context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ca.issue_cert("127.0.0.1").configure_cert(self.context)
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.sock.settimeout(0.1)
        self.url = f"https://127.0.0.1:{self.sock.getsockname()[1]}"
        self.handshakes = 0
        self.received = b""
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while not self.stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            with conn:
                conn.settimeout(2)
                self.handshakes += 1
                try:
                    with self.context.wrap_socket(conn, server_side=True) as tls:
                        self.received += tls.recv(65536)
                except (ssl.SSLError, OSError):
                    pass  # the client refused our certificate, as it must

    def close(self) -> None:
        self.stop.set()
        self.thread.join()
        self.sock.close()


def test_t4_untrusted_certificate_is_not_retried_and_no_header_is_sent(
    monkeypatch: pytest.MonkeyPatch, batch: np.ndarray
) -> None:
    oracle_locally(monkeypatch)
    server = _UntrustedTLSServer()
    try:
        monkeypatch.setenv("REPLICATE_API_TOKEN", TOKEN)
        monkeypatch.setenv("REPLICATE_BASE_URL", server.url)
        client = Client(model="o/n", batch_size=10, max_concurrency=1)
        with pytest.warns(FallbackWarning, match="TLS failure") as warned, client:
            results = quick(client).classify(batch)  # 3 chunks
            assert cloud(client).breaker.state == "open"
    finally:
        server.close()
    check_results(results, batch)
    assert {r.backend for r in results} == {"local"}
    assert server.handshakes == 1  # no retry, and the open breaker spared the other chunks
    assert server.received == b""  # the handshake failed first: no request, no Authorization header
    assert "certificate" in str(warned[0].message).lower() and TOKEN not in str(warned[0].message)


@pytest.fixture
def short_timeouts(monkeypatch: pytest.MonkeyPatch) -> None:
    """A create waits 1 s (Prefer: wait=1) and reads for 1.5 s; other reads give up after 1 s."""
    monkeypatch.setattr(replicate, "MAX_WAIT", 1)
    monkeypatch.setattr(replicate, "READ_MARGIN", 0.5)
    monkeypatch.setattr(replicate, "READ_TIMEOUT", 1.0)


def test_t5_read_timeout_on_create_is_reconciled_not_recreated(
    fake: FakeReplicate, batch: np.ndarray, short_timeouts: None
) -> None:
    fake.hang_seconds = 2.5  # the prediction exists, the answer comes after the client gave up
    fake.inject("create", "hang_after")
    with Client(model="o/n", batch_size=30, timeout=30) as client:
        results = quick(client).classify(batch)
    check_results(results, batch)
    assert {r.backend for r in results} == {"replicate"}  # adopted through the list
    assert len(fake.predictions) == 1 and len(fake.accepted_creates) == 1
    check_ledger(fake)


@pytest.mark.parametrize("where", ["create", "get"])
def test_t6_stall_mid_body_is_ambiguous_on_create_and_retried_on_a_poll(
    fake: FakeReplicate, batch: np.ndarray, short_timeouts: None, where: str
) -> None:
    fake.stall_seconds = 3.0  # headers and a third of the JSON, then silence past the read timeout
    if where == "get":
        fake.max_wait, fake.run_seconds = 0.0, 0.2  # the create answers "starting": the client polls
    fake.inject(where, "stall_body")
    with Client(model="o/n", batch_size=30, timeout=30) as client:
        results = quick(client).classify(batch)
    check_results(results, batch)  # no JSONDecodeError, no half-parsed prediction
    assert {r.backend for r in results} == {"replicate"}
    assert len(fake.predictions) == 1
    check_ledger(fake)


def test_t8_trickling_answer_is_cut_at_the_deadline(fake: FakeReplicate, batch: np.ndarray) -> None:
    # one byte every 0.2 s never trips a read timeout (it measures silence, not the whole answer)
    fake.trickle_interval = 0.2
    fake.inject("create", "trickle")
    began = time.monotonic()
    with pytest.warns(FallbackWarning, match="ResponseTooSlow"), Client(model="o/n", batch_size=30, timeout=5) as c:
        results = quick(c).classify(batch)
    assert time.monotonic() - began < 5 + 1.5  # the deadline, plus one trickle step and the local answer
    check_results(results, batch)
    assert {r.backend for r in results} == {"local"}
    check_ledger(fake)  # the orphan ran to its end (and carried Cancel-After)


@pytest.mark.parametrize("declared", [True, False], ids=["content_length", "streamed"])
def test_t9_oversized_body_is_refused_at_the_limit(fake: FakeReplicate, batch: np.ndarray, declared: bool) -> None:
    fake.inject("create", "huge_body:declared" if declared else "huge_body")  # 100 MB of junk
    limit = replicate.BODY_LIMIT + replicate.BODY_PER_DIGIT * len(batch)
    with Client(model="o/n", batch_size=30) as client:
        quick(client)
        tracemalloc.start()
        try:
            results = client.classify(batch)
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
    assert peak < 2 * limit + 8 * 2**20 < fake.huge_bytes  # never the whole 100 MB
    check_results(results, batch)
    assert {r.backend for r in results} == {"replicate"}  # unreadable create -> reconciled, adopted
    assert len(fake.predictions) == 1
    check_ledger(fake)
