"""Accuracy on phone-photo-like digits: validation digits rendered as photos, read back by digitcloud.

    python bench/photo_set.py --data ../shared/data/mnist [--n 5000] [--weights FILE SHA256 ...] [--engines]

Each of the last ``--n`` MNIST train digits (the validation tail no shipped model trains on) is
drawn as dark ink on white/cream/grey/blue-tinted paper, 60-1000 px, off-centre, with a thicker or
thinner pen, uneven light, noise, blur, as JPEG/PNG/WebP in RGB/RGBA/grey, some with an EXIF
rotation. Each photo then goes through ``digitcloud.inputs.decode`` (the pipeline every user
input takes) and the model. Printed: accuracy overall and per condition, for each weights file
(with ``--engines``, also through onnxruntime, the local backend's default, and how many answers
differ from torch's). Nothing is written to disk (the photos are MNIST-derived).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageFilter, features

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.synthetic import PAPERS, encode, photograph

FORMATS = tuple(f for f in ("JPEG", "PNG", "WEBP") if f != "WEBP" or features.check("webp"))
MODES = ("RGB", "RGBA", "L")


def render(digit: np.ndarray, seed: int) -> tuple[bytes, dict[str, Any]]:
    """One 28x28 MNIST digit (light on dark) as an encoded photo, and the conditions drawn."""
    rng = np.random.default_rng(seed)
    long_side = int(rng.uniform(60, 1000))
    aspect = rng.uniform(0.75, 1.33)
    w, h = (
        (long_side, max(48, int(long_side / aspect))) if aspect >= 1 else (max(48, int(long_side * aspect)), long_side)
    )
    digit_height = rng.uniform(0.3, 0.8)
    side = max(8, int(min(w, h) * digit_height))
    # The pen is drawn at >= 280 px and then scaled to the photo: a pen change defined in a small
    # photo's own pixels would erase a small digit's strokes altogether.
    work = max(side, 280)
    # Upscaled MNIST is soft; a contrast curve gives it a pen's edge (random: some stay soft).
    ink = np.asarray(Image.fromarray(digit).resize((work, work), Image.Resampling.BICUBIC), dtype=np.float32) / 255
    sharp = rng.uniform(0.0, 0.35)
    ink = np.clip((ink - sharp) / max(1e-3, 1 - 2 * sharp), 0, 1)
    glyph = Image.fromarray((ink * 255).astype(np.uint8))
    pen = str(rng.choice(["normal", "thick", "thin"], p=[0.5, 0.25, 0.25]))
    grow = int(work / 28 * rng.uniform(0.8, 1.6)) | 1  # the stroke changes by 0.8-1.6 MNIST pixels, odd
    if pen == "thick":
        glyph = glyph.filter(ImageFilter.MaxFilter(grow))
    elif pen == "thin":
        glyph = glyph.filter(ImageFilter.MinFilter(grow))
    if work != side:
        glyph = glyph.resize((side, side), Image.Resampling.LANCZOS)
    paper = str(rng.choice(list(PAPERS)))
    photo = photograph(
        glyph,
        rng,
        size=(w, h),
        paper=paper,
        digit_height=digit_height,
        noise=rng.uniform(1, 10),
        blur=rng.uniform(0, 1.5) * min(w, h) / 400,
        light_gradient=rng.uniform(0, 0.35),
    )
    mode = str(rng.choice(MODES))
    photo = photo.convert(mode)
    fmt = str(rng.choice(FORMATS))
    if fmt == "JPEG" and mode == "RGBA":
        fmt = "PNG"  # JPEG has no alpha
    exif = int(rng.choice([3, 6, 8])) if rng.random() < 0.15 else None
    params: dict[str, Any] = {"quality": int(rng.uniform(60, 95))} if fmt != "PNG" else {}
    data = encode(photo, fmt, exif_orientation=exif, **params)
    size = "60-250" if long_side < 250 else "250-600" if long_side < 600 else "600-1000"
    return data, {"format": fmt, "mode": mode, "paper": paper, "pen": pen, "exif": str(exif is not None), "px": size}


def _read_back(job: tuple[np.ndarray, int]) -> tuple[np.ndarray | None, str, dict[str, Any]]:
    from digitcloud import inputs

    data, conditions = render(*job)
    try:
        return inputs.decode(data), "", conditions
    except inputs.InputError as exc:
        return None, str(exc), conditions


def build(digits: np.ndarray, seed: int, workers: int) -> tuple[np.ndarray, np.ndarray, list[dict[str, Any]]]:
    """The photo set read back: 28x28 digits, a mask of photos the pipeline could read, conditions."""
    jobs = [(d, seed * 1_000_003 + i) for i, d in enumerate(digits)]
    with multiprocessing.get_context("fork").Pool(workers) as pool:
        results = pool.map(_read_back, jobs, chunksize=32)
    read = np.array([r[0] is not None for r in results])
    out = np.zeros((len(results), 28, 28), dtype=np.uint8)
    for i, (digit, _, _) in enumerate(results):
        if digit is not None:
            out[i] = digit
    return out, read, [r[2] for r in results]


def report(correct: np.ndarray, conditions: list[dict[str, Any]]) -> dict[str, Any]:
    by: dict[str, dict[str, list[int]]] = defaultdict(lambda: defaultdict(lambda: [0, 0]))
    for ok, cond in zip(correct, conditions, strict=True):
        for key, value in cond.items():
            by[key][value][0] += int(ok)
            by[key][value][1] += 1
    return {
        "accuracy": float(correct.mean()),
        "errors": int((~correct).sum()),
        "by": {k: {v: round(c / n, 4) for v, (c, n) in sorted(d.items())} for k, d in by.items()},
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", type=Path, default=Path("../shared/data/mnist"))
    p.add_argument("--n", type=int, default=5000, help="photos, from the last N digits of the MNIST train split")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    p.add_argument("--weights", nargs=2, action="append", metavar=("FILE", "SHA256"), help="default: the shipped")
    p.add_argument("--json", type=Path, help="also write the numbers here")
    p.add_argument("--no-pen-widening", action="store_true", help="ablation: inputs leave thin pens alone")
    p.add_argument("--engines", action="store_true", help="also run the photos through onnxruntime (CPU)")
    args = p.parse_args()

    from digitcloud import photo

    if args.no_pen_widening:
        photo.THIN_PEN = 0.0  # the forked workers inherit it

    from digitcloud import model
    from train.data import read_mnist_idx

    data = read_mnist_idx(args.data)
    digits, labels = data.images[-args.n :], data.labels[-args.n :]
    photos, read, conditions = build(digits, args.seed, args.workers)
    print(f"{len(photos)} photos from the last {args.n} MNIST train digits; pipeline read {read.mean():.2%}")
    device = "cuda" if model.import_torch().cuda.is_available() else "cpu"
    results = {}
    for path, sha in args.weights or [(str(model.WEIGHTS.path), model.WEIGHTS.sha256)]:
        net = model.prepare(model.load_model(path=Path(path), sha256=sha, device=device))
        predicted = model.predict_probabilities(net, photos, batch_size=1024).argmax(1)
        correct = read & (predicted == labels)
        results[Path(path).name] = report(correct, conditions)
        r = results[Path(path).name]
        print(f"{Path(path).name}: photo-set accuracy {r['accuracy']:.2%} ({r['errors']} wrong of {len(photos)})")
        for key, values in r["by"].items():
            print(f"  {key:7s} " + "  ".join(f"{v} {a:.2%}" for v, a in values.items()))
        if device == "cpu" and args.engines:  # the local backend's default engine, on the same photos
            from torch import fx

            from digitcloud.onnx_graph import OnnxModel

            assert isinstance(net, fx.GraphModule)  # what model.prepare makes, and onnx_graph translates
            fast = OnnxModel(net, num_threads=os.cpu_count() or 1).predict(photos, batch_size=256).argmax(1)
            r["onnxruntime"] = {
                "accuracy": float((read & (fast == labels)).mean()),
                "differ": int((fast != predicted).sum()),
            }
            print(
                f"  onnxruntime engine: {r['onnxruntime']['accuracy']:.2%}, "
                f"{r['onnxruntime']['differ']} answers differ from torch's"
            )
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
