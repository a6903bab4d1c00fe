"""URL inputs: how fast a list of image URLs is classified when each answer takes a while.

    python bench/url_inputs.py [--urls 200] [--latency 0.1] [--size 400] [--format PNG]

A loopback HTTP server answers every GET after ``--latency`` seconds with one of ten photo-style
digits (``tests.synthetic``, ``--size`` px square, PNG or ``--format``: JPEG, WEBP, AVIF, HEIC).
Printed: URLs/s for ``classify(urls)`` on the local backend, and the time the same photos take as
bytes (no download), so the difference is what waiting on the server costs.
"""

from __future__ import annotations

import argparse
import http.server
import sys
import threading
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.local_cpu import cpu_name
from tests.synthetic import draw_digit, encode, photograph


def photos(size: int, fmt: str = "PNG") -> list[bytes]:
    out = []
    for digit in range(10):
        rng = np.random.default_rng(digit)
        out.append(encode(photograph(draw_digit(digit, rng), rng, size=(size, size)), fmt))
    return out


class _Handler(http.server.BaseHTTPRequestHandler):
    server: _Server

    def log_message(self, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        time.sleep(self.server.latency)
        body = self.server.bodies[int(self.path.strip("/").split(".")[0]) % len(self.server.bodies)]
        self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")  # the bytes say what they are
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128

    def __init__(self, bodies: list[bytes], latency: float) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.bodies, self.latency = bodies, latency


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--urls", type=int, default=200)
    p.add_argument("--latency", type=float, default=0.1, help="seconds before the server answers each GET")
    p.add_argument("--size", type=int, default=400, help="the photos' side in px")
    formats = ["PNG", "JPEG", "WEBP", "AVIF", "HEIC"]
    p.add_argument("--format", default="PNG", choices=formats, help="HEIC needs the heic extra")
    args = p.parse_args()

    from digitcloud import Client

    bodies = photos(args.size, args.format)
    server = _Server(bodies, args.latency)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    urls = [f"{base}/{i}" for i in range(args.urls)]
    client = Client(backend="local")
    client.classify(bodies)  # load the model first: only the inputs are timed
    try:
        t = time.perf_counter()
        as_bytes = client.classify([bodies[i % len(bodies)] for i in range(args.urls)])
        t_bytes = time.perf_counter() - t
        t = time.perf_counter()
        results = client.classify(urls)
        t_urls = time.perf_counter() - t
    finally:
        server.shutdown()
        server.server_close()
    assert all(r.ok for r in results) and [r.digit for r in results] == [r.digit for r in as_bytes]
    latency = f"server latency {args.latency * 1000:.0f} ms"
    print(f"machine: {cpu_name()}; {args.urls} URLs of {args.size} px {args.format}s, {latency}")
    print(f"the same photos as bytes:   {t_bytes:6.2f} s  ({args.urls / t_bytes:6.1f} images/s)")
    print(f"classify(urls):             {t_urls:6.2f} s  ({args.urls / t_urls:6.1f} URLs/s)")


if __name__ == "__main__":
    main()
