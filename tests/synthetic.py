"""Digits the project draws itself: pen strokes for 0-9, and "photos" of them on paper.

Used by the tests, the benchmarks and ``examples/`` (no MNIST-derived file is ever committed).
Regenerate the examples with ``python -m tests.synthetic examples/``.
"""

from __future__ import annotations

import io
import math
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

Stroke = list[tuple[float, float]]


def _arc(cx: float, cy: float, rx: float, ry: float, start: float, stop: float, n: int = 24) -> Stroke:
    """Points on an ellipse, angles in degrees (0 = right, 90 = down: screen coordinates)."""
    angles = np.radians(np.linspace(start, stop, n))
    return [(cx + rx * math.cos(a), cy + ry * math.sin(a)) for a in angles]


# Each digit as strokes in a unit box (x right, y down), drawn the way people write them.
TEMPLATES: dict[int, list[Stroke]] = {
    0: [_arc(0.5, 0.5, 0.3, 0.45, 0, 360, 40)],
    1: [[(0.36, 0.2), (0.55, 0.04), (0.55, 0.96)]],
    2: [[*_arc(0.5, 0.3, 0.28, 0.25, 200, 380), (0.2, 0.95), (0.84, 0.95)]],
    3: [_arc(0.5, 0.28, 0.25, 0.23, 200, 450), _arc(0.5, 0.72, 0.28, 0.25, 270, 520)],
    4: [[(0.66, 0.96), (0.66, 0.04), (0.14, 0.66), (0.88, 0.66)]],
    5: [[(0.76, 0.05), (0.3, 0.05), (0.27, 0.47), *_arc(0.48, 0.68, 0.28, 0.26, 215, 500)]],
    6: [[(0.7, 0.04), (0.4, 0.33), (0.26, 0.68), *_arc(0.48, 0.72, 0.22, 0.22, 180, 540, 36)]],
    7: [[(0.14, 0.06), (0.86, 0.06), (0.42, 0.96)]],
    8: [_arc(0.5, 0.27, 0.21, 0.22, 0, 360, 32), _arc(0.5, 0.72, 0.26, 0.24, 0, 360, 32)],
    9: [_arc(0.5, 0.3, 0.24, 0.23, 0, 360, 32), [(0.74, 0.3), (0.62, 0.96)]],
}

# Digits written with a straight stroke lifted off the rest, which then stands apart as a pen lying
# on the page would (digitcloud.clutter._is_lying_bar must keep them): name -> (digit, strokes).
APART: dict[str, tuple[int, list[Stroke]]] = {
    "4, stem apart": (4, [[(0.44, 0.16), (0.1, 0.66), (0.5, 0.66)], [(0.68, 0.04), (0.68, 0.96)]]),
    "4, short arm": (4, [[(0.42, 0.3), (0.14, 0.72), (0.46, 0.72)], [(0.66, 0.04), (0.66, 0.96)]]),
    "7, bar apart": (7, [[(0.1, 0.06), (0.7, 0.06)], [(0.86, 0.2), (0.42, 0.96)]]),
    "5, flag apart": (5, [[(0.86, 0.04), (0.36, 0.04)], [(0.26, 0.2), *_arc(0.48, 0.68, 0.28, 0.26, 215, 500)]]),
    "5, long flag apart": (5, [[(0.34, 0.14), (1.12, -0.04)], [(0.3, 0.32), *_arc(0.44, 0.66, 0.18, 0.18, 215, 500)]]),
    "1, with a dot": (1, [*TEMPLATES[1], [(0.86, 0.9), (0.87, 0.9)]]),
    "2, base apart": (2, [[*_arc(0.5, 0.3, 0.28, 0.25, 200, 380), (0.28, 0.8)], [(0.12, 0.97), (0.9, 0.97)]]),
}

# Digits with a long straight stroke the rest touches, as a pen lying across the digit would
# (digitcloud.clutter._touching_bar must keep them), drawn exact: name -> (digit, strokes).
LONG_STROKE: dict[str, tuple[int, list[Stroke]]] = {
    "2, base 1.9 times its body": (
        2,
        [[*_arc(0.5, 0.32, 0.16, 0.16, 200, 380), (0.38, 0.62), (0.14, 0.62), (0.86, 0.62)]],
    ),
    "7, bar nearly three times its stem, the stem at its end": (7, [[(0.05, 0.3), (0.95, 0.3), (0.95, 0.68)]]),
}


# Ways people write a digit that MNIST's American writers rarely used, drawn as in TEMPLATES
# (bench/handwriting_styles.py reads them): name -> (digit, strokes).
STYLES: dict[str, tuple[int, list[Stroke]]] = {
    "1, short flag (TEMPLATES)": (1, TEMPLATES[1]),
    "1, long flag (European)": (1, [[(0.22, 0.36), (0.58, 0.04), (0.58, 0.96)]]),
    "1, flag half its height": (1, [[(0.18, 0.5), (0.58, 0.04), (0.58, 0.96)]]),
    "1, flag and base": (1, [[(0.36, 0.2), (0.55, 0.04), (0.55, 0.96)], [(0.3, 0.96), (0.8, 0.96)]]),
    "1, one stroke": (1, [[(0.5, 0.04), (0.5, 0.96)]]),
    "7 (TEMPLATES)": (7, TEMPLATES[7]),
    "7, crossed": (7, [[(0.14, 0.06), (0.86, 0.06), (0.42, 0.96)], [(0.4, 0.5), (0.84, 0.5)]]),
    "7, with a hook": (7, [[(0.14, 0.2), (0.14, 0.06), (0.86, 0.06), (0.42, 0.96)]]),
    "4, closed (TEMPLATES)": (4, TEMPLATES[4]),
    "4, open top": (4, [[(0.5, 0.04), (0.14, 0.66), (0.88, 0.66)], [(0.66, 0.3), (0.66, 0.96)]]),
    "9, curved tail": (
        9,
        [_arc(0.5, 0.3, 0.24, 0.23, 0, 360, 32), [(0.74, 0.3), (0.72, 0.7), (0.6, 0.92), (0.4, 0.96)]],
    ),
    "2, with a loop": (
        2,
        [[*_arc(0.5, 0.3, 0.28, 0.25, 200, 380), (0.3, 0.86), *_arc(0.3, 0.9, 0.08, 0.06, 270, 630, 12), (0.84, 0.95)]],
    ),
    "0, slashed": (0, [_arc(0.5, 0.5, 0.3, 0.45, 0, 360, 40), [(0.75, 0.1), (0.25, 0.9)]]),
}


def draw_digit(
    digit: int,
    rng: np.random.Generator,
    size: int = 112,
    width: float | None = None,
    strokes: list[Stroke] | None = None,
    exact: bool = False,
) -> Image.Image:
    """A hand-drawn-looking digit: white ink on black, ``size`` px square, with random wobble,
    slant and stroke width; ``strokes`` in place of the digit's own (``APART``, ``LONG_STROKE``);
    ``exact``: the strokes as they are, without wobble, slant or squeeze."""
    scale = 4  # draw big, shrink with anti-aliasing
    canvas = size * scale
    img = Image.new("L", (canvas, canvas), 0)
    draw = ImageDraw.Draw(img)
    angle = 0.0 if exact else math.radians(rng.uniform(-10, 10))
    shear = 0.0 if exact else rng.uniform(-0.25, 0.1)
    sx, sy = (1.0, 1.0) if exact else (rng.uniform(0.75, 1.0), rng.uniform(0.9, 1.0))
    stroke = (width if width is not None else rng.uniform(0.07, 0.12)) * canvas * 0.7
    for points in strokes or TEMPLATES[digit]:
        pts = np.array(points) + (0.0 if exact else rng.normal(0, 0.012, (len(points), 2)))
        pts -= 0.5
        pts[:, 0] = pts[:, 0] * sx + shear * pts[:, 1]
        pts[:, 1] *= sy
        rot = np.array([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]])
        pts = pts @ rot.T * 0.7 + 0.5
        xy = [(float(x * canvas), float(y * canvas)) for x, y in pts]
        draw.line(xy, fill=255, width=max(1, int(stroke)), joint="curve")
        r = stroke / 2
        for x, y in (xy[0], xy[-1]):  # round pen tips
            draw.ellipse((x - r, y - r, x + r, y + r), fill=255)
    return img.resize((size, size), Image.Resampling.LANCZOS)


PAPERS = {
    "white": (246, 246, 244),
    "cream": (242, 232, 205),
    "grey": (200, 200, 198),
    "blue": (214, 226, 242),
}


Lighting = Callable[[np.random.Generator, int, int], np.ndarray]  # (rng, h, w) -> light on each pixel
Ruling = Callable[[np.random.Generator, int, int], np.ndarray]  # (rng, h, w) -> how much line covers each pixel


def photograph(
    ink: Image.Image,
    rng: np.random.Generator,
    *,
    size: tuple[int, int] = (640, 480),
    paper: str = "white",
    digit_height: float = 0.45,
    offset: tuple[float, float] | None = None,
    noise: float = 6.0,
    blur: float = 0.8,
    light_gradient: float = 0.15,
    pen: tuple[int, int, int] = (25, 28, 60),
    lighting: Lighting | None = None,
    ruling: Ruling | None = None,
    line: tuple[int, int, int] = (150, 185, 230),
) -> Image.Image:
    """``ink`` (white on black) as a dark-ink-on-paper RGB photo: placed off-centre, with an uneven
    light gradient, a little blur and sensor noise.

    ``pen`` is the ink's colour (jittered); ``lighting(rng, h, w)``, when given, returns the light
    falling on each pixel (an ``h x w`` map of factors) in place of the left-to-right gradient;
    ``ruling(rng, h, w)``, when given, prints lines of colour ``line`` on the paper, under the ink."""
    w, h = size
    side = max(8, int(min(w, h) * digit_height))
    glyph = np.asarray(ink.resize((side, side), Image.Resampling.BICUBIC), dtype=np.float32) / 255.0
    if offset is None:
        offset = (rng.uniform(0.1, 0.9), rng.uniform(0.15, 0.85))
    x0 = int(np.clip(offset[0] * w - side / 2, 0, w - side))
    y0 = int(np.clip(offset[1] * h - side / 2, 0, h - side))
    coverage = np.zeros((h, w), dtype=np.float32)
    coverage[y0 : y0 + side, x0 : x0 + side] = glyph
    paper_rgb = np.array(PAPERS[paper], dtype=np.float32)
    if ruling is not None:
        lined = ruling(rng, h, w)[..., None]
        paper_rgb = paper_rgb * (1 - lined) + np.array(line, dtype=np.float32) * lined
    pen_rgb = np.array(pen, dtype=np.float32) + rng.uniform(-10, 10, 3)
    img = paper_rgb * (1 - coverage[..., None]) + pen_rgb * coverage[..., None]
    if lighting is not None:
        light = lighting(rng, h, w)[..., None]
    else:
        light = np.linspace(1 - light_gradient, 1.0, w, dtype=np.float32)[None, :, None]
    img = img * light + rng.normal(0, noise, img.shape)
    photo = Image.fromarray(np.clip(img, 0, 255).astype(np.uint8), "RGB")
    return photo.filter(ImageFilter.GaussianBlur(blur)) if blur else photo


def vignette(depth: float) -> Lighting:
    """Light falling from the centre to ``1 - depth`` in the corners, for ``photograph(lighting=…)``."""

    def light(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
        yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
        return 1 - depth * ((xx / w - 0.5) ** 2 + (yy / h - 0.5) ** 2) / 0.5

    return light


def shadow(depth: float, at: float, angle: float = 0.0, sharpness: float = 40.0) -> Lighting:
    """A shadow taking ``depth`` of the light off one side of a line through (``at``, 0.5) (shares
    of width and height) at ``angle`` (0: everything right of ``at``), its edge soft by ``sharpness``."""

    def light(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
        yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
        inside = np.cos(angle) * (xx / w - at) + np.sin(angle) * (yy / h - 0.5)
        return 1 - depth / (1 + np.exp(-inside * sharpness))

    return light


def ruled(spacing: float, width: float = 2.0, tilt: float = 0.0, squared: bool = False) -> Ruling:
    """Lines ``spacing`` px apart and ``width`` px wide (anti-aliased), turned ``tilt`` degrees,
    at a random phase: ruled paper, or with ``squared`` a grid of them, for ``photograph(ruling=…)``."""

    def lines(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
        yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
        a = math.radians(tilt)
        across = [yy * math.cos(a) - xx * math.sin(a)]
        if squared:
            across.append(xx * math.cos(a) + yy * math.sin(a))
        cover = np.zeros((h, w), np.float32)
        for t in across:
            distance = np.abs((t + rng.uniform(0, spacing)) % spacing - spacing / 2)  # from the nearest line
            cover = np.maximum(cover, np.clip(width / 2 + 0.5 - distance, 0, 1))
        return cover

    return lines


def boxed(margin: float, width: float = 2.0, tilt: float = 0.0) -> Ruling:
    """A printed box (a form's cell) centred on the photo, ``margin`` of its width and height in
    from each edge, its lines ``width`` px (anti-aliased), turned ``tilt`` degrees, for
    ``photograph(ruling=…)``."""

    def lines(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
        yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
        a = math.radians(tilt)
        u = (xx - w / 2) * math.cos(a) + (yy - h / 2) * math.sin(a)
        v = (yy - h / 2) * math.cos(a) - (xx - w / 2) * math.sin(a)
        outside = np.maximum(np.abs(u) - (0.5 - margin) * w, np.abs(v) - (0.5 - margin) * h)  # 0 on the box
        return np.clip(width / 2 + 0.5 - np.abs(outside), 0, 1)

    return lines


DESKS = {
    "dark wood": (62, 44, 32),
    "light wood": (172, 138, 98),
    "grey": (112, 112, 116),
}


def on_desk(
    page: Image.Image,
    rng: np.random.Generator,
    *,
    desk: str = "dark wood",
    border: float = 0.35,
    turn: float = 0.0,
    at: tuple[float, float] | None = None,
) -> Image.Image:
    """``page`` (a photo of the paper) lying on a desk with a wood grain, the picture ``1 + border``
    times its size: the page turned ``turn`` degrees and placed ``at`` (shares of the room left
    across and down; 0..1 keeps it whole, past that it runs off the picture; random when None)."""
    w, h = page.size
    width, height = round(w * (1 + border)), round(h * (1 + border))
    grain = 12 * np.sin(np.arange(width) / rng.uniform(5, 9) + rng.uniform(0, 6.3))[None, :, None]
    wood = np.array(DESKS[desk], np.float32) + grain + rng.normal(0, 6, (height, width, 3))
    picture = Image.fromarray(np.clip(wood, 0, 255).astype(np.uint8), "RGB")
    turned = page.convert("RGB").rotate(turn, Image.Resampling.BICUBIC, expand=True, fillcolor=DESKS[desk])
    cover = Image.new("L", page.size, 255).rotate(turn, Image.Resampling.BICUBIC, expand=True)
    if at is None:
        at = (rng.choice([rng.uniform(-0.1, 0.2), rng.uniform(0.8, 1.1)]), rng.uniform(-0.1, 1.1))
    x = round(at[0] * (width - turned.width))
    y = round(at[1] * (height - turned.height))
    picture.paste(turned, (x, y), cover)
    return picture


def fingertip(picture: Image.Image, rng: np.random.Generator, size: float = 0.12) -> Image.Image:
    """``picture`` with a fingertip reaching in from a random edge (the hand holding the page): a
    skin-coloured ellipse centred on that edge at a random place along it, ``size`` of the
    picture's side across and twice that long, its outline softened."""
    w, h = picture.size
    along = float(rng.uniform(0.2, 0.8))
    edge = int(rng.integers(4))  # bottom, top, left, right
    cx, cy = [(along * w, h), (along * w, 0), (0, along * h), (w, along * h)][edge]
    rx, ry = (size * w, 2 * size * h) if edge < 2 else (2 * size * w, size * h)
    reach = Image.new("L", picture.size, 0)
    ImageDraw.Draw(reach).ellipse((cx - rx, cy - ry, cx + rx, cy + ry), fill=255)
    out = picture.convert("RGB")
    out.paste(Image.new("RGB", picture.size, (214, 160, 130)), (0, 0), reach.filter(ImageFilter.GaussianBlur(3)))
    return out


def dust(
    picture: Image.Image,
    rng: np.random.Generator,
    count: int = 12,
    size: float = 3.0,
    clear: tuple[float, float, float, float] | None = None,
) -> Image.Image:
    """``picture`` with ``count`` specks of dust or dirt on it, as a scanner's glass or a dirty page
    shows them: dark grey dots 1 to ``size`` px across, anywhere (one may land on the digit) but in
    ``clear``, a box (left, top, right, bottom as shares of the picture's width and height)."""
    out = picture.convert("RGB")
    draw = ImageDraw.Draw(out)
    w, h = out.size
    placed = 0
    while placed < count:
        x, y = float(rng.uniform(0, w)), float(rng.uniform(0, h))
        r = float(rng.uniform(0.5, size / 2))
        shade = int(rng.uniform(20, 90))
        if clear and clear[0] * w <= x <= clear[2] * w and clear[1] * h <= y <= clear[3] * h:
            continue
        draw.ellipse((x - r, y - r, x + r, y + r), fill=(shade, shade, shade))
        placed += 1
    return out


def glare(picture: Image.Image, rng: np.random.Generator, strength: float = 0.9) -> Image.Image:
    """``picture`` under a soft highlight, as glossy paper reflects a lamp: an ellipse a fifth to
    a half of the picture wide, at a random place, washed towards white by up to ``strength``."""
    w, h = picture.size
    cx, cy, r = rng.uniform(0.2, 0.8) * w, rng.uniform(0.2, 0.8) * h, rng.uniform(0.1, 0.25) * w
    spot = Image.new("L", (w, h), 0)
    ImageDraw.Draw(spot).ellipse((cx - r, cy - 0.6 * r, cx + r, cy + 0.6 * r), fill=int(255 * strength))
    white = Image.new("RGB", (w, h), (255, 255, 255))
    return Image.composite(white, picture.convert("RGB"), spot.filter(ImageFilter.GaussianBlur(r / 3)))


def pen_on_page(
    picture: Image.Image,
    rng: np.random.Generator,
    upright: bool = False,
    at: float | None = None,
    thick: float = 0.07,
) -> Image.Image:
    """``picture`` with the pen that wrote the digit lying on the page: a dark rounded bar ``thick``
    of the picture's height thick (7 %: about as thick as a digit half the picture's height is
    written) and 80 % of its width long, near the top or the bottom (or its middle ``at`` that share
    of the height down), turned up to 10 degrees; ``upright``: the same turned a quarter, near the
    left or the right side (``at``: that share of the width in from the right)."""
    if upright:
        level = pen_on_page(picture.transpose(Image.Transpose.ROTATE_90), rng, at=at, thick=thick)
        return level.transpose(Image.Transpose.ROTATE_270)
    w, h = picture.size
    y = (float(rng.choice([0.1, 0.9])) if at is None else at) * 2 * h
    body = Image.new("L", (2 * w, 2 * h), 0)  # drawn at twice the size, for a smooth outline
    box = (0.2 * w, y - thick * h, 1.8 * w, y + thick * h)
    ImageDraw.Draw(body).rounded_rectangle(box, radius=thick * h * 6 / 7, fill=255)
    body = body.rotate(float(rng.uniform(-10, 10)), center=(w, y)).resize((w, h), Image.Resampling.LANCZOS)
    return Image.composite(Image.new("RGB", (w, h), (30, 30, 40)), picture.convert("RGB"), body)


def marked_round(glyph: Image.Image, mark: str, rng: np.random.Generator) -> Image.Image:
    """``glyph`` (ink white on black) on a canvas 1.6 times as wide, with ``mark`` drawn round the
    digit in a pen as wide as MNIST's (2.5 of its 28 px): "underline", a line 1.4 times the digit's
    width, centred, 0.15 of its height below it; "circle", an ellipse 0.35 of the digit's height out
    from it at the top, bottom and sides ("tight circle": 0.25; its corners then often touch it);
    "box", a rectangle a quarter of its height out from it. Each is a little askew at random."""
    side = round(glyph.width * 1.6)
    canvas = Image.new("L", (side, side))
    canvas.paste(glyph, ((side - glyph.width) // 2, (side - glyph.height) // 2))
    ys, xs = np.nonzero(np.asarray(canvas) > 128)
    top, bottom, cx, cy = ys.min(), ys.max(), (xs.min() + xs.max()) / 2, (ys.min() + ys.max()) / 2
    height = bottom - top
    width = max(xs.max() - xs.min(), height / 2)
    pen = round(glyph.width * 2.5 / 28)
    wobble = rng.uniform(-0.04, 0.04, 4) * height
    draw = ImageDraw.Draw(canvas)
    if mark == "underline":
        y = bottom + 0.15 * height
        draw.line([(cx - 0.7 * width, y + wobble[0]), (cx + 0.7 * width, y + wobble[1])], fill=255, width=pen)
    elif mark in ("circle", "tight circle"):
        out = 0.25 if mark == "tight circle" else 0.35
        rx, ry = width / 2 + out * height + wobble[0], (0.5 + out) * height + wobble[1]
        draw.ellipse([cx - rx, cy - ry, cx + rx, cy + ry], outline=255, width=pen)
    elif mark == "box":
        m = 0.25 * height
        corners = [(cx - width / 2 - m, top - m), (cx + width / 2 + m, top - m + wobble[0])]
        corners += [
            (cx + width / 2 + m + wobble[1], bottom + m),
            (cx - width / 2 - m + wobble[2], bottom + m + wobble[3]),
        ]
        draw.line([*corners, corners[0]], fill=255, width=pen, joint="curve")
    else:
        raise ValueError(f"unknown mark {mark!r}")
    return canvas


def encode(img: Image.Image, fmt: str = "PNG", exif_orientation: int | None = None, **params: object) -> bytes:
    """Encode ``img``; with ``exif_orientation`` the pixels are stored rotated and the EXIF tag
    says how to turn them upright (6: the camera was turned 90° clockwise)."""
    buf = io.BytesIO()
    if exif_orientation is not None:
        exif = Image.Exif()
        exif[0x0112] = exif_orientation
        stored = {3: Image.Transpose.ROTATE_180, 6: Image.Transpose.ROTATE_90, 8: Image.Transpose.ROTATE_270}
        img = img.transpose(stored[exif_orientation])
        params["exif"] = exif.tobytes()
    if fmt == "HEIC":
        # pillow-heif's encoder (x265), not registered with Pillow, so only the code under test reads
        # HEIC; an EXIF orientation becomes the file's rotation (irot) beside the EXIF, as an iPhone writes it
        import pillow_heif

        heif = pillow_heif.from_pillow(img if img.mode in ("RGB", "RGBA") else img.convert("RGB"))
        if "exif" in params:
            heif.info["exif"] = params.pop("exif")
        heif.save(buf, **params)
    else:
        img.save(buf, fmt, **params)
    return buf.getvalue()


def tiff_with_previews(page: Image.Image, *sizes: int) -> bytes:
    """A one-page TIFF followed by reduced-resolution copies of the page, ``sizes`` px square, marked
    as previews (NewSubfileType 1), as some scanners and cameras write them."""
    previews = [page.resize((size, size)) for size in sizes]
    for preview in previews:
        preview.encoderinfo = {"tiffinfo": {254: 1}}  # per-picture options of Pillow's save_all
    return encode(page, "TIFF", save_all=True, append_images=previews)


def files_of_several_pictures(first: Image.Image, *more: Image.Image) -> dict[str, bytes]:
    """``first`` and ``more`` as the pages or frames of one file, in each format that holds several
    (WebP's animation from RGB frames): inputs that decode refuses as several pictures."""
    webp = [picture.convert("RGB") for picture in more]
    return {
        "tiff-pages": encode(first, "TIFF", save_all=True, append_images=list(more)),
        "gif-frames": encode(first, "GIF", save_all=True, append_images=list(more)),
        "apng": encode(first, "PNG", save_all=True, append_images=list(more)),
        "webp-frames": encode(first.convert("RGB"), "WEBP", save_all=True, append_images=webp),
    }


def write_examples(folder: Path, seed: int = 7) -> list[Path]:
    """The images in examples/: photo-style digits of each kind a user might have."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    specs = [
        (0, "white", (400, 300), "PNG"),
        (1, "cream", (320, 240), "JPEG"),
        (2, "white", (300, 400), "PNG"),
        (3, "grey", (480, 360), "JPEG"),
        (4, "blue", (360, 360), "PNG"),
        (5, "white", (600, 450), "JPEG"),
        (6, "cream", (240, 320), "PNG"),
        (7, "white", (800, 600), "JPEG"),
        (8, "blue", (300, 300), "WEBP"),
        (9, "white", (360, 270), "PNG"),
    ]
    names = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
    for digit, paper, size, fmt in specs:
        photo = photograph(draw_digit(digit, rng), rng, size=size, paper=paper)
        suffix = {"PNG": ".png", "JPEG": ".jpg", "WEBP": ".webp"}[fmt]
        path = folder / f"{names[digit]}{suffix}"
        path.write_bytes(encode(photo, fmt, **({"quality": 90} if fmt != "PNG" else {})))
        written.append(path)
    return written


def write_styles(folder: Path, per_class: int, leave_out: tuple[str, ...] = (), seed: int = 12345) -> int:
    """A training folder (``0/`` … ``9/``, ``python -m train --extra-data``) of drawn digits, white on
    black: per digit ``per_class`` of them, cycling through its ``TEMPLATES`` strokes and each of its
    ``STYLES`` not named in ``leave_out``. Returns how many were written."""
    unknown = set(leave_out) - set(STYLES)
    if unknown:
        raise ValueError(f"no such style(s) {sorted(unknown)}; the styles are {list(STYLES)}")
    rng = np.random.default_rng(seed)
    written = 0
    for digit in range(10):
        ways = [TEMPLATES[digit]] + [
            strokes
            for name, (d, strokes) in STYLES.items()
            # STYLES names some templates too ("… (TEMPLATES)"): each way of writing counted once
            if d == digit and strokes is not TEMPLATES[digit] and name not in leave_out
        ]
        (folder / str(digit)).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            draw_digit(digit, rng, strokes=ways[i % len(ways)]).save(folder / str(digit) / f"{i:05d}.png")
            written += 1
    return written


if __name__ == "__main__":
    # python -m tests.synthetic [examples/]                             the example photos
    # python -m tests.synthetic styles OUT PER_CLASS ["STYLE" ...]      write_styles, those styles left out
    if sys.argv[1:2] == ["styles"]:
        print(write_styles(Path(sys.argv[2]), int(sys.argv[3]), tuple(sys.argv[4:])), "digits written")
    else:
        for p in write_examples(Path(sys.argv[1] if len(sys.argv) > 1 else "examples")):
            print(p)
