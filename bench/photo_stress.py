"""Where the photo pipeline breaks: one condition at a time, pushed past ``photo_set.py``'s ranges.

    python bench/photo_stress.py --data ../shared/data/mnist [--n 400] [CONDITION ...]

``photo_set.py`` draws every condition at random, so a cliff at one end of one range shows as a
fraction of a percent overall. Here each named condition renders the same last ``--n`` MNIST train
digits (the validation tail) with only that condition changed from a plain photo: 400x400 px,
white paper, the digit half the photo's height, light noise and blur, PNG. Each photo goes
through ``digitcloud.inputs.decode`` and the shipped model (or each ``--weights FILE SHA256``, side
by side on the same photos); printed per condition: accuracy and how many photos the pipeline
could not read, with the first such error. Seeded; nothing is written
to disk (the photos are MNIST-derived).
"""

from __future__ import annotations

import argparse
import functools
import multiprocessing
import os
import sys
import zlib
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageFilter

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.synthetic import (
    boxed,
    dust,
    encode,
    fingertip,
    glare,
    marked_round,
    on_desk,
    pen_on_page,
    photograph,
    ruled,
    shadow,
    vignette,
)

PLAIN: dict[str, Any] = {
    "size": (400, 400),  # photo width, height
    "paper": "white",
    "height": 0.5,  # the digit's height over the photo's shorter side
    "noise": 3.0,  # sensor noise, standard deviation in grey levels
    "blur": 0.5,  # Gaussian blur radius per 400 px of the photo's shorter side
    "gradient": 0.0,  # light falling linearly by this share across the photo, in a random direction
    "vignette": 0.0,  # light falling by this share from the centre to the corners
    "shadow": 0.0,  # a soft-edged shadow over part of the photo, darkening it by this share
    "pen": (25, 28, 60),  # ink colour (RGB)
    "pen_change": 0.0,  # MNIST pixels added to (thicker) or taken from (thinner) the stroke
    "ruling": None,  # paper lines: tests.synthetic.ruled's arguments, the spacing over the digit's side
    "line": (150, 185, 230),  # their colour (RGB): a notebook's light blue
    "along_lines": False,  # the digit turned with the ruling's tilt: written on its lines, the page photographed askew
    "box": None,  # a printed box round the digit, centred: tests.synthetic.boxed's arguments; in colour "line"
    "desk": None,  # the page photographed lying on a desk: tests.synthetic.on_desk's arguments
    "fingertip": 0.0,  # a fingertip reaching in from an edge, this share of the side across (0: none)
    "dust": 0,  # specks of dust or dirt on the photo (tests.synthetic.dust), up to 3 px across
    "glare": 0.0,  # a lamp's highlight on glossy paper, washing this share towards white (0: none)
    "pen_on_page": None,  # the pen lying on the page: "level" (near its top or bottom) or "upright" (a side)
    "pen_thick": 0.07,  # ... that share of the picture thick: 0.07 about the digit's own strokes
    "turn": 0.0,  # the digit turned by this many degrees on the page, either way: a phone held askew over plain paper
    "keystone": 0.0,  # the phone tilted back: the photo's top row takes in this share of its width more each side
    "shake": 0.0,  # a hand's shake: a horizontal blur this many pixels long per 400 px of the shorter side
    "exposure": 1.0,  # the camera's gain on every pixel, clipped at white (below 1: underexposed)
    "tint": (255, 255, 255),  # the light's colour (RGB), multiplying the photo's: (255, 200, 130) is a bulb's
    "crop": None,  # the photo cropped to the ink's bounds plus this share of the digit's size round it
    "mark": None,  # drawn round the digit in its pen (tests.synthetic.marked_round): "underline", "circle"…
    "format": "PNG",
    "quality": 90,
}


def plain(**changes: Any) -> dict[str, Any]:
    return {**PLAIN, **changes}


CONDITIONS: dict[str, dict[str, Any]] = {
    "plain": plain(),
    "1000 px, digit 0.3 high": plain(size=(1000, 750), height=0.3),
    "1000 px, digit 0.15 high": plain(size=(1000, 750), height=0.15),
    "1000 px, digit 0.1 high": plain(size=(1000, 750), height=0.1),
    "60 px, digit 0.5 high": plain(size=(60, 60), blur=0.1),
    "light gradient 0.6": plain(gradient=0.6),
    "thin pen, small, gradient 0.6": plain(gradient=0.6, pen_change=-1.0, size=(800, 600), height=0.2),
    "vignette 0.4": plain(vignette=0.4),
    "vignette 0.6": plain(vignette=0.6),
    "vignette 0.8": plain(vignette=0.8),
    "shadow 0.4": plain(shadow=0.4),
    "shadow 0.6": plain(shadow=0.6),
    "shadow 0.4, vignette 0.5": plain(shadow=0.4, vignette=0.5),
    "noise 30": plain(noise=30.0),
    "blur 4": plain(blur=4.0),
    "JPEG quality 15": plain(format="JPEG", quality=15),
    "pencil (grey ink 160)": plain(pen=(160, 160, 160)),
    "blue ink on blue paper": plain(paper="blue", pen=(30, 50, 170)),
    "pen +1.6 px": plain(pen_change=1.6),
    "pen +2.5 px": plain(pen_change=2.5),
    "pen -1.0 px": plain(pen_change=-1.0),
    "pen -1.6 px": plain(pen_change=-1.6),
    "ruled paper": plain(ruling={"spacing": 0.8}),
    "ruled paper, turned 4 degrees": plain(ruling={"spacing": 0.8, "tilt": 4.0}),
    "ruled paper, small digit": plain(size=(1000, 750), height=0.15, ruling={"spacing": 0.8, "tilt": -2.0}),
    "ruled paper, grey lines": plain(ruling={"spacing": 0.8, "tilt": 1.0}, line=(120, 120, 120)),
    "squared paper": plain(ruling={"spacing": 0.3, "squared": True}),
    "squared paper, turned 3 degrees": plain(ruling={"spacing": 0.3, "squared": True, "tilt": 3.0}),
    "ruled paper, turned 10 degrees, the digit level": plain(ruling={"spacing": 0.8, "tilt": 10.0}),
    "squared paper, turned 12 degrees, the digit level": plain(ruling={"spacing": 0.3, "squared": True, "tilt": -12.0}),
    "ruled paper, turned 20 degrees, the digit level": plain(ruling={"spacing": 0.8, "tilt": 20.0}),
    "ruled paper, turned 30 degrees, the digit level": plain(ruling={"spacing": 0.8, "tilt": -30.0}),
    "squared paper, turned 25 degrees, the digit level": plain(ruling={"spacing": 0.3, "squared": True, "tilt": 25.0}),
    "ruled paper, turned 12 degrees, the digit with it": plain(ruling={"spacing": 0.8, "tilt": 12.0}, along_lines=True),
    "ruled paper, turned 20 degrees, the digit with it": plain(
        ruling={"spacing": 0.8, "tilt": -20.0}, along_lines=True
    ),
    "ruled paper, turned 30 degrees, the digit with it": plain(ruling={"spacing": 0.8, "tilt": 30.0}, along_lines=True),
    "ruled paper, turned 40 degrees, the digit with it": plain(
        ruling={"spacing": 0.8, "tilt": -40.0}, along_lines=True
    ),
    "ruled paper 1.3 digits apart, turned 30 degrees, the digit with it": plain(
        ruling={"spacing": 1.3, "tilt": 30.0}, along_lines=True
    ),
    "squared paper, turned 25 degrees, the digit with it": plain(
        ruling={"spacing": 0.3, "squared": True, "tilt": -25.0}, along_lines=True
    ),
    "ruled paper, noise 30": plain(ruling={"spacing": 0.8}, noise=30.0),
    "ruled paper, vignette 0.6": plain(ruling={"spacing": 0.8}, vignette=0.6),
    "ruled paper, shadow 0.4": plain(ruling={"spacing": 0.8}, shadow=0.4),
    "ruled paper, blur 4": plain(ruling={"spacing": 0.8}, blur=4.0),
    "ruled paper, JPEG quality 15": plain(ruling={"spacing": 0.8}, format="JPEG", quality=15),
    "ruled paper, underexposed 0.35": plain(ruling={"spacing": 0.8}, exposure=0.35),
    "squared paper, noise 30": plain(ruling={"spacing": 0.3, "squared": True}, noise=30.0),
    "squared paper, vignette 0.6": plain(ruling={"spacing": 0.3, "squared": True}, vignette=0.6),
    "ruled paper, turned 30 degrees, the digit with it, noise 30": plain(
        ruling={"spacing": 0.8, "tilt": 30.0}, along_lines=True, noise=30.0
    ),
    "ruled paper, turned 30 degrees, the digit with it, vignette 0.6": plain(
        ruling={"spacing": 0.8, "tilt": 30.0}, along_lines=True, vignette=0.6
    ),
    "page on a dark desk": plain(desk={"desk": "dark wood"}),
    "page on a light wood desk, turned 5 degrees": plain(desk={"desk": "light wood", "turn": 5.0}),
    "page on a grey desk, turned -12 degrees": plain(desk={"desk": "grey", "turn": -12.0}),
    "page on a dark desk, turned 20 degrees": plain(desk={"desk": "dark wood", "turn": 20.0}),
    "page on a dark desk, turned 30 degrees": plain(desk={"desk": "dark wood", "turn": -30.0}),
    "page on a dark desk, turned 40 degrees": plain(desk={"desk": "dark wood", "turn": 40.0}),
    "sticky note on a desk": plain(height=0.35, desk={"desk": "dark wood", "border": 1.0, "turn": 8.0}),
    "desk along two edges": plain(desk={"desk": "light wood", "border": 0.1, "turn": 3.0, "at": (1.0, 1.0)}),
    "desk in the corners": plain(desk={"desk": "grey", "border": 0.02, "turn": 6.0, "at": (0.5, 0.5)}),
    "printed box": plain(box={"margin": 0.15}, line=(30, 30, 30)),
    "printed box, light blue": plain(box={"margin": 0.15}, line=(150, 185, 230)),
    "printed box, close round the digit": plain(box={"margin": 0.22}, line=(30, 30, 30)),
    "printed box, turned 2 degrees": plain(box={"margin": 0.15, "tilt": 2.0}, line=(30, 30, 30)),
    "printed box, turned 8 degrees": plain(box={"margin": 0.15, "tilt": 8.0}, line=(30, 30, 30)),
    "printed box, turned 15 degrees": plain(box={"margin": 0.15, "tilt": 15.0}, line=(30, 30, 30)),
    "fingertip at the edge": plain(fingertip=0.12),
    "big fingertip at the edge": plain(fingertip=0.2),
    "dust specks": plain(dust=8),
    "dust specks, thin pen": plain(dust=8, pen_change=-1.0),
    "dust specks, small digit": plain(size=(1000, 750), height=0.15, dust=20),
    "glare 0.6": plain(glare=0.6),
    "glare 0.9": plain(glare=0.9),
    "pen lying on the page": plain(pen_on_page="level"),
    "pen lying upright beside the digit": plain(pen_on_page="upright"),
    "pen lying upright beside the digit, twice as thick": plain(pen_on_page="upright", pen_thick=0.14),
    "turned 10 degrees": plain(turn=10.0),
    "turned 15 degrees": plain(turn=15.0),
    "turned 20 degrees": plain(turn=20.0),
    "turned 25 degrees": plain(turn=25.0),
    "turned 30 degrees": plain(turn=30.0),
    "phone tilted back 0.15": plain(keystone=0.15),
    "shaken 7 px": plain(shake=7.0),
    "shaken 15 px": plain(shake=15.0),
    "underexposed 0.35": plain(exposure=0.35),
    "overexposed 1.6": plain(exposure=1.6),
    "light bulb's tint": plain(tint=(255, 200, 130)),
    "red ink": plain(pen=(190, 30, 35)),
    "green ink": plain(pen=(20, 110, 45)),
    "light blue ballpoint": plain(pen=(70, 100, 210)),
    "cropped to the ink": plain(crop=0.0),
    "cropped close, 0.03 round": plain(crop=0.03),
    "underlined": plain(mark="underline"),
    "circled": plain(mark="circle"),
    "circled tightly": plain(mark="tight circle"),
    "a box drawn round it": plain(mark="box"),
}


def render(digit: np.ndarray, c: dict[str, Any], rng: np.random.Generator) -> bytes:
    """One 28x28 MNIST digit (light on dark) as an encoded photo under conditions ``c``."""
    w, h = c["size"]
    side = max(8, int(min(w, h) * c["height"]))
    work = max(side, 280)  # pen changes are made at >= 280 px, as in photo_set.py
    ink = np.asarray(Image.fromarray(digit).resize((work, work), Image.Resampling.BICUBIC), np.float32) / 255
    ink = np.clip((ink - 0.2) / 0.6, 0, 1)  # a pen's edge: upscaled MNIST is soft
    glyph = Image.fromarray((ink * 255).astype(np.uint8))
    if c["pen_change"]:
        k = int(work / 28 * abs(c["pen_change"])) | 1
        glyph = glyph.filter(ImageFilter.MaxFilter(k) if c["pen_change"] > 0 else ImageFilter.MinFilter(k))
    if c["turn"]:
        glyph = glyph.rotate(c["turn"] * rng.choice([-1, 1]), Image.Resampling.BICUBIC)
    if c["along_lines"]:
        glyph = glyph.rotate(-c["ruling"]["tilt"], Image.Resampling.BICUBIC)  # ruled() turns its lines clockwise
    if c["mark"]:
        glyph = marked_round(glyph, c["mark"], rng)
    ruling = None
    if c["ruling"]:
        ruling = ruled(**{**c["ruling"], "spacing": c["ruling"]["spacing"] * side})
    elif c["box"]:
        ruling = boxed(**c["box"])
    photo = photograph(
        glyph.resize((side, side), Image.Resampling.LANCZOS),  # photograph() places it as it is
        rng,
        size=(w, h),
        paper=c["paper"],
        digit_height=c["height"],
        noise=c["noise"],
        blur=c["blur"] * min(w, h) / 400,
        pen=c["pen"],
        lighting=functools.partial(light, c),
        offset=(0.5, 0.5) if c["box"] else None,
        ruling=ruling,
        line=c["line"],
    )
    if c["desk"]:
        photo = on_desk(photo, rng, **c["desk"])
    if c["fingertip"]:
        photo = fingertip(photo, rng, c["fingertip"])
    if c["dust"]:
        photo = dust(photo, rng, c["dust"])
    if c["glare"]:
        photo = glare(photo, rng, c["glare"])
    if c["pen_on_page"]:
        photo = pen_on_page(photo, rng, upright=c["pen_on_page"] == "upright", thick=c["pen_thick"])
    photo = camera(photo, c)
    return encode(photo, c["format"], **({"quality": c["quality"]} if c["format"] == "JPEG" else {}))


def camera(photo: Image.Image, c: dict[str, Any]) -> Image.Image:
    """What the phone does to the photo of the page, as ``c`` asks: its tilt, shake, exposure and
    light's colour, then a crop."""
    w, h = photo.size
    if c["keystone"]:  # QUAD maps this source quadrilateral (its top wider than the photo) onto the photo
        d = c["keystone"] * w
        paper = tuple(int(v) for v in np.median(np.asarray(photo).reshape(-1, 3), axis=0))
        quad = (-d, 0, 0, h, w, h, w + d, 0)
        photo = photo.transform((w, h), Image.Transform.QUAD, quad, Image.Resampling.BILINEAR, fillcolor=paper)
    if c["shake"] or c["exposure"] != 1.0 or c["tint"] != (255, 255, 255):
        rgb = np.asarray(photo, np.float32)
        if c["shake"]:
            k = max(2, round(c["shake"] * min(w, h) / 400))
            rgb = np.mean([np.roll(rgb, i - k // 2, axis=1) for i in range(k)], axis=0)
        rgb = rgb * c["exposure"] * np.array(c["tint"], np.float32) / 255
        photo = Image.fromarray(np.clip(rgb, 0, 255).astype(np.uint8))
    if c["crop"] is not None:
        grey = np.asarray(photo.convert("L"))
        ys, xs = np.nonzero(grey < 0.6 * np.median(grey))
        m = round(c["crop"] * max(np.ptp(ys), np.ptp(xs)))
        photo = photo.crop(
            (max(0, xs.min() - m), max(0, ys.min() - m), min(w, xs.max() + 1 + m), min(h, ys.max() + 1 + m))
        )
    return photo


def light(c: dict[str, Any], rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """The light on each pixel of an ``h x w`` photo: a gradient, a vignette and a shadow, as ``c`` asks."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    factor = np.ones((h, w), np.float32)
    if c["gradient"]:
        angle = rng.uniform(0, 2 * np.pi)
        t = np.cos(angle) * xx / w + np.sin(angle) * yy / h
        factor *= 1 - c["gradient"] * (t - t.min()) / (np.ptp(t) + 1e-6)
    if c["vignette"]:
        factor *= vignette(c["vignette"])(rng, h, w)
    if c["shadow"]:
        angle, at = rng.uniform(0, 2 * np.pi), rng.uniform(0.2, 0.8)
        factor *= shadow(c["shadow"], at, angle)(rng, h, w)
    return factor


def _read_back(job: tuple[np.ndarray, str, int]) -> tuple[np.ndarray | None, str]:
    from digitcloud import inputs

    digit, name, index = job
    rng = np.random.default_rng([zlib.crc32(name.encode()), index])
    try:
        return inputs.decode(render(digit, CONDITIONS[name], rng)), ""
    except inputs.InputError as exc:
        return None, str(exc)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("conditions", nargs="*", metavar="CONDITION", help=f"default: all of {list(CONDITIONS)}")
    p.add_argument("--data", type=Path, default=Path("../shared/data/mnist"))
    p.add_argument("--n", type=int, default=400, help="photos per condition, from the last N MNIST train digits")
    p.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    p.add_argument(
        "--weights", nargs=2, action="append", metavar=("FILE", "SHA256"), help="default: the shipped; repeatable"
    )
    args = p.parse_args()
    unknown = [c for c in args.conditions if c not in CONDITIONS]
    if unknown:
        p.error(f"unknown condition(s) {unknown}; choose from {list(CONDITIONS)}")

    from digitcloud import model
    from train.data import read_mnist_idx

    data = read_mnist_idx(args.data)
    digits, labels = data.images[-args.n :], data.labels[-args.n :]
    weights = args.weights or [(str(model.WEIGHTS.path), model.WEIGHTS.sha256)]
    nets = [model.prepare(model.load_model(path=Path(path), sha256=sha)) for path, sha in weights]
    if len(nets) > 1:
        names = (Path(path).stem.removeprefix("digitcloud-resnet34-") for path, _ in weights)
        print(f"{'':32s} " + " ".join(f"{short:>9.9s}" for short in names))
    with multiprocessing.get_context("fork").Pool(args.workers) as pool:
        for name in args.conditions or list(CONDITIONS):
            results = pool.map(_read_back, [(d, name, i) for i, d in enumerate(digits)], chunksize=16)
            read = np.array([r[0] is not None for r in results])
            photos = np.stack([r[0] if r[0] is not None else np.zeros((28, 28), np.uint8) for r in results])
            right = [
                read & (model.predict_probabilities(net, photos, batch_size=512).argmax(1) == labels) for net in nets
            ]
            first = next((r[1] for r in results if r[1]), "")
            scores = " ".join(f"{correct.mean():9.2%}" for correct in right)
            print(f"{name:32s} {scores}  unread {int((~read).sum()):4d}  {first}", flush=True)


if __name__ == "__main__":
    main()
