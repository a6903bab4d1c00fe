"""How far the GPU predictor's bf16 autocast moves the answers from the CPU's fp32.

    python bench/precision.py [--data ../shared/data/mnist] [--n 10000]

The cloud predictor runs the forward pass under bf16 autocast on CUDA (``digitcloud.model.autocast``);
the local fallback runs fp32. With a GPU this compares the two for real (CUDA bf16 vs CPU fp32); without
one it emulates bf16 autocast on the CPU (``torch.autocast("cpu", torch.bfloat16)``: the same
rounding of activations and weights, not cuDNN's kernels). Printed: the largest and the 99th-percentile
difference in any probability, the digits whose label differs, and accuracy both ways.

Digits: the last ``--n`` of the MNIST train split (the validation tail) when ``--data`` holds it,
else drawn stroke digits (``tests/synthetic.py``).
"""

from __future__ import annotations

import argparse
import gzip
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from digitcloud.model import (
    import_torch,
    load_for_serving,
    load_model,
    predict_probabilities,
    prepare,
    serving_batch_size,
    to_model_input,
)
from tests.conftest import stroke_digits


def digits_to_compare(data: Path, n: int) -> tuple[np.ndarray, np.ndarray, str]:
    images_file, labels_file = data / "train-images-idx3-ubyte.gz", data / "train-labels-idx1-ubyte.gz"
    if images_file.exists() and labels_file.exists():
        with gzip.open(images_file) as f:
            images = np.frombuffer(f.read(), np.uint8, offset=16).reshape(-1, 28, 28)
        with gzip.open(labels_file) as f:
            labels = np.frombuffer(f.read(), np.uint8, offset=8).astype(np.int64)
        return images[-n:].copy(), labels[-n:], f"the last {n:,} MNIST train digits"
    images, labels = stroke_digits(n, seed=7)
    return images, labels, f"{n:,} drawn stroke digits"


def bf16_on_cpu(net: object, digits: np.ndarray, batch_size: int = 256) -> np.ndarray:
    """``predict_probabilities``' loop, under CPU bf16 autocast (which it leaves off on the CPU)."""
    torch = import_torch()
    out = np.empty((len(digits), 10), dtype=np.float32)
    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
        for start in range(0, len(digits), batch_size):
            x = to_model_input(digits[start : start + batch_size]).contiguous(memory_format=torch.channels_last)
            out[start : start + len(x)] = torch.softmax(net(x).float(), dim=1).numpy()  # type: ignore[operator]
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", type=Path, default=Path("../shared/data/mnist"))
    p.add_argument("--n", type=int, default=10_000)
    args = p.parse_args()
    torch = import_torch()
    digits, labels, what = digits_to_compare(args.data, args.n)
    cpu = prepare(load_model())
    fp32 = predict_probabilities(cpu, digits)
    if torch.cuda.is_available():
        gpu = load_for_serving()  # exactly as predict.py's setup(): cudnn autotuned, warmed up
        bf16 = predict_probabilities(gpu, digits, batch_size=serving_batch_size(gpu))
        how = f"CUDA bf16 autocast ({torch.cuda.get_device_name()})"
    else:
        bf16 = bf16_on_cpu(cpu, digits)
        how = "bf16 autocast emulated on the CPU"
    diff = np.abs(bf16 - fp32)
    flipped = np.flatnonzero(bf16.argmax(1) != fp32.argmax(1))
    print(f"{what}: {how} vs CPU fp32")
    print(f"  |Δp| max {diff.max():.5f}, p99 {np.percentile(diff.max(1), 99):.5f}, mean {diff.mean():.2e}")
    print(f"  labels that differ: {len(flipped)} of {len(digits):,}")
    for i in flipped[:10]:
        print(f"    #{i}: fp32 {fp32[i].argmax()} ({fp32[i].max():.3f}), bf16 {bf16[i].argmax()} ({bf16[i].max():.3f})")
    print(f"  accuracy: fp32 {(fp32.argmax(1) == labels).mean():.2%}, bf16 {(bf16.argmax(1) == labels).mean():.2%}")


if __name__ == "__main__":
    main()
