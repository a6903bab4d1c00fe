"""The Cog predictor's speed: setup time, and digits/s of run() end to end (batch file in -> JSON out).

    python bench/predictor.py [--digits 16384] [--repeats N] [--server http://127.0.0.1:5000]

In-process by default: ``Runner().setup()`` is timed, then ``run(digits=<.npy file>)`` plus the JSON
encoding of its output, as the Cog server would send it. With ``--server`` the same batch also goes
through a running Cog HTTP server as a data URI (base64 on the wire, as a small client sends it).
Prints the device (CPU model or GPU name) so numbers from different cards are never mixed up.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


from bench.local_cpu import cpu_name, make_digits  # noqa: E402


def make_batch(n: int) -> np.ndarray:
    """``n`` MNIST-style digits: 256 drawn by the project, at varied ink intensities."""
    base = make_digits(min(n, 256))
    levels = np.linspace(0.6, 1.0, max(1, -(-n // len(base))))
    return np.concatenate([np.rint(base * level).astype(np.uint8) for level in levels])[:n]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--digits", type=int, default=16_384)
    p.add_argument("--repeats", type=int, default=None, help="timed runs (default: 5 on a GPU, 1 on a CPU)")
    p.add_argument("--server", default=None, help="also time a running Cog server at this URL")
    args = p.parse_args()

    import torch
    from cog import Path as CogPath

    from digitcloud.digits_file import write_digits_file
    from predict import Runner

    batch = make_batch(args.digits)
    blob = write_digits_file(batch)
    began = time.perf_counter()
    runner = Runner()
    runner.setup()
    setup_seconds = time.perf_counter() - began
    device = next(runner.net.parameters()).device
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else cpu_name()
    repeats = args.repeats or (5 if device.type == "cuda" else 1)

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "digits.npy"
        path.write_bytes(blob)
        timings = []
        for _ in range(repeats):
            t = time.perf_counter()
            out = asyncio.run(runner.run(image=None, digits=CogPath(path), request_id="bench"))
            body = json.dumps({"output": {"predictions": out.predictions, "weights_sha256": out.weights_sha256}})
            timings.append(time.perf_counter() - t)
    assert len(out.predictions) == len(batch)

    best = min(timings)
    print(f"device: {name} ({device.type}), torch {torch.__version__}, {torch.get_num_threads()} CPU threads")
    print(f"setup (load + sha256 check + warm-up): {setup_seconds:8.2f} s")
    print(
        f"run() end to end, batch {len(batch)}:   {len(batch) / best:8.0f} digits/s "
        f"(best of {repeats}; median {len(batch) / statistics.median(timings):.0f}); "
        f"JSON out {len(body) / 1e6:.1f} MB"
    )

    if args.server:
        import requests

        uri = "data:application/octet-stream;base64," + base64.b64encode(blob).decode()
        t = time.perf_counter()
        resp = requests.post(f"{args.server}/predictions", json={"input": {"digits": uri}}, timeout=600)
        seconds = time.perf_counter() - t
        resp.raise_for_status()
        assert len(resp.json()["output"]["predictions"]) == len(batch)
        print(f"through the Cog server (data URI):     {len(batch) / seconds:8.0f} digits/s")


if __name__ == "__main__":
    main()
