"""URL inputs (digitcloud.downloads): several downloaded at once, answered in input order; and from
public addresses only (``private_urls=False``): refused on the connected socket before a byte is
sent, for the URL and for each redirect, with proxies ignored.

Every server here is on loopback, so "public" is played by 127.0.0.1 where a test needs one: it
swaps ``downloads.is_public`` for a rule that calls 127.0.0.1 public and every other address not.
"""

from __future__ import annotations

import http.server
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest

from digitcloud import Client, Prediction, downloads, inputs
from digitcloud.cli import main as cli_main
from digitcloud.config import Settings
from tests.synthetic import draw_digit, encode


class _Server(http.server.ThreadingHTTPServer):
    """Answers GET with ``body``, or with a 302 to ``location``; counts the requests it got."""

    daemon_threads = True

    def __init__(self, host: str, body: bytes = b"", location: str | None = None) -> None:
        super().__init__((host, 0), _Handler)
        self.body, self.location, self.requests = body, location, 0

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host!s}:{port}/seven.png"


class _Handler(http.server.BaseHTTPRequestHandler):
    server: _Server

    def log_message(self, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        self.server.requests += 1
        if self.server.location:
            self.send_response(302)
            self.send_header("Location", self.server.location)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        self.send_response(200)
        self.send_header("Content-Length", str(len(self.server.body)))
        self.end_headers()
        self.wfile.write(self.server.body)


@contextmanager
def serving(host: str = "127.0.0.1", body: bytes = b"", location: str | None = None) -> Iterator[_Server]:
    server = _Server(host, body, location)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture(scope="module")
def seven_png() -> bytes:
    return encode(draw_digit(7, np.random.default_rng(7)))


@pytest.fixture
def only_127_0_0_1_public(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(downloads, "is_public", lambda address: address == "127.0.0.1")


@pytest.mark.parametrize(
    ("address", "public"),
    [
        ("8.8.8.8", True),
        ("2606:4700:4700::1111", True),
        ("127.0.0.1", False),
        ("127.3.4.5", False),
        ("10.1.2.3", False),
        ("172.16.0.9", False),
        ("192.168.1.1", False),
        ("169.254.169.254", False),  # cloud metadata
        ("100.64.0.1", False),  # carrier-grade NAT, shared
        ("0.0.0.0", False),
        ("224.0.0.1", False),
        ("240.0.0.1", False),
        ("255.255.255.255", False),
        ("::1", False),
        ("::", False),
        ("fe80::1%eth0", False),
        ("fc00::1", False),
        ("ff02::1", False),
        ("::ffff:127.0.0.1", False),  # IPv4 written as IPv6
        ("::ffff:10.0.0.1", False),
        ("::ffff:8.8.8.8", True),
    ],
)
def test_which_addresses_are_public(address: str, public: bool) -> None:
    assert downloads.is_public(address) is public


def test_a_loopback_url_is_refused_before_any_request_and_the_batch_goes_on(seven_png: bytes) -> None:
    # given an image on loopback; by default it is downloaded
    with serving(body=seven_png) as server:
        loaded = Client(backend="local").classify(server.url)
        assert isinstance(loaded, Prediction) and loaded.digit == 7
        assert server.requests == 1
        # when private URLs are off
        first, second = Client(backend="local", private_urls=False).classify([server.url, seven_png])
    # then the URL is a named error, no request reached the server, and the bytes beside it are read
    assert first.error is not None and "refused" in str(first.error) and "127.0.0.1" in str(first.error)
    assert server.url in str(first.error)
    assert server.requests == 1
    assert second.ok and second.digit == 7


def test_a_redirect_to_a_private_address_is_refused(seven_png: bytes, only_127_0_0_1_public: None) -> None:
    # given a "public" server (127.0.0.1) redirecting to a private one (127.0.0.2) that has the image
    with serving("127.0.0.2", body=seven_png) as private, serving(location=private.url) as public:
        (item,) = inputs.load_items(inputs.expand([public.url], private_urls=False))
        assert public.requests == 1 and private.requests == 0
        assert item.error is not None and "127.0.0.2" in item.error.reason
        # and without the check, the same redirect is followed
        (followed,) = inputs.load_items(inputs.expand([public.url]))
    assert followed.digit is not None and private.requests == 1


def test_a_public_only_download_goes_direct_not_through_a_proxy(
    seven_png: bytes, only_127_0_0_1_public: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    # given a proxy in the environment: it would connect for us, to an address the check never sees
    with serving(body=b"not an image") as proxy, serving(body=seven_png) as image:
        for name in ("http_proxy", "HTTP_PROXY"):  # requests reads either; the lower-case one first
            monkeypatch.setenv(name, f"http://127.0.0.1:{proxy.server_address[1]}")
        for name in ("no_proxy", "NO_PROXY"):
            monkeypatch.setenv(name, "")
        assert downloads.fetch(image.url, limit=1 << 20, private=False) == seven_png
        assert (proxy.requests, image.requests) == (0, 1)
        # the default download honours the proxy, as requests does
        assert downloads.fetch(image.url, limit=1 << 20) == b"not an image"
        assert proxy.requests == 1


def test_the_environment_and_the_command_line_turn_private_urls_off(
    seven_png: bytes, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert Settings.resolve(environ={}).private_urls is True
    assert Settings.resolve(environ={"DIGITCLOUD_PRIVATE_URLS": "0"}).private_urls is False
    assert Settings.resolve(private_urls=True, environ={"DIGITCLOUD_PRIVATE_URLS": "off"}).private_urls is True
    with serving(body=seven_png) as server:
        assert cli_main(["classify", "--backend", "local", "--format", "json", "--public-urls-only", server.url]) == 1
        assert server.requests == 0
    assert "not a public address" in capsys.readouterr().err


class _GatedHandler(http.server.BaseHTTPRequestHandler):
    """Holds each GET until ``gate`` requests have been in flight together once (or 2 s pass), then
    answers with ``/<digit>.png``'s photo; records the most in flight at once."""

    server: _GatedServer

    def log_message(self, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        srv = self.server
        with srv.lock:
            srv.in_flight += 1
            srv.most = max(srv.most, srv.in_flight)
            srv.lock.notify_all()
            srv.lock.wait_for(lambda: srv.most >= srv.gate, timeout=2)
        name = self.path.strip("/")
        body = srv.photos.get(name)
        self.send_response(200 if body else 404)
        self.send_header("Content-Length", str(len(body or b"")))
        self.end_headers()
        self.wfile.write(body or b"")
        with srv.lock:
            srv.in_flight -= 1


class _GatedServer(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, photos: dict[str, bytes], gate: int) -> None:
        super().__init__(("127.0.0.1", 0), _GatedHandler)
        self.photos, self.gate = photos, gate
        self.lock = threading.Condition()
        self.in_flight = self.most = 0


def test_urls_are_downloaded_several_at_once_and_answered_in_order() -> None:
    # given twelve URLs (ten digits, a 404 and a digit again) on a server that answers none until
    # DOWNLOADS_AHEAD are waiting at once
    photos = {f"{d}.png": encode(draw_digit(d, np.random.default_rng(d))) for d in range(10)}
    server = _GatedServer(photos, gate=inputs.DOWNLOADS_AHEAD)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    names = [f"{d}.png" for d in (3, 1, 4, 1, 5, 9, 2, 6)] + ["missing.png", "5.png", "3.png", "5.png"]
    try:
        results = Client(backend="local").classify([f"{base}/{n}" for n in names])
    finally:
        server.shutdown()
        server.server_close()
    # then that many were in flight together, never more, and each answer sits in its URL's place
    assert server.most == inputs.DOWNLOADS_AHEAD
    assert [r.index for r in results] == list(range(len(names)))
    assert [r.digit for r in results] == [3, 1, 4, 1, 5, 9, 2, 6, None, 5, 3, 5]
    error = str(results[8].error)
    assert "HTTP 404" in error and "missing.png" in error


def test_a_public_only_download_still_verifies_tls_with_the_environments_ca_bundle(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # proxies and .netrc are off (trust_env), which would drop the CA bundle variables too
    for name in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"):
        monkeypatch.delenv(name, raising=False)
    assert downloads.public_only_session().verify is True
    monkeypatch.setenv("CURL_CA_BUNDLE", "/etc/corp/curl.pem")
    assert downloads.public_only_session().verify == "/etc/corp/curl.pem"
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", "/etc/corp/ca.pem")
    session = downloads.public_only_session()
    assert session.verify == "/etc/corp/ca.pem" and session.trust_env is False
