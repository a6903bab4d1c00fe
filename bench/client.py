"""Client throughput against a loopback Replicate API with a 300 ms round trip, in one run.

    python bench/client.py [--rtt 0.3] [--digits 20000] [--per-digit 40]

Prints digits/s when every digit is its own prediction (what a naive client does: one create per
image, one at a time) and when digits go in batches with several predictions in flight, and the
client's own overhead per digit: classify() end to end with a backend that answers instantly, so
every second counted is spent in digitcloud (expanding inputs, the pass-through check, batching,
building results), none waiting on a server.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.local_cpu import cpu_name, make_digits


class InstantBackend:
    """Answers every batch at once, so only the client's own work is timed."""

    name = "instant"

    def predict(self, digits: np.ndarray, stop: object = None) -> list[np.ndarray]:
        probs = np.full(10, 0.1, dtype=np.float32)
        return [probs] * len(digits)

    def cancel_all(self, stop: object = None) -> None:
        pass

    def close(self) -> None:
        pass


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rtt", type=float, default=0.3, help="seconds added to every answer of the fake API")
    p.add_argument("--digits", type=int, default=20_000)
    p.add_argument("--per-digit", type=int, default=40, help="digits sent one prediction each (slow)")
    p.add_argument("--batch-size", type=int, default=2048)
    p.add_argument("--max-concurrency", type=int, default=4)
    args = p.parse_args()

    from digitcloud import Client
    from tests.fakes.replicate_server import FakeReplicate

    digits = np.resize(make_digits(256), (args.digits, 28, 28))
    fake = FakeReplicate(token="bench-token", latency=args.rtt)
    os.environ.update(REPLICATE_API_TOKEN="bench-token", REPLICATE_BASE_URL=fake.url)
    try:
        one_by_one = Client(model="owner/digitcloud", batch_size=1, max_concurrency=1)
        t = time.perf_counter()
        results = one_by_one.classify(digits[: args.per_digit])
        per_digit = args.per_digit / (time.perf_counter() - t)
        assert isinstance(results, list) and all(r.backend == "replicate" for r in results)
        creates_single = len(fake.predictions)

        batched = Client(model="owner/digitcloud", batch_size=args.batch_size, max_concurrency=args.max_concurrency)
        t = time.perf_counter()
        results = batched.classify(digits)
        batched_rate = len(digits) / (time.perf_counter() - t)
        assert isinstance(results, list) and all(r.backend == "replicate" for r in results)
        creates_batched = len(fake.predictions) - creates_single
    finally:
        fake.close()

    instant = Client(batch_size=args.batch_size)
    instant._cloud = InstantBackend()  # type: ignore[assignment]
    instant.classify(digits[:1000])
    t = time.perf_counter()
    instant.classify(digits)
    overhead = (time.perf_counter() - t) / len(digits)

    print(f"machine: {cpu_name()}; fake Replicate API on loopback with {args.rtt * 1000:.0f} ms added per answer")
    print(f"one prediction per digit, 1 in flight:  {per_digit:10.1f} digits/s ({creates_single} predictions)")
    print(
        f"batches of {args.batch_size}, {args.max_concurrency} in flight:      {batched_rate:10.0f} digits/s "
        f"({creates_batched} predictions for {len(digits)} digits)"
    )
    print(f"speed-up:                               {batched_rate / per_digit:10.0f}x")
    print(f"client overhead per digit:              {overhead * 1e6:10.1f} µs (instant backend)")


if __name__ == "__main__":
    main()
