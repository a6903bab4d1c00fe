"""Downloading a URL input: size cap, a timeout per read and one for the whole download, and, for a
service that passes untrusted URLs on, a refusal of any address that is not public.

The address check is made on the socket itself, once it is connected and before a byte is sent:
the address the name resolved to, on this connection (a second lookup could answer differently),
for the URL and for every redirect. Private, loopback, link-local (cloud metadata at
169.254.169.254), shared (100.64/10), multicast, reserved and unspecified addresses are refused,
IPv4 written as IPv6 too. A proxy would connect on our behalf, to an address we never see, so a
public-only download ignores the environment's proxy settings (and ~/.netrc) and goes direct; a CA
bundle named by ``REQUESTS_CA_BUNDLE`` or ``CURL_CA_BUNDLE`` is still used.
"""

from __future__ import annotations

import ipaddress
import os
import socket
import time
from typing import Any

import requests
import urllib3.exceptions
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

from digitcloud.errors import InputError

TIMEOUT = (5.0, 20.0)  # connect, read (seconds)
DEADLINE = 60.0  # seconds for a whole download


class PrivateAddressError(Exception):
    """A public-only download connected to an address that is not public. Not an ``OSError``, so
    neither urllib3 nor requests retries it or wraps it: it reaches ``fetch`` as it is."""

    def __init__(self, address: str) -> None:
        super().__init__(address)
        self.address = address


def is_public(address: str) -> bool:
    """Whether an IP address (as a socket reports it) is on the public internet."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])  # an IPv6 scope ("fe80::1%eth0") is no part of it
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_global and not ip.is_multicast


def _checked(sock: socket.socket) -> socket.socket:
    address = str(sock.getpeername()[0])
    if not is_public(address):
        sock.close()
        raise PrivateAddressError(address)
    return sock


class _PublicHTTPConnection(HTTPConnection):
    def _new_conn(self) -> socket.socket:  # urllib3 1.26 and 2.x both open the socket here
        return _checked(super()._new_conn())


class _PublicHTTPSConnection(HTTPSConnection):
    def _new_conn(self) -> socket.socket:  # before the TLS handshake
        return _checked(super()._new_conn())


class _PublicHTTPPool(HTTPConnectionPool):
    ConnectionCls = _PublicHTTPConnection


class _PublicHTTPSPool(HTTPSConnectionPool):
    ConnectionCls = _PublicHTTPSConnection


class _PublicAdapter(HTTPAdapter):
    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = {"http": _PublicHTTPPool, "https": _PublicHTTPSPool}


def public_only_session() -> requests.Session:
    """A session whose every connection, redirects included, goes direct to a public address."""
    session = requests.Session()
    session.trust_env = False  # no proxy (it would pick the address), no ~/.netrc ...
    # ... but the CA bundle the environment names still verifies TLS, as requests would use it
    session.verify = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE") or True
    adapter = _PublicAdapter()
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    return session


def fetch(url: str, *, limit: int, private: bool = True) -> bytes:
    """Download an http(s) image of at most ``limit`` bytes, with a timeout per read and one for the
    whole download; redirects stay on http(s). No credentials are sent (requests' own .netrc lookup
    aside). ``private=False``: refuse any connection, redirects included, to an address that is not
    public."""
    deadline = time.monotonic() + DEADLINE
    try:
        session = requests.Session() if private else public_only_session()
        with session, session.get(url, timeout=TIMEOUT, stream=True) as resp:
            return _body(resp, deadline, limit)
    except PrivateAddressError as exc:
        raise InputError(
            f"refused: the URL leads to {exc.address}, not a public address (private URLs are off)"
        ) from None
    except (requests.RequestException, urllib3.exceptions.HTTPError) as exc:
        raise InputError(f"download failed: {type(exc).__name__}") from exc


def _body(resp: requests.Response, deadline: float, limit: int) -> bytes:
    if resp.url.split(":", 1)[0].lower() not in ("http", "https"):
        raise InputError("redirected to a non-http(s) URL")
    if resp.status_code != 200:
        raise InputError(f"download failed: HTTP {resp.status_code}")
    declared = _content_length(resp.headers.get("Content-Length"))
    if declared is not None and declared > limit:
        raise InputError(f"file too large: {declared:,} bytes (limit {limit:,})")
    chunks, size = [], 0
    while True:
        # read1: at most one socket read per call, so a server trickling a byte at a time
        # meets the overall deadline instead of holding us TIMEOUT per byte forever.
        chunk = resp.raw.read1(64 * 1024, decode_content=True)
        if not chunk:
            break
        size += len(chunk)
        if size > limit:
            raise InputError(f"file too large: over {limit:,} bytes")
        if time.monotonic() > deadline:
            raise InputError(f"download too slow: not finished after {DEADLINE:.0f} s")
        chunks.append(chunk)
    return b"".join(chunks)


def _content_length(value: str | None) -> int | None:
    """A Content-Length header as bytes; ``None`` when absent or not a plain decimal number."""
    if not value or not value.strip().isascii() or not value.strip().isdecimal():
        return None
    return int(value.strip())
