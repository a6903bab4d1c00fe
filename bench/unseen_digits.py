"""Weight files side by side on handwriting that none of them trained on.

    python bench/unseen_digits.py --weights A.safetensors SHA256 --weights B.safetensors SHA256 [--n 5000]

Two sets, neither of them MNIST:
- drawn stroke digits (``tests/synthetic.py``, ``--n`` of them), normalised by ``digitcloud.inputs``;
- when scikit-learn is installed, its bundled handwritten digits (UCI: 1,797 digits by 43 writers,
  8x8 with 17 grey levels), each given a blank margin, enlarged to 64x64 and read by
  ``digitcloud.inputs`` like any user's picture.

They catch a model that got worse away from its training data, the risk in training on every MNIST
digit (``python -m train --final``), whose own validation number no longer measures that. They do
not measure MNIST-test accuracy. Printed per set: each file's accuracy, and for the first two files
the digits only one of them gets right, with a two-sided sign test.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from digitcloud.model import load_model, predict_probabilities
from digitcloud.photo import normalize_grey
from tests.conftest import stroke_digits


def uci_digits() -> tuple[np.ndarray, np.ndarray] | None:
    """scikit-learn's 8x8 digits as 28x28 MNIST-style digits, or None without scikit-learn."""
    try:
        from sklearn.datasets import load_digits
    except ImportError:
        return None
    bunch = load_digits()
    images = []
    for digit in bunch.images:  # 0..16, ink high: MNIST's polarity
        framed = np.pad(digit * (255 / 16), 2)  # the pen often touches the 8x8 edge; paper needs a frame
        big = Image.fromarray(framed.astype(np.float32), mode="F").resize((64, 64), Image.Resampling.BICUBIC)
        images.append(normalize_grey(np.asarray(big)))
    return np.stack(images), bunch.target.astype(np.int64)


def sign_test(a_only: int, b_only: int) -> float:
    """Two-sided exact sign test: the chance of a split at least this uneven if neither file is better."""
    n = a_only + b_only
    if n == 0:
        return 1.0
    tail = sum(math.comb(n, k) for k in range(min(a_only, b_only) + 1)) / 2**n
    return min(1.0, 2 * tail)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--weights", nargs=2, action="append", required=True, metavar=("FILE", "SHA256"))
    p.add_argument("--n", type=int, default=5000, help="drawn stroke digits")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()

    sets = {"drawn stroke digits": stroke_digits(args.n, seed=args.seed)}
    uci = uci_digits()
    if uci is None:
        print("scikit-learn is not installed: its 8x8 digits are left out")
    else:
        sets["scikit-learn 8x8 digits"] = uci
    nets = {Path(f).name: load_model(path=Path(f), sha256=sha) for f, sha in args.weights}
    for title, (images, labels) in sets.items():
        print(f"\n{title}: {len(labels)}")
        right = {}
        for name, net in nets.items():
            right[name] = predict_probabilities(net, images).argmax(1) == labels
            print(f"  {name}: {right[name].mean():.2%} ({int((~right[name]).sum())} wrong)")
        if len(nets) >= 2:
            (a, ra), (b, rb) = list(right.items())[:2]
            a_only, b_only = int((ra & ~rb).sum()), int((rb & ~ra).sum())
            p_value = sign_test(a_only, b_only)
            print(f"  only {a} right: {a_only}; only {b} right: {b_only}; sign test p = {p_value:.2f}")


if __name__ == "__main__":
    main()
