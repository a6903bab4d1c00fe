"""Local CPU speed: batched classify() vs a naive one-digit-at-a-time loop, in one run.

    python bench/local_cpu.py [--digits 4096] [--naive 256] [--threads N] [--engine auto|onnxruntime|torch]

Prints digits/s of ``classify(array, backend="local")`` on N in-memory digits (end to end: input
checks, batching, model, results) with the chosen local engine (default: what users get), digits/s
of the naive loop (the same weights called on one digit at a time, fp32 NCHW under ``no_grad``, as
most tutorials do), their ratio, single-digit latency of ``classify()``, and the time of
``import digitcloud`` in a fresh interpreter.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def import_seconds(repeats: int = 5) -> float:
    code = "import time; t = time.perf_counter(); import digitcloud; print(time.perf_counter() - t)"
    runs = [
        float(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout)
        for _ in range(repeats)
    ]
    return statistics.median(runs)


def make_digits(n: int) -> np.ndarray:
    """``n`` MNIST-style digits drawn by the project (256 distinct ones, tiled)."""
    from digitcloud.photo import normalize_grey
    from tests.synthetic import draw_digit

    rng = np.random.default_rng(0)
    unique = np.stack(
        [normalize_grey(np.asarray(draw_digit(i % 10, rng, 56), dtype=np.float32)) for i in range(min(n, 256))]
    )
    return np.resize(unique, (n, 28, 28))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--digits", type=int, default=4096)
    p.add_argument("--naive", type=int, default=256, help="digits for the naive loop (it is slow)")
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--engine", default="auto", choices=["auto", "onnxruntime", "torch"])
    args = p.parse_args()

    seconds_import = import_seconds()
    import torch

    from digitcloud import Client
    from digitcloud.model import load_model, to_model_input

    digits = make_digits(args.digits)
    client = Client(backend="local", batch_size=args.batch_size, num_threads=args.threads, local_engine=args.engine)
    client.classify(digits[: args.batch_size])  # load + warm up
    began = time.perf_counter()
    results = client.classify(digits)
    batched = len(digits) / (time.perf_counter() - began)
    assert len(results) == len(digits) and all(r.ok for r in results)

    latencies = []
    for digit in digits[:100]:
        t = time.perf_counter()
        client.classify(digit)
        latencies.append(time.perf_counter() - t)

    net = load_model()  # the plain way: fp32, NCHW
    x = to_model_input(digits[: args.naive])
    with torch.no_grad():
        for i in range(10):
            net(x[i : i + 1])
        t = time.perf_counter()
        naive_labels = [int(net(x[i : i + 1]).argmax()) for i in range(len(x))]
        naive = len(x) / (time.perf_counter() - t)
    assert naive_labels == [r.digit for r in results[: args.naive]]

    print(f"machine: {cpu_name()}, {torch.get_num_threads()} torch threads, torch {torch.__version__}")
    print(f"local engine: {client._local.engine}")
    print(f"import digitcloud:                 {seconds_import * 1000:8.0f} ms (median of 5, fresh interpreter)")
    print(f"classify(), batch {args.batch_size}, {len(digits)} digits: {batched:8.0f} digits/s")
    print(f"naive loop, 1 digit per call:      {naive:8.0f} digits/s ({len(x)} digits)")
    print(f"ratio batched / naive:             {batched / naive:8.1f}x")
    print(
        f"classify() one digit, p50 latency: {statistics.median(latencies) * 1000:8.1f} ms "
        f"(p90 {np.percentile(latencies, 90) * 1000:.1f} ms)"
    )


if __name__ == "__main__":
    main()
