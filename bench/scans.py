"""Accuracy on scans: validation digits as a document scanner writes them, read back by digitcloud.

    python bench/scans.py --data ../shared/data/mnist [--n 3000] [--weights FILE SHA256 ...] [--no-descreen]

Each of the last ``--n`` MNIST train digits (the validation tail no shipped model trains on) is
drawn as dark ink on evenly lit paper (white to light grey), 100-1000 px, off-centre, with a
scanner's faint noise, and written eight ways: an 8-bit grey PNG; black and white, thresholded (a
1-bit TIFF, Group 4, as scanners and faxes write it); black and white, dithered (a 1-bit PNG from
Pillow's ``convert("1")``, Floyd-Steinberg, as a scanner's black-and-white photo mode draws grey);
the last two again at a low resolution, the digit 14-29 px tall; and the dithered scan saved
lossily, as a JPEG and as a WebP (quality 60-95, half the JPEGs in colour, as some scanning apps
write them; WebP always stores colour); and dithered again on grey paper (levels 100-200). Each
file goes through ``digitcloud.inputs.decode`` and the model. Printed: accuracy per kind, for each
weights file. ``--no-descreen`` reads the dithered scans as the pipeline did before ``digitcloud.halftone``.
Nothing is written to disk (the scans are MNIST-derived).
"""

from __future__ import annotations

import argparse
import io
import math
import multiprocessing
import os
import sys
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

KINDS = (
    "grey",
    "black and white",
    "dithered",
    "black and white, small",
    "dithered, small",
    "dithered, as JPEG",
    "dithered, as WebP",
    "dithered, on grey paper",
)


def render(digit: np.ndarray, seed: int) -> dict[str, bytes]:
    """One 28x28 MNIST digit (light on dark) as each kind of scan, encoded."""
    rng = np.random.default_rng(seed)
    long_side = int(rng.uniform(100, 1000))
    w, h = long_side, max(60, int(long_side / rng.uniform(0.75, 1.33)))
    side = max(12, int(min(w, h) * rng.uniform(0.3, 0.8)))
    ink = np.asarray(Image.fromarray(digit).resize((side, side), Image.Resampling.BICUBIC), dtype=np.float32) / 255
    sharp = rng.uniform(0.0, 0.35)  # as in photo_set: a contrast curve gives upscaled MNIST a pen's edge
    ink = np.clip((ink - sharp) / max(1e-3, 1 - 2 * sharp), 0, 1)
    paper = rng.uniform(200, 252)
    page = np.full((h, w), paper, dtype=np.float32)
    x0, y0 = int(rng.uniform(0, w - side)), int(rng.uniform(0, h - side))
    page[y0 : y0 + side, x0 : x0 + side] -= (paper - 20) * ink
    page += rng.normal(0, 3, page.shape).astype(np.float32)
    grey = Image.fromarray(np.clip(page, 0, 255).astype(np.uint8))
    small = rng.uniform(20, 40) / side  # the 28x28 digit drawn 20-40 px: its ink ~14-29 px tall
    low = grey.resize((max(8, math.ceil(w * small)), max(8, math.ceil(h * small))), Image.Resampling.LANCZOS)

    def black_and_white(img: Image.Image) -> Image.Image:
        return img.point(lambda v: 255 if v >= (paper + 20) / 2 else 0).convert("1", dither=Image.Dither.NONE)

    scans = {
        "grey": (grey, "PNG"),
        "black and white": (black_and_white(grey), "TIFF"),
        "dithered": (grey.convert("1"), "PNG"),
        "black and white, small": (black_and_white(low), "TIFF"),
        "dithered, small": (low.convert("1"), "PNG"),
    }
    dithered = grey.convert("1").convert("L")
    scans["dithered, as JPEG"] = (dithered.convert("RGB") if rng.random() < 0.5 else dithered, "JPEG")
    scans["dithered, as WebP"] = (dithered, "WEBP")
    encoded = {}
    for kind, (img, fmt) in scans.items():
        options: dict[str, object] = {"compression": "group4"} if fmt == "TIFF" and img.mode == "1" else {}
        if fmt in ("JPEG", "WEBP"):
            options = {"quality": int(rng.uniform(60, 96))}
        buf = io.BytesIO()
        img.save(buf, fmt, **options)
        encoded[kind] = buf.getvalue()
    # Grey paper (levels 100-200), dithered: drawn after the rest, so the scans above stay as they were
    grey_paper = rng.uniform(100, 200)
    page = np.full((h, w), grey_paper, dtype=np.float32)
    page[y0 : y0 + side, x0 : x0 + side] -= (grey_paper - 20) * ink
    page += rng.normal(0, 3, page.shape).astype(np.float32)
    buf = io.BytesIO()
    Image.fromarray(np.clip(page, 0, 255).astype(np.uint8)).convert("1").save(buf, "PNG")
    encoded["dithered, on grey paper"] = buf.getvalue()
    return encoded


def _read_back(job: tuple[np.ndarray, int]) -> dict[str, np.ndarray | None]:
    from digitcloud import inputs

    read: dict[str, np.ndarray | None] = {}
    for kind, data in render(*job).items():
        try:
            read[kind] = inputs.decode(data)
        except inputs.InputError:
            read[kind] = None
    return read


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", type=Path, default=Path("../shared/data/mnist"))
    p.add_argument("--n", type=int, default=3000, help="scans of each kind, from the last N MNIST train digits")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    p.add_argument("--weights", nargs=2, action="append", metavar=("FILE", "SHA256"), help="default: the shipped")
    p.add_argument("--no-descreen", action="store_true", help="ablation: dithered scans are not blurred back to grey")
    args = p.parse_args()

    from digitcloud import halftone, model
    from train.data import read_mnist_idx

    if args.no_descreen:
        halftone.LONE_SHARE = halftone.FRAME_MIX = math.inf  # the forked workers inherit them

    data = read_mnist_idx(args.data)
    digits, labels = data.images[-args.n :], data.labels[-args.n :]
    jobs = [(d, args.seed * 1_000_003 + i) for i, d in enumerate(digits)]
    with multiprocessing.get_context("fork").Pool(args.workers) as pool:
        scans = pool.map(_read_back, jobs, chunksize=32)
    print(f"{len(scans)} digits from the last {args.n} MNIST train digits, each scanned {len(KINDS)} ways")
    device = "cuda" if model.import_torch().cuda.is_available() else "cpu"
    for path, sha in args.weights or [(str(model.WEIGHTS.path), model.WEIGHTS.sha256)]:
        net = model.prepare(model.load_model(path=Path(path), sha256=sha, device=device))
        print(Path(path).name)
        for kind in KINDS:
            digits_read = [s[kind] for s in scans]
            read = np.array([d is not None for d in digits_read])
            batch = np.stack([d if d is not None else np.zeros((28, 28), np.uint8) for d in digits_read])
            correct = read & (model.predict_probabilities(net, batch, batch_size=1024).argmax(1) == labels)
            print(
                f"  {kind:24s} read {read.mean():7.2%}   accuracy {correct.mean():7.2%} "
                f"({int((~correct).sum())} wrong of {len(scans)})"
            )


if __name__ == "__main__":
    main()
