"""How the model reads ways of writing a digit that MNIST's writers rarely used.

    python bench/handwriting_styles.py [--n 200] [--weights FILE SHA256 ...]

MNIST's digits were written by Americans: a "1" is mostly one stroke, a "7" is not crossed. Each
style of ``tests.synthetic.STYLES`` (a European "1" with a long flag, a crossed "7", an open "4"…)
is drawn ``--n`` times with the usual wobble, slant and pen width, photographed on white paper
(640x480, the digit 0.3-0.6 of the height) and read through ``digitcloud.inputs`` and each weights
file (default: the shipped). Printed per style: accuracy per file, and what the first file read
instead. Seeded per style name; nothing is written.
"""

from __future__ import annotations

import argparse
import sys
import zlib
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.synthetic import STYLES, Stroke, draw_digit, encode, photograph


def photos(digit: int, strokes: list[Stroke], n: int, seed: int) -> np.ndarray:
    """``n`` photos of one style, each read back as a 28x28 digit by ``digitcloud.inputs``."""
    from digitcloud import inputs

    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        ink = draw_digit(digit, rng, strokes=strokes)
        out.append(inputs.decode(encode(photograph(ink, rng, digit_height=rng.uniform(0.3, 0.6)))))
    return np.stack(out)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--n", type=int, default=200, help="photos per style")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--weights", nargs=2, action="append", metavar=("FILE", "SHA256"), help="default: the shipped; repeatable"
    )
    args = p.parse_args()

    from digitcloud import model

    weights = args.weights or [(str(model.WEIGHTS.path), model.WEIGHTS.sha256)]
    nets = [model.prepare(model.load_model(path=Path(path), sha256=sha)) for path, sha in weights]
    names = [Path(path).stem.removeprefix("digitcloud-resnet34-") for path, _ in weights]
    print(f"{'':28s} " + " ".join(f"{name:>9.9s}" for name in names) + "  read instead (first file)")
    for style, (digit, strokes) in STYLES.items():
        batch = photos(digit, strokes, args.n, seed=zlib.crc32(style.encode()) + args.seed)
        answers = [model.predict_probabilities(net, batch, batch_size=256).argmax(1) for net in nets]
        scores = " ".join(f"{np.mean(a == digit):9.1%}" for a in answers)
        wrong = np.bincount(answers[0][answers[0] != digit], minlength=10)
        instead = ", ".join(f"{d} x{int(c)}" for d, c in sorted(enumerate(wrong), key=lambda t: -t[1]) if c)
        print(f"{style:28s} {scores}  {instead}", flush=True)


if __name__ == "__main__":
    main()
