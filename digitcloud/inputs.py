"""Anything a user has -> 28x28 uint8 MNIST-style digits (light ink on dark). numpy + Pillow only.

Two steps, so one bad item never stops the batch:

* ``expand(images)`` walks the user's argument(s) and yields one ``Item`` per image it names:
  a directory or a glob gives its files, an ``[N, H, W]`` array its N digits, a Kaggle CSV its rows.
* ``Item.load()`` turns one item into a digit with the MNIST recipe (``normalize_image``), or
  raises ``InputError`` naming the item. ``load_items`` does that for a list, keeping errors as
  values.

This module is shared with ``predict.py``, so a raw photo gives the same 28x28 in the cloud as
locally. It never imports torch: a torch tensor is recognised by duck typing.

The MNIST recipe (LeCun et al.): EXIF transpose, grey, light ink on dark, crop to the ink, fit the
ink's box into 20x20 keeping its aspect ratio (anti-aliased), then place it in 28x28 so its centre
of mass sits at pixel (14, 14). A 28x28 digit that already looks like that passes through untouched.
"""

from __future__ import annotations

import csv
import glob
import io
import math
import os
import struct
import time
import zipfile
import zlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
from PIL import Image, ImageDraw, ImageOps

from digitcloud.errors import InputError

try:
    from lzma import LZMAError
except ImportError:  # a Python built without liblzma: zipfile cannot open LZMA members either
    LZMAError = ValueError  # type: ignore[misc,assignment]

SIZE = 28
BOX = 20  # the ink's bounding box is fitted into BOX x BOX, as in MNIST
MAX_FILE_BYTES = 32 * 1024 * 1024
MAX_PIXELS = 50_000_000  # a 48 MP phone photo fits; Pillow's own bomb limit is 89 MP
WORK_SIZE = 512  # photos are shrunk to at most this before the recipe: a digit needs far less
THIN_PEN = 0.09  # pen width / digit size below which the pen is widened: MNIST's 5th percentile
PEN_TARGET = 0.12  # ... to about this (MNIST's 25th percentile is 0.115, its median 0.135)
MIN_CONTRAST = 24.0  # grey levels between paper and ink below which an image counts as blank
# Uneven light: when the plane finds no digit and the paper along the frame strays from a plane
# by more than UNEVEN_LIGHT grey levels (150 photo-set photos: at most 12; 0.6 vignettes 34-37,
# shadows 66-121), the paper is estimated locally, on a grid PAPER_CELLS cells across the shorter
# side, in windows PEN_WINDOW of that side (wider than any pen: MNIST's boldest is about a quarter
# of a digit's width), and the flat-field gain is capped where the paper is darker than
# DARKEST_PAPER.
UNEVEN_LIGHT = 32.0
PAPER_CELLS = 48
PEN_WINDOW = 0.3
DARKEST_PAPER = 64.0
# Lined or squared paper: a straight line crossing at least PAPER_LINE_SPAN of the image (turned up
# to PAPER_LINE_TILT degrees either way) whose pixels are fainter than PAPER_LINE_FAINT of the ink's
# is printed on the paper, not written: a digit's stroke crosses a whole image only in a close crop,
# and then it is the ink at full strength.
PAPER_LINE_SPAN = 0.85
PAPER_LINE_FAINT = 0.6
PAPER_LINE_TILT = 6.0
PAPER_LINE_VISIBLE = 0.05  # the level a line's pixels exceed (JPEG leaves ~0.005 on plain paper)
# A sheet of paper photographed on a desk: the desk would read as ink (or, filling the frame, as
# the paper, the page then read as light ink). The page is the convex hull of the light pixels, when
# the desk around it covers at least PAGE_DESK of the image, is PAGE_CONTRAST grey levels darker,
# the page covers PAGE_AREA and is at least PAGE_PAPER paper (chalk strokes' hull is mostly board),
# its sides are long (at least PAGE_SIDE of the image's shorter side: a digit's hull has many short
# ones), and its edge is sharp: the light changes from desk to paper within PAGE_EDGE of that side
# (a shadow's or a vignette's edge is softer). Images under PAGE_MIN_PX are not searched.
PAGE_DESK = 0.03
PAGE_CONTRAST = 48.0
PAGE_AREA = 0.2
PAGE_PAPER = 0.75
PAGE_EDGE = 0.02
PAGE_SIDE = 0.1
PAGE_MIN_PX = 64
# A printed box around the digit (a form's cell): lines BOX_BAND of the box's size deep at most,
# over BOX_SIDE of each of its four sides, turned BOX_TILT degrees at most (see erase_printed_box).
BOX_BAND = 0.03
BOX_SIDE = 0.9
BOX_TILT = 3.0
# A faint blob (a fingertip, a smudge): under BLOB_FAINT of the ink's strength and thicker than a pen.
BLOB_FAINT = 0.6
# Dust left out of the digit's box: small clusters (ink nowhere SPECK_SIZE + 1 to SPECK_SIZE +
# SPECK_CLEAR px from them) with nothing but such clusters within SPECK_GAP of the longer side.
# A speck setting the box's edge is looked for, and left out, in a SPECK_SQUARE px square.
SPECK_GAP = 0.05
SPECK_SIZE, SPECK_CLEAR = 3, 3
SPECK_SQUARE = 5
# A pen lying on the page above or below the digit (see _is_lying_bar): a part of the ink
# BAR_LONG times as long as thick or more, filling BAR_FILL of that rectangle, within BAR_TILT
# degrees of level, with the rest of the ink on one side of it, the rest's size between BAR_REST
# of the bar's length and BAR_LONGER times less than it. Parts are found on a grid of at most
# BAR_CELLS cells a side.
BAR_LONG, BAR_FILL, BAR_TILT = 4.0, 0.8, 15.0
BAR_LONGER, BAR_REST = 1.8, 0.25
BAR_CELLS = 128
# Images under SEARCH_MIN_PX a side (MNIST's 28x28 among them) are not searched for paper lines,
# a printed box or faint blobs.
SEARCH_MIN_PX = 40
# A speck, not a digit: ink spanning under MIN_INK_FRACTION of the image's side along both axes,
# or under MIN_INK_PX pixels and under SMALL_INK_FRACTION (a 3x3 fleck in a 28x28 image is one; a
# 5 px "1" in it, or a "1" filling a 5x5 image or a 1100x20 strip, is not).
MIN_INK_FRACTION = 0.02
MIN_INK_PX = 6
SMALL_INK_FRACTION = 0.15
URL_TIMEOUT = (5.0, 20.0)  # connect, read (seconds)
URL_DEADLINE = 60.0  # seconds for a whole download
IMAGE_SUFFIXES = frozenset(
    {".png", ".jpg", ".jpeg", ".jpe", ".jfif", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".pgm", ".ppm", ".pbm", ".pnm"}
)
# Formats Pillow may try: anything else (PDF, EPS via Ghostscript, …) is refused, whatever the name says.
IMAGE_FORMATS = ("PNG", "JPEG", "BMP", "GIF", "TIFF", "WEBP", "PPM")
KAGGLE_PIXELS = 784
CHANNEL_MODES = {1: "L", 2: "LA", 3: "RGB", 4: "RGBA"}  # an array's last axis -> Pillow mode
EXIF_ORIENTATION = 0x0112


@dataclass(frozen=True)
class Item:
    """One image to classify: where it came from and how to load it."""

    source: str
    loader: Callable[[], np.ndarray]

    def load(self) -> np.ndarray:
        return self.loader()


# --------------------------------------------------------------------------- the MNIST recipe


def _to_grey(img: Image.Image) -> np.ndarray:
    """Float32 grey levels in [0, 255]; transparency is flattened onto a contrasting backdrop."""
    if img.mode in ("I", "I;16", "I;16B", "I;16L", "F"):
        return _wide_to_grey(np.asarray(img), img.mode)
    if img.mode == "P":
        img = img.convert("RGBA" if "transparency" in img.info else "RGB")
    if img.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = img.convert("RGBA")
        alpha = np.asarray(rgba.getchannel("A"), dtype=np.float32) / 255.0
        grey = np.asarray(rgba.convert("L"), dtype=np.float32)
        if alpha.min() < 1.0:
            # Ink drawn on a transparent canvas: put it on white if the ink is dark, else on black.
            # The ink is what is at least half as opaque as the most opaque pixel: a soft brush
            # nowhere half opaque still counts, and a faintly tinted canvas around opaque ink does not.
            peak = float(alpha.max())
            ink = float(grey[alpha >= 0.5 * peak].mean()) if peak > 0 else 0.0
            backdrop = 255.0 if ink < 128 else 0.0
            grey = grey * alpha + backdrop * (1.0 - alpha)
        return grey
    return np.asarray(img.convert("L"), dtype=np.float32)


def _wide_to_grey(arr: np.ndarray, mode: str) -> np.ndarray:
    """32-bit integer and float images (16-bit PNGs, float TIFFs) -> grey levels in [0, 255].

    Floats in [0, 1] are scaled by 255, as for arrays; anything outside [0, 255] is stretched onto
    it (in float64, so int32 and float32 extremes cannot overflow). NaN or infinity is an error.
    """
    if not np.isfinite(arr).all():  # before any cast: casting a signalling NaN raises FE_INVALID
        raise InputError(f"pixels contain NaN or infinity (a {mode} image)")
    arr = arr.astype(np.float64)
    lo, hi = (float(arr.min()), float(arr.max())) if arr.size else (0.0, 0.0)
    if mode == "F" and lo >= 0.0 and hi <= 1.0:
        return (arr * 255.0).astype(np.float32)
    if lo >= 0.0 and hi <= 255.0:
        return arr.astype(np.float32)
    base = min(lo, 0.0)
    span = hi - base  # 0 for a constant negative image: blank, which normalize_grey reports
    return ((arr - base) * (255.0 / span if span > 0 else 0.0)).astype(np.float32)


def mnist_shaped(batch: np.ndarray) -> np.ndarray:
    """Per digit of a uint8 ``[N, 28, 28]`` batch: ink inside a 20x20 box and its centre of mass
    within a pixel of (14, 14), i.e. already what the MNIST recipe produces. Vectorised."""
    rows: np.ndarray = np.any(batch, axis=2)
    cols: np.ndarray = np.any(batch, axis=1)
    height = SIZE - rows.argmax(axis=1) - rows[:, ::-1].argmax(axis=1)
    width = SIZE - cols.argmax(axis=1) - cols[:, ::-1].argmax(axis=1)
    mass = batch.sum(axis=(1, 2), dtype=np.float64)
    safe = np.where(mass > 0, mass, 1.0)
    index = np.arange(SIZE, dtype=np.float64)
    cy = batch.sum(axis=2, dtype=np.float64) @ index / safe
    cx = batch.sum(axis=1, dtype=np.float64) @ index / safe
    return (mass > 0) & (height <= BOX) & (width <= BOX) & (np.abs(cy - 14) <= 1) & (np.abs(cx - 14) <= 1)


def _is_mnist_shaped(digit: np.ndarray) -> bool:
    """One digit: 28x28 uint8 and ``mnist_shaped``."""
    return digit.shape == (SIZE, SIZE) and digit.dtype == np.uint8 and bool(mnist_shaped(digit[None])[0])


def _ink_is_light(grey: np.ndarray) -> bool:
    """MNIST is light ink on dark; most photos are dark ink on light paper.

    The paper is what most of the border shows; the ink is whichever extreme lies further from it.
    The extremes are the 0.05th and 99.95th percentiles: a thin pen on a small digit can be under
    0.5 % of a photo, and at the 0.5th percentile an unevenly lit photo's paper stood further out
    than its ink (photo set: 5 of 3,000 photos read as light ink, then "blank").
    """
    border = np.concatenate([grey[0], grey[-1], grey[:, 0], grey[:, -1]])
    paper = float(np.median(border))
    lo, hi = np.percentile(grey, [0.05, 99.95])
    return (hi - paper) > (paper - lo)


def _border(grey: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Row, column and value of every pixel on the image's outer frame."""
    h, w = grey.shape
    ys = np.concatenate([np.zeros(w), np.full(w, h - 1), np.arange(h), np.arange(h)]).astype(int)
    xs = np.concatenate([np.arange(w), np.arange(w), np.zeros(h), np.full(h, w - 1)]).astype(int)
    return ys, xs, grey[ys, xs]


def _fit_plane(ys: np.ndarray, xs: np.ndarray, values: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """Least-squares coefficients of ``a + b * x / w + c * y / h`` through the given pixels."""
    h, w = shape
    design = np.stack([np.ones(values.size), xs / w, ys / h], axis=1)
    return np.linalg.lstsq(design, values.astype(np.float64), rcond=None)[0]


def _plane(coef: np.ndarray, ys: np.ndarray, xs: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    h, w = shape
    return coef[0] + coef[1] * (xs / w) + coef[2] * (ys / h)


def _flatten_paper(grey: np.ndarray) -> np.ndarray:
    """Subtract the paper: a plane fitted to the frame's darker pixels, so a light gradient across a
    photo becomes a flat 0 background. On a clean background this subtracts exactly 0."""
    ys, xs, values = _border(grey)
    if min(grey.shape) < 16:
        return grey - float(np.median(values))
    keep = values <= np.percentile(values, 70)  # ink touching the frame must not tilt the plane
    coef = _fit_plane(ys[keep], xs[keep], values[keep], grey.shape)
    yy, xx = np.ogrid[0 : grey.shape[0], 0 : grey.shape[1]]  # broadcast: the plane without two full index grids
    return (grey - _plane(coef, yy, xx, grey.shape)).astype(np.float32)


def _frame_unevenness(grey: np.ndarray) -> float:
    """How far the light on the paper along the image's frame strays from a plane, in grey levels.

    Ink touching the frame (a close crop) must not count, and it lies on one side of the paper:
    so, once for dark ink and once for light, the 30 % of frame pixels furthest to that side are
    set aside, a plane is fitted to the rest, the remainder is median-smoothed along each side over
    a tenth of its length (noise and strokes crossing it vanish), and its spread (2nd to 98th
    percentile) over the pixels kept is measured; the smaller of the two is returned. Even light,
    a straight gradient included, gives a few grey levels; a vignette or a shadow across most of
    the page tens to over a hundred.
    """
    h, w = grey.shape
    ys, xs, values = _border(grey)
    spreads = []
    for side_of_ink in (1.0, -1.0):  # dark ink: the darkest 30 % set aside; light ink: the lightest
        keep = side_of_ink * values >= np.percentile(side_of_ink * values, 30)
        rest = values - _plane(_fit_plane(ys[keep], xs[keep], values[keep], grey.shape), ys, xs, grey.shape)
        smooth = []
        for side in np.split(rest, [w, 2 * w, 2 * w + h]):  # _border's order: top, bottom, left, right
            r = max(1, side.size // 20)
            windows = np.lib.stride_tricks.sliding_window_view(np.pad(side, r, mode="edge"), 2 * r + 1)
            smooth.append(np.median(windows, axis=-1))
        lo, hi = np.percentile(np.concatenate(smooth)[keep], [2, 98])
        spreads.append(float(hi - lo))
    return min(spreads)


def _coarse(grey: np.ndarray) -> np.ndarray:
    """``grey`` averaged onto a grid of about ``PAPER_CELLS`` cells across its shorter side."""
    h, w = grey.shape
    cell = max(1, min(h, w) // PAPER_CELLS)
    size = (max(1, round(w / cell)), max(1, round(h / cell)))
    return np.asarray(Image.fromarray(grey.astype(np.float32), mode="F").resize(size, Image.Resampling.BOX))


def _fine(coarse: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """A coarse grid from ``_coarse`` back at full size ``shape``, bilinearly."""
    img = Image.fromarray(coarse.astype(np.float32), mode="F").resize((shape[1], shape[0]), Image.Resampling.BILINEAR)
    return np.asarray(img, dtype=np.float32)


def _pen_window(coarse: np.ndarray) -> int:
    """The side, in grid cells, of the windows the local paper is estimated in (odd, at least 3)."""
    return max(3, int(PEN_WINDOW * min(coarse.shape)) | 1)


def _ink_is_light_locally(grey: np.ndarray) -> bool:
    """``_ink_is_light`` under uneven light, where the frame shows no single paper level: the
    paper is each pixel's local median (windows wider than a pen, on the coarse grid), and the
    ink is the extreme further from it. A deep shadow over most of the frame made the lit paper
    stand further out than the shadowed ink."""
    coarse = _coarse(grey)
    k = _pen_window(coarse)
    windows = np.lib.stride_tricks.sliding_window_view(np.pad(coarse, k // 2, mode="edge"), (k, k))
    lo, hi = np.percentile(grey - _fine(np.median(windows, axis=(-2, -1)), grey.shape), [0.05, 99.95])
    return bool(hi > -lo)


def _flatten_uneven_paper(grey: np.ndarray) -> np.ndarray:
    """``_flatten_paper`` under uneven light (``grey``'s ink already light): a vignette or a shadow
    is no plane, so the paper is the image's morphological opening, which removes anything
    narrower than a pen window (the ink) and follows any light change wider than that, sharp
    shadow edges included. Then, as light multiplies, the ink's height is taken relative to the
    paper's brightness (a flat-field correction): ink in shadow stands as tall as ink in the light.
    """
    coarse = _coarse(grey)
    k = _pen_window(coarse)
    # Past the edge the light goes on as it was going (odd reflection), but never darker than at
    # the edge: mirrored ink near the edge would be a dark blot, pulling the paper under it down.
    beyond = np.maximum(np.pad(coarse, k, mode="reflect", reflect_type="odd"), np.pad(coarse, k, mode="edge"))
    # The dilation is one cell wider each way than the erosion: where a sharp shadow edge crosses
    # a cell, the paper there is the shadow's, not a blend that leaves a line of "ink" along it.
    paper = _fine(_sliding(_sliding(beyond, k, np.min), k + 2, np.max), grey.shape)
    return ((grey - paper) * (255.0 / np.maximum(255.0 - paper, DARKEST_PAPER))).astype(np.float32)


def stroke_width(ink: np.ndarray) -> float:
    """Mean pen width in pixels of a 0..1 ink map: twice the ink's area over its outline's length
    (a stroke of width w and length L covers w*L pixels and has 2*L outline pixels)."""
    mask = ink > 0.5
    inner = mask.copy()
    inner[1:] &= mask[:-1]
    inner[:-1] &= mask[1:]
    inner[:, 1:] &= mask[:, :-1]
    inner[:, :-1] &= mask[:, 1:]
    outline = int(mask.sum()) - int(inner.sum())
    return 2.0 * float(mask.sum()) / max(outline, 1)


def crop_to_page(grey: np.ndarray) -> np.ndarray | None:
    """``grey`` cut to the sheet of light paper it shows on a darker desk, the desk left in the
    page's bounding box (a turned page's corners) painted over as the page's paper; None when the
    photo shows no desk, which is most photos.

    The page is the convex hull of the pixels lighter than the desk/paper split (Otsu's threshold
    on the coarse grid): ink lies inside the sheet, so the hull keeps it whatever its colour."""
    h, w = grey.shape
    if min(h, w) < PAGE_MIN_PX:
        return None
    coarse = _coarse(grey)
    cut = _otsu(coarse)
    light_cells = coarse >= cut
    if light_cells.all() or not light_cells.any() or not _may_be_page(light_cells):
        return None
    desk, paper = float(np.median(coarse[~light_cells])), float(np.median(coarse[light_cells]))
    if paper - desk < PAGE_CONTRAST:
        return None
    light = _opened(grey >= cut)  # specks of the desk's texture as light as paper do not count
    hull = _hull(light)
    if len(hull) < 3:
        return None
    page = _filled(hull, grey.shape)
    if page.mean() < PAGE_AREA or page.mean() > 1 - PAGE_DESK or light[page].mean() < PAGE_PAPER:
        return None
    edge = _edge_width(grey, hull, desk, paper)
    if edge is None or edge > max(2.0, PAGE_EDGE * min(h, w)):
        return None  # a shadow or a vignette: the existing readings handle those
    # The page's pixels along its edge are blurred with the desk, and the hull may bulge a pixel or
    # two past it: they go with the desk, as does a margin along the frame (where the page's edge
    # leaves the picture, a sliver of desk can lie between them).
    margin = math.ceil(edge) + max(2, round(0.01 * min(h, w)))
    inner = _sliding(np.pad(page, margin), 2 * margin + 1, np.min)
    if not inner.any():
        return None
    rows, cols = np.flatnonzero(inner.any(1)), np.flatnonzero(inner.any(0))
    box = (slice(rows[0], rows[-1] + 1), slice(cols[0], cols[-1] + 1))
    grey, inner, light = grey[box].astype(np.float32), inner[box], light[box]
    # the desk left in the box: the page's paper, a plane through it, with its noise
    ys, xs = np.nonzero(inner & light)
    coef = _fit_plane(ys, xs, grey[ys, xs], grey.shape)
    residual = grey[ys, xs] - _plane(coef, ys, xs, grey.shape)
    noise = 1.4826 * float(np.median(np.abs(residual - np.median(residual))))
    ys, xs = np.nonzero(~inner)
    rng = np.random.default_rng(0)  # the same photo gives the same digit
    grey[ys, xs] = _plane(coef, ys, xs, grey.shape) + rng.normal(0.0, noise, ys.size)
    return grey


def _otsu(values: np.ndarray) -> float:
    """Otsu's threshold between the two groups of grey levels in ``values``: light is ``>=``."""
    counts = np.bincount(np.clip(values, 0, 255).astype(np.intp).ravel(), minlength=256).astype(np.float64)
    share = np.cumsum(counts) / counts.sum()
    mean = np.cumsum(counts * np.arange(256)) / counts.sum()
    between = (mean[-1] * share - mean) ** 2 / np.maximum(share * (1 - share), 1e-12)
    return float(np.argmax(between[:-1]) + 1)


def _may_be_page(light: np.ndarray) -> bool:
    """The page's size tests on the coarse grid, leniently (a cell on the page's edge is part desk):
    the convex hull of the ``light`` cells leaves out ``PAGE_DESK`` of the grid, and covers about
    ``PAGE_AREA`` of it, most of that light. Most photos fail the first: paper reaches every side."""
    hull = _hull(light)
    if len(hull) < 3:
        return False
    inside = _filled(hull, light.shape)
    return (
        float(inside.mean()) <= 1 - PAGE_DESK
        and float(inside.mean()) >= 0.75 * PAGE_AREA
        and float(light[inside].mean()) >= PAGE_PAPER - 0.15
    )


def _filled(polygon: list[tuple[int, int]], shape: tuple[int, ...]) -> np.ndarray:
    """The pixels of an image of ``shape`` inside ``polygon`` (its outline included)."""
    mask = Image.new("1", (shape[1], shape[0]))
    ImageDraw.Draw(mask).polygon(polygon, fill=1)
    return np.asarray(mask)


def _opened(mask: np.ndarray) -> np.ndarray:
    """``mask`` less anything narrower than 3 px: a morphological opening by a 3x3 square, each
    pass along rows then columns, the frame's pixels repeated past it."""

    def extreme(a: np.ndarray, both: Callable[..., np.ndarray]) -> np.ndarray:
        a = np.pad(a, 1, mode="edge")
        a = both(both(a[:, :-2], a[:, 1:-1]), a[:, 2:])
        return both(both(a[:-2], a[1:-1]), a[2:])

    return extreme(extreme(mask, np.logical_and), np.logical_or)


def _hull(mask: np.ndarray) -> list[tuple[int, int]]:
    """The convex hull of ``mask``'s pixels as (x, y) corners in order round it (Andrew's monotone
    chain over each row's first and last pixel: no other pixel can be a corner)."""
    rows = np.flatnonzero(mask.any(1))
    first = mask[rows].argmax(1)
    last = mask.shape[1] - 1 - mask[rows, ::-1].argmax(1)
    points = sorted({(int(x), int(y)) for y, a, b in zip(rows, first, last, strict=True) for x in (a, b)})
    if len(points) < 3:
        return points

    def cross(o: tuple[int, int], a: tuple[int, int], b: tuple[int, int]) -> int:
        return (a[0] - o[0]) * (b[1] - o[1]) - (a[1] - o[1]) * (b[0] - o[0])

    def chain(ordered: list[tuple[int, int]]) -> list[tuple[int, int]]:
        out: list[tuple[int, int]] = []
        for p in ordered:
            while len(out) >= 2 and cross(out[-2], out[-1], p) <= 0:
                out.pop()
            out.append(p)
        return out[:-1]

    return chain(points) + chain(points[::-1])


def _sides(hull: list[tuple[int, int]], h: int, w: int) -> list[tuple[float, float, float, float]] | None:
    """The straight sides of ``hull`` that lie inside the image, as (x0, y0, x1, y1); None when they
    are not a sheet's: more than a tenth of their length in sides under PAGE_SIDE of the image's
    shorter side (a digit's hull is a polygon of many short sides, a page's has four long ones).
    Consecutive hull edges within 6 degrees of the side they extend are one side."""
    n = len(hull)
    edges = [(hull[i], hull[(i + 1) % n]) for i in range(n)]
    direction = [math.atan2(b[1] - a[1], b[0] - a[0]) for a, b in edges]
    turn = [abs((direction[i] - direction[i - 1] + math.pi) % (2 * math.pi) - math.pi) for i in range(n)]
    start = int(np.argmax(turn))  # a corner: no side is split at the start
    sides: list[tuple[float, float, float, float]] = []
    side: list[tuple[int, int]] = []
    for a, b in edges[start:] + edges[:start]:
        on_frame = (a[0] == b[0] and a[0] in (0, w - 1)) or (a[1] == b[1] and a[1] in (0, h - 1))
        if side and not on_frame:
            chord = math.atan2(side[-1][1] - side[0][1], side[-1][0] - side[0][0])
            bend = abs((math.atan2(b[1] - a[1], b[0] - a[0]) - chord + math.pi) % (2 * math.pi) - math.pi)
            if bend <= math.radians(6):
                side.append(b)
                continue
        if side:
            sides.append((*side[0], *side[-1]))
        side = [] if on_frame else [a, b]
    if side:
        sides.append((*side[0], *side[-1]))
    lengths = np.array([math.hypot(x1 - x0, y1 - y0) for x0, y0, x1, y1 in sides])
    long = lengths >= PAGE_SIDE * min(h, w)
    if not long.any() or lengths[~long].sum() > 0.1 * lengths.sum():
        return None
    return [s for s, keep in zip(sides, long, strict=True) if keep]


def _edge_width(grey: np.ndarray, hull: list[tuple[int, int]], desk: float, paper: float) -> float | None:
    """How many pixels the light takes to change from desk to paper across the page's sides: per
    side, the median over profiles every 4 px along it of the samples between a quarter and three
    quarters of the way from ``desk`` to ``paper``; the widest side's. None when the hull's sides
    are not a sheet's (``_sides``), or one of them shows no step of ``PAGE_CONTRAST`` from paper
    inside to desk outside (it bridges a gap between a digit's strokes), or ink reaches it from
    inside (2 to 4 px in): a sharp shadow's edge across the digit looks like a page's side but for
    that, and a digit running off its page is not cut either."""
    h, w = grey.shape
    sides = _sides(hull, h, w)
    if sides is None:
        return None
    reach = int(2 * PAGE_EDGE * min(h, w)) + 3
    cx, cy = np.mean(hull, axis=0)
    low, high = desk + (paper - desk) / 4, paper - (paper - desk) / 4
    across = np.arange(-reach, reach + 1)
    widest = 0.0
    for x0, y0, x1, y1 in sides:
        length = math.hypot(x1 - x0, y1 - y0)
        nx, ny = (y1 - y0) / length, -(x1 - x0) / length
        if nx * ((x0 + x1) / 2 - cx) + ny * ((y0 + y1) / 2 - cy) < 0:
            nx, ny = -nx, -ny  # outward
        widths, steps, crossed = [], [], False
        for t in np.arange(2.0, length - 2.0, 4.0) / length:
            xs = np.clip(np.rint(x0 + t * (x1 - x0) + across * nx).astype(np.intp), 0, w - 1)
            ys = np.clip(np.rint(y0 + t * (y1 - y0) + across * ny).astype(np.intp), 0, h - 1)
            profile = grey[ys, xs]  # from inside the page to the desk (past the frame: the frame's)
            widths.append(int(np.count_nonzero((profile > low) & (profile < high))))
            steps.append(float(profile[:3].mean() - profile[-3:].mean()))
            crossed |= bool((profile[reach - 4 : reach - 1] <= low).any())  # ink 2-4 px inside
        if not widths or float(np.median(steps)) < PAGE_CONTRAST or crossed:
            return None
        widest = max(widest, float(np.median(widths)))
    return widest


def erase_faint_blobs(level: np.ndarray) -> np.ndarray:
    """``level`` (ink 0..1, paper 0) without faint blobs reaching in from the frame: regions under
    ``BLOB_FAINT`` of the ink's strength, two pens thick or more, touching the picture's edge (a
    fingertip holding the page, or light left uneven at a corner), which the crop would take with
    the digit. On a grid of cells one pen wide (``stroke_width`` of the ink over ``BLOB_FAINT``),
    a blob is the cells 90 % faint in 2x2 blocks of such cells, connected to the grid's edge. A
    stroke's faint anti-aliased edge, or a blurred digit's, is far thinner and lies inside the
    picture, and the ink itself is at full strength."""
    if min(level.shape) < SEARCH_MIN_PX:
        return level
    faint = (level > PAPER_LINE_VISIBLE) & (level < BLOB_FAINT)
    if np.count_nonzero(faint) < 0.01 * faint.size:
        return level  # most photos stop here
    pen = max(2, round(stroke_width((level >= BLOB_FAINT).astype(np.float32))))
    h, w = level.shape
    grid = (max(1, round(w / pen)), max(1, round(h / pen)))
    cells = np.asarray(Image.fromarray(faint.astype(np.float32), mode="F").resize(grid, Image.Resampling.BOX))
    faint_cells = cells > 0.9
    # two pens thick at least: each blob cell lies in a 2x2 block of them (an opening by 2x2)
    block = faint_cells[:-1, :-1] & faint_cells[1:, :-1] & faint_cells[:-1, 1:] & faint_cells[1:, 1:]
    thick = np.zeros_like(faint_cells)
    for dy, dx in ((0, 0), (1, 0), (0, 1), (1, 1)):
        thick[dy : dy + block.shape[0], dx : dx + block.shape[1]] |= block
    blob = np.zeros_like(thick)
    blob[[0, -1], :], blob[:, [0, -1]] = thick[[0, -1], :], thick[:, [0, -1]]
    while True:  # grow from the edge through thick cells (4-connected)
        grown = blob.copy()
        grown[1:] |= blob[:-1]
        grown[:-1] |= blob[1:]
        grown[:, 1:] |= blob[:, :-1]
        grown[:, :-1] |= blob[:, 1:]
        grown &= thick
        if np.array_equal(grown, blob):
            break
        blob = grown
    if not blob.any():
        return level
    near = _with_ring(blob).astype(np.float32)  # and the cells round it: its soft edge
    return np.where((_fine(near, level.shape) > 0) & faint, 0.0, level).astype(level.dtype)


def erase_paper_lines(level: np.ndarray) -> np.ndarray:
    """``level`` (ink 0..1, paper 0) with the lines of ruled or squared paper taken out.

    A notebook's light blue lines stand out from the paper by a third of the ink's contrast or
    less, and they cross the whole photo; kept, they are cropped and scaled with the digit. Both
    directions are searched (``_lines_across``) before anything is erased, so a grid's crossings
    do not break its lines; ink where a line crosses a stroke is kept, being darker than the line.
    """
    if min(level.shape) < SEARCH_MIN_PX:
        return level
    across, down = _lines_across(level), _lines_across(level.T)
    if across is None and down is None:
        return level
    cutoff = np.maximum(across if across is not None else 0.0, down.T if down is not None else 0.0)
    return np.where(level <= cutoff, 0.0, level).astype(level.dtype)


def _lines_across(level: np.ndarray) -> np.ndarray | None:
    """Where faint straight lines run left to right (within ``PAPER_LINE_TILT``): the level up to
    which each pixel is erased as a line (0 off the lines), or None when there are none.

    Each tilt (in steps of half a degree) shears the image so such a line becomes one row: a row
    whose pixels are ink over at least ``PAPER_LINE_SPAN`` of its length is a line, at the tilt that
    finds the most such rows. The ink is first widened 2 px up and down, so a line still fills a row
    when the true tilt falls between two steps. Such a line is paper, not a stroke, when it is
    fainter than ``PAPER_LINE_FAINT`` and has paper on both sides (the faint edge of a stroke has
    the stroke beside it); then its pixels, and one row more either side for its anti-aliased
    edges, are erased up to a level between the line's own and full ink. On lined paper, short
    lines cut off by a corner go too; on a page of evenly spaced lines, lines as strong as the ink."""
    h, w = level.shape
    on = level > PAPER_LINE_VISIBLE
    # a line across needs ink in PAPER_LINE_SPAN of at least half the columns: most photos stop here
    if np.count_nonzero(on) < PAPER_LINE_SPAN * w or np.count_nonzero(on.any(axis=0)) < PAPER_LINE_SPAN * (w // 2):
        return None
    near = on.copy()
    for _ in range(2):
        near[1:] |= near[:-1].copy()
        near[:-1] |= near[1:].copy()
    ys, xs = np.nonzero(near)
    best_found, best_tilt = 0, 0.0
    for degrees in sorted(np.arange(-PAPER_LINE_TILT, PAPER_LINE_TILT + 0.25, 0.5), key=abs):
        _, full, inside = _sheared_rows(ys, xs, h, w, degrees)
        found = int(np.count_nonzero(full & (inside >= w // 2)))
        if found > best_found:
            best_found, best_tilt = found, degrees
    if not best_found:
        return None
    shift, full, inside = _sheared_rows(ys, xs, h, w, best_tilt)
    long, lines = full & (inside >= w // 2), full & (inside >= 4)  # the corners' short lines too
    rows = np.arange(h)[:, None] - shift[None, :] + int(shift.max())  # every pixel's sheared row
    ys, xs = np.nonzero(on)
    inked_row = rows[ys, xs]
    inked_count = np.bincount(inked_row, minlength=lines.size)
    edges = np.diff(np.concatenate([[0], lines.astype(np.int8), [0]]))
    runs = []  # each line: its sheared rows [first, end), its level, crossing the image?, paper beside it?
    for first, end in zip(np.flatnonzero(edges == 1), np.flatnonzero(edges == -1), strict=True):
        inked = (inked_row >= first) & (inked_row < end)
        # the line's level: its darkest pixel in each column, the median of those over its columns
        # (a digit lying along the line for part of its length does not move the median)
        across = np.zeros(w, np.float32)
        np.maximum.at(across, xs[inked], level[ys[inked], xs[inked]])
        core = float(np.median(across[across > 0])) if inked.any() else 0.0
        # paper on both sides: the rows beyond the line's are mostly blank (not the edge of a stroke)
        beside = np.concatenate([inked_count[max(first - 3, 0) : first], inked_count[end : end + 3]])
        alone = not (beside >= inside[max(first - 3, 0) : end + 3].max() / 2).any()
        runs.append((first, end, core, bool(long[first:end].any()), alone))
    lined = any(crossing and alone and core <= PAPER_LINE_FAINT for _, _, core, crossing, alone in runs)
    page_of_lines = _evenly_spaced([int(first) for first, _, _, crossing, _ in runs if crossing])
    cutoff = np.zeros(lines.size, np.float32)  # erase up to this level, per sheared row
    for first, end, core, crossing, alone in runs:
        if not alone:
            continue  # the faint edge of a stroke
        if not (crossing or lined or page_of_lines):
            continue  # a short line in a corner is one only on lined paper
        if core <= PAPER_LINE_FAINT:
            line_cutoff = min(2 * core, (1 + core) / 2)  # ink crossing the line is darker: kept
        elif page_of_lines:
            line_cutoff = 1.0
        else:
            continue  # a stroke of the digit crossing a close crop: full ink
        around = slice(max(first - 1, 0), end + 1)  # and the anti-aliased rows either side
        cutoff[around] = np.maximum(cutoff[around], line_cutoff)
    return cutoff[rows]


def _sheared_rows(ys: np.ndarray, xs: np.ndarray, h: int, w: int, degrees: float) -> tuple[np.ndarray, ...]:
    """The inked pixels ``ys, xs`` of an ``h x w`` image sheared by ``degrees``: each column's shift,
    and per sheared row (from 0) whether ink fills ``PAPER_LINE_SPAN`` of it and how many of its
    columns lie inside the image."""
    shift = np.rint(np.arange(w) * math.tan(math.radians(degrees))).astype(np.intp)
    offset = int(shift.max())
    count = np.bincount(ys - shift[xs] + offset, minlength=h + int(np.ptp(shift)))
    sheared, ordered = np.arange(count.size) - offset, np.sort(shift)
    inside = np.searchsorted(ordered, h - 1 - sheared, "right") - np.searchsorted(ordered, -sheared, "left")
    return shift, count >= PAPER_LINE_SPAN * inside, inside


def _evenly_spaced(starts: list[int]) -> bool:
    """A page of lines as strong as the ink (they set its level: a blank ruled page): at least
    four lines crossing it, evenly spaced. A digit's strokes cross a close crop three times at most
    (a 3, a 5), so these are erased whatever their level."""
    gaps = np.diff(starts)
    return len(starts) >= 4 and float(gaps.max() - gaps.min()) <= 0.2 * float(gaps.mean())


def erase_printed_box(level: np.ndarray) -> np.ndarray:
    """``level`` (ink 0..1, paper 0) with a printed box around the digit taken out: a form's cell,
    which the crop would take as the digit's outline, the digit then scaled down inside it.

    A box is the ink's outermost rows and columns: along each of its four sides a straight thin
    line (``_box_side``). Each line's pixels go, 2 px more either side for its anti-aliased edges;
    ink inside stays. A digit's outermost strokes do not close four straight sides (a 7's bar is
    one), so a close crop of a digit is never a box (tested)."""
    if min(level.shape) < SEARCH_MIN_PX:
        return level
    inked = level > 0.1  # a form's light blue box is a third of the ink's strength
    rows, cols = np.flatnonzero(inked.any(1)), np.flatnonzero(inked.any(0))
    if rows.size < 2 or cols.size < 2:
        return level
    top, bottom, left, right = int(rows[0]), int(rows[-1]), int(cols[0]), int(cols[-1])
    box = inked[top : bottom + 1, left : right + 1]
    thin = max(3, round(BOX_BAND * min(box.shape)))
    depth = thin + math.ceil(math.tan(math.radians(BOX_TILT)) * max(box.shape))
    if 3 * depth >= min(box.shape):
        return level
    lines = []
    for side in (box, box[::-1], box.T, box.T[::-1]):  # top, bottom, left, right: the side's edge first
        line = _box_side(side, depth, thin)
        if line is None:
            return level
        lines.append(line)
    out = np.pad(level, 2)
    block = out[top : bottom + 5, left : right + 5]  # the box and 2 px round it
    for view, (first, run) in zip((block, block[::-1], block.T, block.T[::-1]), lines, strict=True):
        k = np.arange(view.shape[0])[:, None]  # view row k is the side's row k - 2
        line_px = (k >= first) & (k < first + run + 4) & (run > 0)  # each run, 2 px either side
        view[:, 2:-2][line_px] = 0.0
    return out[2:-2, 2:-2]


def _box_side(side: np.ndarray, depth: int, thin: int) -> tuple[np.ndarray, np.ndarray] | None:
    """The printed line along the first rows of ``side`` (inked pixels, the side's edge first): per
    column, where it starts and how many pixels deep it is; None when there is no such line. Ink
    within ``depth`` rows in at least ``BOX_SIDE`` of the columns, there lying on a straight line
    (within 2 px; turned ``BOX_TILT`` degrees at most), no deeper than ``thin`` (median), and past
    it paper: the ``thin`` rows beyond the line inked in under half of the columns."""
    band = side[:depth]
    has = band.any(0)
    if has.mean() < BOX_SIDE:
        return None
    first = band.argmax(0)
    cols = np.flatnonzero(has)
    slope, intercept = np.polyfit(cols, first[cols], 1)
    if abs(slope) > math.tan(math.radians(BOX_TILT)):
        return None
    if np.count_nonzero(np.abs(first[cols] - (slope * cols + intercept)) <= 2) < BOX_SIDE * side.shape[1]:
        return None
    k = np.arange(2 * depth)[:, None]
    padded = np.pad(side, ((0, 3 * depth), (0, 0)))
    run = np.where(has, np.cumprod(np.take_along_axis(padded, first + k, axis=0), axis=0).sum(0), 0)
    if float(np.median(run[cols])) > thin:
        return None
    beyond = np.take_along_axis(padded, first + run + k[:thin], axis=0)[:, cols]
    if np.count_nonzero(beyond.any(axis=0)) >= 0.5 * cols.size:
        return None
    return first, run


def _sliding(a: np.ndarray, size: int, reduce: Callable[..., np.ndarray]) -> np.ndarray:
    """``reduce`` (``np.min`` or ``np.max``) over every ``size`` x ``size`` window lying inside
    ``a``, as two 1-D passes: the result is ``size - 1`` smaller along each axis."""
    a = reduce(np.lib.stride_tricks.sliding_window_view(a, size, axis=0), axis=-1)
    return reduce(np.lib.stride_tricks.sliding_window_view(a, size, axis=1), axis=-1)


def _max_filter(a: np.ndarray, size: int) -> np.ndarray:
    """Grey dilation by a ``size`` x ``size`` square (odd); the array grows by ``size // 2`` on
    each side so widened ink is not clipped."""
    return _sliding(np.pad(a, size - 1), size, np.max)


def _with_ring(mask: np.ndarray) -> np.ndarray:
    """``mask`` and every cell next to it (8-connected): a region with a margin for its soft edge."""
    return _max_filter(mask.astype(np.float32), 3)[1:-1, 1:-1] > 0


def widen_thin_pen(crop: np.ndarray) -> np.ndarray:
    """A digit written with a pen much thinner than MNIST's, relative to its size, gets a wider one.

    MNIST's pen is 9-21 % of the digit's size (5th-95th percentile, median 13.5 %); a ballpoint
    on a large digit can be 3 %, which shrinks to a faint sub-pixel line at 20 px. Below
    ``THIN_PEN`` the ink is dilated to about ``PEN_TARGET``; anything at or above is left alone.
    """
    size = max(crop.shape)
    if size < 24:
        return crop  # too few pixels to measure a width
    relative = stroke_width(crop) / size
    if relative >= THIN_PEN:
        return crop
    grow = round((PEN_TARGET - relative) * size)
    return _max_filter(crop, grow | 1) if grow >= 2 else crop


def _ink_level(grey: np.ndarray, floor: float) -> float:
    """The grey level ``normalize_grey`` maps to full ink: the image's 99.9th percentile.

    A small digit can cover less of the image than that: a thin "1" a tenth of a big photo's height
    is about 0.05 % of it, so the percentile lands on the paper and the photo would read as blank.
    When the percentile does not stand out from the paper, the level is the n-th brightest pixel
    instead, n being the number of 2x2 blocks that do stand out: ink, where lone specks of noise
    or dust are no block at all (and leave the image blank, as before).
    """
    level = float(np.percentile(grey, 99.9))
    if level - floor >= MIN_CONTRAST:
        return level
    standing = grey > floor + MIN_CONTRAST
    blocks = int(np.count_nonzero(standing[:-1, :-1] & standing[1:, :-1] & standing[:-1, 1:] & standing[1:, 1:]))
    if blocks == 0:
        return level
    flat = grey.ravel()
    k = flat.size - blocks  # the index of the blocks-th brightest pixel
    return float(np.partition(flat, k)[k])


def _uneven_light(grey: np.ndarray) -> bool:
    return min(grey.shape) >= 16 and _frame_unevenness(grey) > UNEVEN_LIGHT


class _Reading(NamedTuple):
    digit: np.ndarray  # 28x28 uint8
    # Read as light ink, none of it on the image's frame: under uneven light, maybe a lit patch of
    # paper in a shadow. Dark ink is what almost every photo has, and a close crop (ink on the
    # frame) can have a stroke wider than the local windows, its paper then the stroke: not doubted.
    may_be_lit_paper: bool


def normalize_grey(grey: np.ndarray) -> np.ndarray:
    """A grey image (float, any size, either polarity) -> a 28x28 uint8 MNIST-style digit.

    Raises ``InputError`` when there is no ink to find. A photo of a sheet of paper on a darker
    desk is first read cut to the page (``crop_to_page``); when that finds no digit, as any photo.
    """
    page = crop_to_page(grey)
    if page is not None:
        try:
            return _read_paper(page)
        except InputError:
            pass
    return _read_paper(grey)


def _read_paper(grey: np.ndarray) -> np.ndarray:
    """``normalize_grey`` of an image showing only paper and ink. The paper is first taken as one
    level with a plane of light across it. Where the frame shows uneven light (a vignette, a shadow) and that
    reading found no digit, or found light ink, none of it on the frame, that the local paper calls
    dark (a lit patch of paper in a shadow, read as the digit), the paper is estimated locally
    instead. Not for every photo: on close crops, with ink along the frame, the local estimate lost
    digits the plane reads.
    """
    try:
        reading = _normalize_grey(grey, _ink_is_light(grey), even_light=True)
    except InputError:
        if not _uneven_light(grey):
            raise
        return _normalize_grey(grey, _ink_is_light_locally(grey), even_light=False).digit
    if not reading.may_be_lit_paper or not _uneven_light(grey) or _ink_is_light_locally(grey):
        return reading.digit
    try:  # the local paper calls the ink dark
        return _normalize_grey(grey, light_ink=False, even_light=False).digit
    except InputError:
        return reading.digit


def _normalize_grey(grey: np.ndarray, light_ink: bool, even_light: bool) -> _Reading:
    """One reading of ``grey`` with the polarity given: its paper a plane (``even_light``) or local."""
    if not light_ink:
        grey = 255.0 - grey
    if grey.shape == (SIZE, SIZE):
        candidate = np.clip(np.rint(grey), 0, 255).astype(np.uint8)
        if _is_mnist_shaped(candidate):
            return _Reading(candidate, may_be_lit_paper=False)  # MNIST's own shape: a digit
    grey = _flatten_paper(grey) if even_light else _flatten_uneven_paper(grey)
    _, _, frame = _border(grey)
    # Paper texture and sensor noise: four robust standard deviations of the frame count as paper.
    floor = max(0.0, 4 * 1.4826 * float(np.median(np.abs(frame - np.median(frame)))))
    ink = _ink_level(grey, floor)
    if ink - floor < MIN_CONTRAST:
        raise InputError(f"no digit found: the image is blank (contrast {max(0.0, ink - floor):.0f} of 255)")
    level = erase_faint_blobs(np.clip((grey - floor) / (ink - floor), 0.0, 1.0))
    level = erase_printed_box(erase_paper_lines(level))
    # The ink's box: strong ink decides where the digit is (faint specks are ignored, dust far from
    # it and a pen lying beside it left out), then the faint anti-aliased edge right around it is
    # kept so a clean digit is cropped exactly.
    strong = _without_specks(level > 0.25)
    bar = _lying_bar(strong)
    if bar is not None:
        strong, level = strong & ~bar, np.where(bar, 0.0, level).astype(level.dtype)
    rows, cols = np.flatnonzero(strong.any(1)), np.flatnonzero(strong.any(0))
    if rows.size == 0:
        raise InputError("no digit found: no ink stands out from the background")
    height, width = grey.shape
    ink_on_frame = rows[0] == 0 or cols[0] == 0 or rows[-1] == height - 1 or cols[-1] == width - 1
    ink_h, ink_w = rows[-1] - rows[0] + 1, cols[-1] - cols[0] + 1
    extent = max(ink_h / height, ink_w / width)  # along its longer axis, relative to the image's side
    if extent < MIN_INK_FRACTION or (max(ink_h, ink_w) < MIN_INK_PX and extent < SMALL_INK_FRACTION):
        raise InputError(
            f"no digit found: the only ink is a speck ({ink_w}x{ink_h} px in a {width}x{height} image); "
            "crop closer to the digit"
        )
    margin = max(1, round(max(rows[-1] - rows[0], cols[-1] - cols[0]) / BOX))
    top, left = max(0, rows[0] - margin), max(0, cols[0] - margin)
    window = level[top : rows[-1] + margin + 1, left : cols[-1] + margin + 1]
    rows, cols = np.flatnonzero(window.any(1)), np.flatnonzero(window.any(0))
    crop = widen_thin_pen(window[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1])
    h, w = crop.shape
    scale = BOX / max(h, w)
    new_w, new_h = max(1, round(w * scale)), max(1, round(h * scale))
    fitted = Image.fromarray((crop * 255.0).astype(np.float32), mode="F").resize(
        (new_w, new_h), Image.Resampling.LANCZOS if scale < 1 else Image.Resampling.BILINEAR
    )
    patch = np.clip(np.asarray(fitted, dtype=np.float32), 0.0, 255.0)
    total = float(patch.sum())
    if total <= 0:
        raise InputError("no digit found: the ink vanished when fitted into 20x20")
    cy = float((patch.sum(1) * np.arange(new_h)).sum() / total)
    cx = float((patch.sum(0) * np.arange(new_w)).sum() / total)
    top = int(np.clip(round(14 - cy), 0, SIZE - new_h))
    left = int(np.clip(round(14 - cx), 0, SIZE - new_w))
    out = np.zeros((SIZE, SIZE), dtype=np.float32)
    out[top : top + new_h, left : left + new_w] = patch
    return _Reading(np.rint(out).astype(np.uint8), may_be_lit_paper=light_ink and not ink_on_frame)


def _without_specks(mask: np.ndarray) -> np.ndarray:
    """``mask`` less the specks that would set its box: small clusters on the box's edge with
    nothing but other small clusters for ``SPECK_GAP`` of the image's longer side around them.
    Dust, or a grain of paper or noise far from the digit, would stretch the digit's box; a stroke,
    even a thin one broken into dots, has a longer piece of itself nearby. Only the box's edges are
    searched, again after each speck (the next of a group of specks is then on the edge), so a photo
    without specks costs a few window sums. When only specks are set, ``mask`` as it is."""
    far = max(3, round(SPECK_GAP * max(mask.shape)))
    kept = mask
    while True:
        rows, cols = np.flatnonzero(kept.any(1)), np.flatnonzero(kept.any(0))
        if rows.size == 0:
            return mask
        specks = [
            (top, left) for top, left in _edge_clusters(kept, rows, cols) if _only_specks_near(kept, top, left, far)
        ]
        if not specks:
            return kept
        kept = kept.copy()
        for top, left in specks:
            kept[top : top + SPECK_SQUARE, left : left + SPECK_SQUARE] = False


def _only_specks_near(mask: np.ndarray, top: int, left: int, far: int) -> bool:
    """Whether every set pixel within ``far`` of the speck's square at (``top``, ``left``) lies in a
    small cluster: one with no other set pixel 4 to 6 px from any of its pixels (so at most 4 px
    across, and clear of anything else by 3 px). A stroke longer than that is no such cluster."""
    pad = far + SPECK_SIZE + SPECK_CLEAR
    y0, x0 = max(0, top - pad), max(0, left - pad)
    end = SPECK_SQUARE + pad
    window = mask[y0 : top + end, x0 : left + end]
    small = window & (_count_within(window, SPECK_SIZE + SPECK_CLEAR) == _count_within(window, SPECK_SIZE))
    inner = (
        slice(top - far - y0 if top >= far else 0, top + SPECK_SQUARE + far - y0),
        slice(left - far - x0 if left >= far else 0, left + SPECK_SQUARE + far - x0),
    )
    return not (window[inner] & ~small[inner]).any()


def _count_within(mask: np.ndarray, r: int) -> np.ndarray:
    """For each pixel, how many pixels of ``mask`` lie in the (2r+1)-square centred on it: four
    lookups in a summed-area table (``_sliding`` with ``np.sum`` gives the same counts, but made
    a dusty photo's decode 4-6 ms slower)."""
    h, w = mask.shape
    total = np.pad(mask.astype(np.int32), ((r + 1, r), (r + 1, r))).cumsum(0).cumsum(1)
    return total[2 * r + 1 :, 2 * r + 1 :] - total[:h, 2 * r + 1 :] - total[2 * r + 1 :, :w] + total[:h, :w]


def _lying_bar(mask: np.ndarray) -> np.ndarray | None:
    """Where ``mask`` holds a straight bar lying above or below the digit and longer than it (the
    pen that wrote it, lying on the page): the bar's pixels and a margin for its soft edge that
    stops short of the other ink; None when there is none. The mask is pooled onto a grid of at
    most ``BAR_CELLS`` cells a side, split into connected parts (``_components``), and each part
    is tried as the bar with all other parts as the digit (``_is_lying_bar``). A digit touching
    the bar is one part with it, and kept so.
    """
    cell = max(1, -(-max(mask.shape) // BAR_CELLS))
    h, w = -(-mask.shape[0] // cell), -(-mask.shape[1] // cell)
    padded = np.zeros((h * cell, w * cell), dtype=bool)
    padded[: mask.shape[0], : mask.shape[1]] = mask
    grid = np.asarray(padded.reshape(h, cell, w, cell).any(axis=(1, 3)))
    labels, count = _components(grid)
    if count < 2:
        return None
    ys, xs = np.nonzero(grid)
    cells = np.stack([ys, xs], axis=1).astype(np.float64)
    owner = labels[ys, xs]
    sizes = np.bincount(owner)
    for part in np.flatnonzero(sizes >= 2 * BAR_LONG):  # a bar is at least BAR_LONG cells by 2
        if not _is_lying_bar(cells[owner == part], cells[owner != part]):
            continue
        near = _with_ring(labels == part) & ~((labels > 0) & (labels != part))
        return np.repeat(np.repeat(near, cell, axis=0), cell, axis=1)[: mask.shape[0], : mask.shape[1]]
    return None


def _is_lying_bar(bar: np.ndarray, rest: np.ndarray) -> bool:
    """Whether the cells ``bar`` (row, column pairs) are a straight bar lying beside the digit, the
    cells ``rest``. Straight: the spread of its cells along and across their main axis gives a
    rectangle ``BAR_LONG`` times as long as it is thick, which they fill to ``BAR_FILL``, and it
    lies within ``BAR_TILT`` degrees of level. Beside: the rest lies wholly beyond one of its long
    sides. Longer than the digit: ``BAR_LONGER`` times the rest's size, which is ``BAR_REST`` of
    its length at least (a "1" with a dot beside it is no pen beside a digit).

    A digit's own straight strokes, lifted off the rest, fail these: a 4's stem, a 7's or a 9's
    stand upright (so a pen lying down the picture's side, or steeper than ``BAR_TILT``, is kept
    too); a detached top bar of a 7 or a 5, or a 2's base, is about as long as the rest is tall.
    One MNIST 5 has a detached flag 1.8 to 2.1 times its body's size, rising 20 degrees: the tilt
    limit keeps it.
    """
    centre = bar.mean(axis=0)
    spread, axes = np.linalg.eigh(np.cov((bar - centre).T))
    # a uniform run of n cells has variance (n^2 - 1) / 12
    thick, long = np.sqrt(12 * np.maximum(spread, 0.0) + 1)
    level = abs(axes[0, 1]) <= math.sin(math.radians(BAR_TILT))  # the row share of its long axis
    if not level or long < BAR_LONG * thick or len(bar) < BAR_FILL * long * thick:
        return False
    across, along = ((rest - centre) @ axes).T
    size = max(np.ptp(along), np.ptp(across)) + 1
    beside = across.min() > thick / 2 or across.max() < -thick / 2
    return bool(beside and BAR_REST * long <= size <= long / BAR_LONGER)


def _components(mask: np.ndarray) -> tuple[np.ndarray, int]:
    """The 8-connected parts of ``mask``: a label per pixel (0 off the mask, 1..count) and count.
    Each row's runs of set pixels are joined to the runs touching them in the row above
    (union-find over runs), so the work grows with the number of runs, not of pixels."""
    h, w = mask.shape
    edges = np.diff(np.pad(mask, ((0, 0), (1, 1))).astype(np.int8), axis=1)
    run_rows, starts = np.nonzero(edges == 1)
    ends = np.nonzero(edges == -1)[1]  # one past each run's last column
    parent = list(range(starts.size))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    row_start = np.searchsorted(run_rows, np.arange(h + 1))
    for y in range(1, h):
        above, above_end = int(row_start[y - 1]), int(row_start[y])
        for i in range(int(row_start[y]), int(row_start[y + 1])):
            # runs above overlapping columns start - 1 .. end (8-connected)
            while above < above_end and ends[above] < starts[i]:
                above += 1
            j = above
            while j < above_end and starts[j] <= ends[i]:
                a, b = root(i), root(j)
                if a != b:
                    parent[max(a, b)] = min(a, b)
                j += 1
    roots = np.array([root(i) for i in range(starts.size)], dtype=np.int64)
    ids = np.unique(roots, return_inverse=True)[1] + 1
    lengths = ends - starts
    before = np.cumsum(lengths) - lengths  # set pixels in the runs before each run
    pixels = np.repeat(run_rows * w + starts - before, lengths) + np.arange(int(lengths.sum()))
    labels = np.zeros(h * w, dtype=np.int64)
    labels[pixels] = np.repeat(ids, lengths)
    return labels.reshape(h, w), int(ids.max()) if ids.size else 0


def _edge_clusters(mask: np.ndarray, rows: np.ndarray, cols: np.ndarray) -> list[tuple[int, int]]:
    """Where a speck setting the box's edge would be: for each run of at most ``SPECK_SQUARE`` set
    pixels on the box's top, bottom, left or right line (a longer run is a stroke), the top-left
    corner of the ``SPECK_SQUARE`` square holding it and reaching into the box."""
    inward, half = SPECK_SQUARE - 1, SPECK_SQUARE // 2
    found = []
    for line, at, depth, along_rows in (
        (mask[rows[0]], rows[0], 0, True),
        (mask[rows[-1]], rows[-1], inward, True),
        (mask[:, cols[0]], cols[0], 0, False),
        (mask[:, cols[-1]], cols[-1], inward, False),
    ):
        set_at = np.flatnonzero(line)
        for run in np.split(set_at, np.flatnonzero(np.diff(set_at) > 1) + 1):
            if run.size <= SPECK_SQUARE:
                across = max(0, int(run[0] + run[-1]) // 2 - half)
                edge = max(0, int(at) - depth)
                found.append((edge, across) if along_rows else (across, edge))
    return found


def normalize_image(img: Image.Image) -> np.ndarray:
    """A decoded Pillow image -> a 28x28 digit: EXIF transpose, grey, then ``normalize_grey``."""
    if img.getexif().get(EXIF_ORIENTATION, 1) != 1:
        # only when there is something to turn: without a rotation exif_transpose returns a full copy
        img = ImageOps.exif_transpose(img)
    if max(img.size) > WORK_SIZE:
        # Shrinking first keeps big photos cheap; 512 px leaves the ink far more detail than 20 px needs.
        img = shrink(img)
    # No denoising filter: a 3x3 median erased ballpoint strokes (1-2 px once a photo is shrunk to
    # 512 px) and left such photos "blank"; noise is handled by normalize_grey's paper floor.
    return normalize_grey(_to_grey(img))


def shrink(img: Image.Image, limit: int = WORK_SIZE) -> Image.Image:
    """A new image fitting ``limit`` x ``limit``: exactly what ``img.copy().thumbnail(…, BOX)`` gives,
    without the full-size copy (which doubled the memory a 50 MP photo costs)."""
    width, height = img.size
    if width <= limit and height <= limit:
        return img
    aspect = width / height

    def rounded(number: float, key: Callable[[int], float]) -> int:  # Pillow's own rounding
        return max(min(math.floor(number), math.ceil(number), key=key), 1)

    x, y = limit, limit
    if x / y >= aspect:
        x = rounded(y * aspect, key=lambda n: abs(aspect - n / y))
    else:
        y = rounded(x / aspect, key=lambda n: 0 if n == 0 else abs(aspect - x / n))
    # Pillow's reduce() (the fast path reducing_gap takes) refuses 16-bit modes: BOX alone is exact there.
    gap = None if img.mode.startswith("I;16") else 2.0
    return img.resize((x, y), Image.Resampling.BOX, reducing_gap=gap)


def normalize_array(arr: Any) -> np.ndarray:
    """One image as an array: (H, W), (H, W, C) or (1, H, W); uint8/int in 0..255 or float in [0, 1]."""
    arr = np.asarray(arr)
    if arr.ndim == 3 and arr.shape[0] == 1:
        arr = arr[0]
    if arr.ndim in (2, 3) and min(arr.shape) < 1:
        raise InputError(f"empty array of shape {arr.shape}")
    if arr.ndim in (2, 3) and arr.shape[0] * arr.shape[1] > MAX_PIXELS:
        raise InputError(f"image too large: {arr.shape[1]}x{arr.shape[0]} pixels (limit {MAX_PIXELS:,})")
    if arr.ndim == 3 and arr.shape[-1] in CHANNEL_MODES:
        if arr.shape[-1] == 1:
            arr = arr[..., 0]
        else:
            return normalize_image(Image.fromarray(_as_uint8(arr), CHANNEL_MODES[arr.shape[-1]]))
    if arr.ndim != 2:
        raise InputError(f"expected an image of shape (H, W), (H, W, C) or (1, H, W), got shape {arr.shape}")
    digit = _as_uint8(arr)
    if _is_mnist_shaped(digit):
        return np.ascontiguousarray(digit)
    # Through Pillow like a decoded file, so an array and its PNG give the same digit.
    return normalize_image(Image.fromarray(np.ascontiguousarray(digit), "L"))


def _as_uint8(arr: np.ndarray) -> np.ndarray:
    """The documented pixel contract: integers in 0..255, or floats in [0, 1]. Nothing is clipped."""
    kind = arr.dtype.kind
    if kind == "u" and arr.dtype.itemsize == 1:
        return arr
    if kind in "iu":
        if arr.size and (arr.min() < 0 or arr.max() > 255):
            raise InputError(f"integer pixels must lie in 0..255, got {arr.min()}..{arr.max()} ({arr.dtype})")
        return arr.astype(np.uint8)
    if kind == "f":
        if not np.isfinite(arr).all():
            raise InputError(f"pixels contain NaN or infinity ({arr.dtype}, shape {arr.shape})")
        lo, hi = float(arr.min()), float(arr.max())
        if lo < 0.0 or hi > 1.0:
            raise InputError(f"float pixels must lie in [0, 1], got {lo:.3g}..{hi:.3g}; scale 0..255 data by 1/255")
        return np.rint(arr.astype(np.float32) * 255.0).astype(np.uint8)
    raise InputError(f"unsupported pixel type {arr.dtype} (use uint8 0..255 or float 0..1)")


# --------------------------------------------------------------------------- decoding files and bytes


def decode(data: bytes) -> np.ndarray:
    """Encoded image bytes (PNG, JPEG, WebP, …) -> a 28x28 digit, with size and pixel limits."""
    if not data:
        raise InputError("empty file (0 bytes)")
    if len(data) > MAX_FILE_BYTES:
        raise InputError(f"file too large: {len(data):,} bytes (limit {MAX_FILE_BYTES:,})")
    try:
        with Image.open(io.BytesIO(data), formats=IMAGE_FORMATS) as img:
            width, height = img.size
            if width * height > MAX_PIXELS:
                raise InputError(f"image too large: {width}x{height} pixels (limit {MAX_PIXELS:,})")
            if img.format == "JPEG":
                # Let libjpeg decode at 1/2, 1/4 or 1/8 scale when the photo is much larger than needed.
                img.draft("RGB", (WORK_SIZE, WORK_SIZE))
            img.load()
            return normalize_image(img)
    except InputError:
        raise
    except Image.UnidentifiedImageError as exc:
        kind = _sniff(data)
        if kind:
            raise InputError(f"corrupt {kind} file: Pillow cannot decode it") from exc
        raise InputError("not a supported image (PNG, JPEG, WebP, GIF, BMP, TIFF, PNM)") from exc
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise InputError(f"image too large (decompression bomb guard): {exc}") from exc
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        # Truncated or corrupt data surfaces from load() as OSError / SyntaxError / ValueError.
        raise InputError(f"corrupt or truncated image: {exc}") from exc


_SIGNATURES = {
    b"\x89PNG\r\n\x1a\n": "PNG",
    b"\xff\xd8\xff": "JPEG",
    b"GIF8": "GIF",
    b"BM": "BMP",
    b"II*\x00": "TIFF",
    b"MM\x00*": "TIFF",
}


def _sniff(data: bytes) -> str:
    """The format the first bytes claim, to tell "corrupt PNG" from "not an image"."""
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "WebP"
    return next((kind for magic, kind in _SIGNATURES.items() if data.startswith(magic)), "")


def read_file(path: str | os.PathLike[str]) -> bytes:
    try:
        if os.path.isdir(path):
            raise IsADirectoryError(path)
        size = os.stat(path).st_size
        if size > MAX_FILE_BYTES:
            raise InputError(f"file too large: {size:,} bytes (limit {MAX_FILE_BYTES:,})")
        with open(path, "rb") as f:
            return f.read(MAX_FILE_BYTES + 1)
    except FileNotFoundError as exc:
        raise InputError("no such file") from exc
    except IsADirectoryError as exc:
        raise InputError("is a directory") from exc
    except PermissionError as exc:
        raise InputError("permission denied") from exc
    except OSError as exc:
        raise InputError(f"cannot read file: {exc.strerror or exc}") from exc


def decode_file(path: str | os.PathLike[str]) -> np.ndarray:
    """One image file -> a 28x28 digit, whatever its name says (raises ``InputError``)."""
    return decode(read_file(path))


def normalize(image: Any) -> np.ndarray:
    """One image of any supported single-image kind -> a 28x28 digit (raises ``InputError``)."""
    items = list(expand(image))
    if len(items) != 1:
        raise InputError(f"expected one image, got {len(items)}")
    return items[0].load()


def fetch_url(url: str) -> bytes:
    """Download an http(s) image with a size cap, a timeout per read and one for the whole download;
    redirects stay on http(s). No credentials are sent (requests' own .netrc lookup aside)."""
    import requests
    import urllib3.exceptions

    deadline = time.monotonic() + URL_DEADLINE
    try:
        with requests.get(url, timeout=URL_TIMEOUT, stream=True) as resp:
            if resp.url.split(":", 1)[0].lower() not in ("http", "https"):
                raise InputError("redirected to a non-http(s) URL")
            if resp.status_code != 200:
                raise InputError(f"download failed: HTTP {resp.status_code}")
            declared = _content_length(resp.headers.get("Content-Length"))
            if declared is not None and declared > MAX_FILE_BYTES:
                raise InputError(f"file too large: {declared:,} bytes (limit {MAX_FILE_BYTES:,})")
            chunks, size = [], 0
            while True:
                # read1: at most one socket read per call, so a server trickling a byte at a time
                # meets the overall deadline instead of holding us URL_TIMEOUT per byte forever.
                chunk = resp.raw.read1(64 * 1024, decode_content=True)
                if not chunk:
                    break
                size += len(chunk)
                if size > MAX_FILE_BYTES:
                    raise InputError(f"file too large: over {MAX_FILE_BYTES:,} bytes")
                if time.monotonic() > deadline:
                    raise InputError(f"download too slow: not finished after {URL_DEADLINE:.0f} s")
                chunks.append(chunk)
            return b"".join(chunks)
    except (requests.RequestException, urllib3.exceptions.HTTPError) as exc:
        raise InputError(f"download failed: {type(exc).__name__}") from exc


def _content_length(value: str | None) -> int | None:
    """A Content-Length header as bytes; ``None`` when absent or not a plain decimal number."""
    if not value or not value.strip().isascii() or not value.strip().isdecimal():
        return None
    return int(value.strip())


# --------------------------------------------------------------------------- batch files (wire contract v1)

MAX_BATCH_DIGITS = 250_000  # 196 MB of digits; the contract promises at least 100,000
BATCH_KEY = "digits"  # the array's name inside an .npz


def read_digits_file(path: str | os.PathLike[str], max_digits: int = MAX_BATCH_DIGITS) -> np.ndarray:
    """A batch file of the wire contract: ``.npy``, or ``.npz`` with one array (named ``digits``),
    holding already-normalised uint8 ``[N, 28, 28]`` digits. Never unpickles; the header is checked
    before any data is read, and the data must be there before its buffer is allocated, so a file
    claiming a billion digits (or 250,000 in 100 bytes) costs nothing."""
    try:
        with open(path, "rb") as f:
            head = f.read(6)
            f.seek(0)
            if head.startswith(b"\x93NUMPY"):
                return _read_npy(f, os.fstat(f.fileno()).st_size, max_digits)
        if head.startswith(b"PK"):
            return _read_npz(path, max_digits)
    except InputError:
        raise
    except _CORRUPT_ARCHIVE as exc:
        raise InputError(f"corrupt batch file: {type(exc).__name__}: {exc}") from exc
    raise InputError("a batch file must be .npy or .npz (numpy's formats) holding uint8 [N, 28, 28]")


# What numpy's header parser and zipfile raise on damaged input: zlib/lzma/bz2 stream errors,
# unsupported or encrypted members, struct sizes that do not add up.
_CORRUPT_ARCHIVE = (
    OSError,
    ValueError,
    EOFError,
    zipfile.BadZipFile,
    zlib.error,
    LZMAError,
    NotImplementedError,
    RuntimeError,
    struct.error,
    OverflowError,
)
NPY_VERSIONS = {(1, 0): np.lib.format.read_array_header_1_0, (2, 0): np.lib.format.read_array_header_2_0}


def _read_npy(f: Any, size: int | None, max_digits: int) -> np.ndarray:
    """The array in an .npy stream, in a writable buffer of its own (torch refuses read-only arrays).

    ``size``: the stream's length when it is a plain file (its bytes are there, so the buffer is
    allocated at once and read into); ``None`` for an archive member, whose declared size proves
    nothing, so the buffer grows only as data really arrives.
    """
    version = np.lib.format.read_magic(f)
    read_header = NPY_VERSIONS.get(version)
    if read_header is None:
        raise InputError(f"unsupported .npy version {version[0]}.{version[1]} (1.0 and 2.0 are read)")
    try:
        shape, fortran, dtype = read_header(f)
    except Exception as exc:  # numpy's header parser: ValueError, and tokenize.TokenError from older headers
        raise InputError(f"corrupt .npy header: {type(exc).__name__}: {exc}") from exc
    _check_batch(shape, dtype, max_digits)
    count = int(np.prod(shape))
    if size is not None and size - f.tell() < count:
        raise InputError(f"truncated batch file: {max(0, size - f.tell()):,} of {count:,} bytes")
    if size is not None:
        array = np.empty(count, dtype=np.uint8)
        view, filled = array.data, 0
        while filled < count and (n := f.readinto(view[filled : filled + 2**20])):
            filled += n
    else:
        data = bytearray()
        while len(data) < count and (chunk := f.read(min(2**20, count - len(data)))):
            data += chunk
        array, filled = np.frombuffer(data, dtype=np.uint8), len(data)
    if filled < count:
        raise InputError(f"truncated batch file: {filled:,} of {count:,} bytes")
    return array.reshape(shape[::-1]).T if fortran else array.reshape(shape)


def _read_npz(path: str | os.PathLike[str], max_digits: int) -> np.ndarray:
    with zipfile.ZipFile(path) as archive:
        names = [n for n in archive.namelist() if n.endswith(".npy")]
        name = f"{BATCH_KEY}.npy" if f"{BATCH_KEY}.npy" in names else (names[0] if len(names) == 1 else None)
        if name is None:
            raise InputError(f"an .npz batch needs one array, or one named {BATCH_KEY!r}; found {names}")
        info = archive.getinfo(name)
        if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
            # numpy writes only these two; bzip2/LZMA decoders size their state from the header
            raise InputError(
                f"an .npz member must be stored or deflated (as numpy writes it), not method {info.compress_type}"
            )
        # zipfile never inflates a member past its declared file_size (then it checks the CRC)
        if info.file_size > max_digits * SIZE * SIZE + 4096:
            raise InputError(f"batch too large: over {max_digits:,} digits")
        with archive.open(name) as member:
            return _read_npy(member, None, max_digits)


def _check_batch(shape: tuple[int, ...], dtype: np.dtype[Any], max_digits: int) -> None:
    if dtype != np.uint8:
        raise InputError(f"batch digits must be uint8, got {dtype}")
    # type(...) is int: a header may say (True, 28, 28), which == 1 but cannot size an array
    if len(shape) != 3 or tuple(shape[1:]) != (SIZE, SIZE) or type(shape[0]) is not int:
        raise InputError(f"batch must have shape [N, 28, 28], got {list(shape)}")
    if shape[0] < 1:
        raise InputError("batch file holds no digits")
    if shape[0] > max_digits:
        raise InputError(f"batch too large: {shape[0]:,} digits (limit {max_digits:,} per prediction)")


def write_digits_file(digits: np.ndarray, compressed: bool = False) -> bytes:
    """The bytes of a batch file for ``read_digits_file``: ``.npy``, or ``.npz`` when ``compressed``."""
    digits = np.ascontiguousarray(digits, dtype=np.uint8)
    _check_batch(digits.shape, digits.dtype, max(MAX_BATCH_DIGITS, len(digits)))
    buf = io.BytesIO()
    if compressed:
        np.savez_compressed(buf, digits=digits)  # the key is BATCH_KEY
    else:
        np.save(buf, digits, allow_pickle=False)
    return buf.getvalue()


# --------------------------------------------------------------------------- expanding user arguments


def list_image_files(folder: str | os.PathLike[str]) -> list[Path]:
    """The image files directly in ``folder``, by name; other files are ignored."""
    return sorted(p for p in Path(folder).iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and not p.is_dir())


def _is_url(text: str) -> bool:
    return text[:8].lower().startswith(("http://", "https://"))


def _is_torch_tensor(obj: Any) -> bool:
    return type(obj).__module__.split(".")[0] == "torch" and hasattr(obj, "detach")


def _is_dataframe(obj: Any) -> bool:
    return hasattr(obj, "columns") and hasattr(obj, "to_numpy") and not isinstance(obj, np.ndarray)


def is_batch(images: Any) -> bool:
    """Whether ``images`` names many images (list out) rather than one (one result out).

    Decided by the kind of input, never by how many images it turns out to hold.
    """
    if isinstance(images, (str, os.PathLike)):
        text = os.fspath(images)
        if _is_url(text):
            return False
        return (
            os.path.isdir(text) or text.lower().endswith(".csv") or (not os.path.exists(text) and glob.has_magic(text))
        )
    if isinstance(images, (bytes, bytearray, memoryview, Image.Image)) or hasattr(images, "read"):
        return False
    if _is_torch_tensor(images):
        return _array_layout(tuple(images.shape), torch_order=True) != "image"
    if isinstance(images, np.ndarray):
        return _array_layout(images.shape, torch_order=False) != "image"
    return _is_dataframe(images) or isinstance(images, Iterable)


def _array_layout(shape: tuple[int, ...], torch_order: bool) -> str:
    """'image', 'batch' (N, H, W), 'batch-channels' (N, C, H, W / N, H, W, C) or 'rows' (N, 784).

    Any (N, 784) is N Kaggle rows, N = 28 included (no digit photo is 28 x 784 px)."""
    if len(shape) == 2 and shape[1] == KAGGLE_PIXELS:
        return "rows"
    if len(shape) <= 2:
        return "image"
    if len(shape) == 3:
        if torch_order:
            # (1, H, W) is what ToTensor gives for one grey image; any other (N, H, W) is a batch,
            # like MNIST's `.data` tensor. (An RGB image tensor goes in as (1, 3, H, W).)
            return "image" if shape[0] == 1 else "batch"
        # numpy's single image is (H, W, C) with C = 1 (grey), 2 (grey + alpha), 3 (RGB) or 4 (RGBA)
        # and H > 4; any other 3-d array is a batch (N, H, W), even N = 1.
        return "image" if shape[-1] in CHANNEL_MODES and shape[0] > 4 else "batch"
    return "batch-channels"


def _array_items(arr: np.ndarray, name: str, torch_order: bool) -> Iterator[Item]:
    layout = _array_layout(arr.shape, torch_order)
    if layout == "image":
        if torch_order and arr.ndim == 3:
            arr = np.moveaxis(arr, 0, -1)
        yield Item(f"{name} {arr.shape}", partial(normalize_array, arr))
    elif layout == "rows":
        for i in range(arr.shape[0]):
            yield Item(f"{name}[{i}]", partial(normalize_array, arr[i].reshape(SIZE, SIZE)))
    elif layout == "batch":
        ready = np.zeros(arr.shape[0], dtype=bool)
        if arr.dtype == np.uint8 and arr.shape[1:] == (SIZE, SIZE):
            # The common case (MNIST-style batches): check them all at once, then pass them through.
            ready = mnist_shaped(arr)
        for i in range(arr.shape[0]):
            loader = partial(_passthrough, arr[i]) if ready[i] else partial(normalize_array, arr[i])
            yield Item(f"{name}[{i}]", loader)
    elif arr.ndim == 4:
        for i in range(arr.shape[0]):
            one = np.moveaxis(arr[i], 0, -1) if torch_order else arr[i]
            yield Item(f"{name}[{i}]", partial(normalize_array, one))
    else:
        yield Item(f"{name} {arr.shape}", lambda: _raise(f"cannot read an array of shape {arr.shape} as images"))


def _tensor_array(tensor: Any) -> np.ndarray:
    """A torch tensor as numpy, without importing torch: sparse ones made dense, and dtypes numpy has
    no type for (bfloat16, float8) widened to float32, which holds their values exactly."""
    t = tensor.detach()
    if str(t.layout) != "torch.strided":
        t = t.to_dense()
    t = t.cpu()
    try:
        return np.asarray(t.numpy())
    except TypeError:
        if not t.is_floating_point():
            raise
        return np.asarray(t.float().numpy())


def _passthrough(digit: np.ndarray) -> np.ndarray:
    return digit


def _raise(reason: str) -> np.ndarray:
    raise InputError(reason)


def kaggle_csv_items(path: str | os.PathLike[str]) -> Iterator[Item]:
    """Rows of a Digit Recognizer CSV: ``pixel0..pixel783`` with or without a leading ``label``.

    Blank lines are skipped and not counted: "row N" is the N-th image, Kaggle's ImageId.
    Read lazily, one row at a time, so a 28,000-row test.csv never sits in memory as text. A file
    that stops being readable text (not UTF-8, a field over csv's size limit) ends with one error
    item naming the row; the rows before it are kept.
    """
    name = repr(os.fspath(path))
    try:
        f = open(path, "rb")  # noqa: SIM115  (closed by the `with` below, once the rows are read)
    except OSError as exc:
        reason = f"cannot read CSV: {exc.strerror or exc}"
        yield Item(f"csv {name}", lambda: _raise(reason))
        return
    with f:
        rows = csv.reader(_utf8_lines(f))
        header = _next_row(rows)
        if isinstance(header, InputError):
            yield Item(f"csv {name}", partial(_raise, header.reason))
            return
        if header is None:
            yield Item(f"csv {name}", lambda: _raise("empty CSV file"))
            return
        has_label = bool(header) and header[0].strip().lower() == "label"
        pixel_header = header[1:] if has_label else header
        if len(pixel_header) != KAGGLE_PIXELS or not pixel_header[0].strip().lower().startswith("pixel"):
            columns = len(header)
            yield Item(
                f"csv {name}",
                lambda: _raise(f"not a Digit Recognizer CSV: header needs pixel0..pixel783 (got {columns} columns)"),
            )
            return
        row_number = 0
        while True:
            row = _next_row(rows)
            if row is None:
                return
            if isinstance(row, list) and is_blank_csv_row(row):
                continue  # a blank line (a trailing newline too many): no image, so no row number
            row_number += 1
            if isinstance(row, InputError):
                yield Item(f"csv {name} row {row_number}", partial(_raise, row.reason))
                return
            yield _csv_item(f"csv {name} row {row_number}", row, has_label)


def is_blank_csv_row(row: list[str]) -> bool:
    """A blank line as ``csv.reader`` gives it (``[]``, or one empty or space-only field). A row of
    empty fields (``,,,``) is not blank: it is a row whose values are missing."""
    return len(row) <= 1 and not "".join(row).strip()


def _utf8_lines(f: Any) -> Iterator[str]:
    """A binary file's lines as text, decoded one by one, so bad bytes cost only their own line
    and the rows before them (a byte-order mark at the start is dropped)."""
    for number, line in enumerate(f):
        yield line.decode("utf-8-sig" if number == 0 else "utf-8")


def _next_row(rows: Iterator[list[str]]) -> list[str] | InputError | None:
    """The next CSV row, ``None`` at the end, or the reason the file cannot be read on."""
    try:
        return next(rows)
    except StopIteration:
        return None
    except UnicodeDecodeError as exc:
        return InputError(f"not a text CSV file: byte {exc.start + 1} of this line is not UTF-8")
    except (csv.Error, OSError) as exc:
        return InputError(f"unreadable CSV: {exc}")


def _csv_item(source: str, row: list[str], has_label: bool) -> Item:
    """A CSV row as an item, its text parsed now: 784 bytes held per row, not 784 strings (a 28,000-row
    test.csv held as text took ~450 MB before ``classify`` began). A bad row's error waits for loading."""
    values = row[1:] if has_label else row
    if len(values) != KAGGLE_PIXELS:
        return Item(source, partial(_raise, f"expected {KAGGLE_PIXELS} pixel values, got {len(values)}"))
    try:
        pixels = np.array([int(v) for v in values], dtype=np.int64).reshape(SIZE, SIZE)
    except ValueError as exc:
        return Item(source, partial(_raise, f"pixel values must be integers 0..255 ({exc})"))
    if pixels.min() >= 0 and pixels.max() <= 255:
        pixels = pixels.astype(np.uint8)  # out-of-range rows stay as they are, for normalize_array to name
    return Item(source, partial(normalize_array, pixels))


def expand(images: Any) -> Iterator[Item]:
    """One ``Item`` per image named by ``images``, lazily and in order (see the README's table)."""
    if isinstance(images, (str, os.PathLike)):
        yield from _path_items(images)
    elif isinstance(images, (bytes, bytearray, memoryview)):
        data = bytes(images)
        yield Item(f"bytes ({len(data):,} B)", lambda: decode(data))
    elif isinstance(images, Image.Image):
        yield Item(f"PIL image {images.mode} {images.size[0]}x{images.size[1]}", lambda: _pil(images))
    elif hasattr(images, "read"):
        yield Item(_file_name(images), lambda: decode(_read_stream(images)))
    elif _is_torch_tensor(images):
        try:
            arr = _tensor_array(images)
        except Exception as exc:  # a layout or device numpy cannot see (meta, quantized…): name it
            reason = f"cannot read this tensor ({images.dtype}, {images.layout}): {type(exc).__name__}: {exc}"
            yield Item(f"tensor {tuple(images.shape)}", partial(_raise, reason))
        else:
            yield from _array_items(arr, "tensor", torch_order=True)
    elif isinstance(images, np.ndarray):
        yield from _array_items(images, "array", torch_order=False)
    elif _is_dataframe(images):
        yield from _array_items(np.asarray(_dataframe_pixels(images)), "dataframe", torch_order=False)
    elif isinstance(images, Iterable):
        for element in _elements(images):
            if isinstance(element, _Failed):
                yield Item(element.source, partial(_raise, element.reason))
            elif isinstance(element, (list, tuple)):
                # A list inside a list is a mistake more often than a batch: name it, don't guess.
                kind = type(element).__name__
                yield Item(f"nested {kind}", lambda: _raise("a list inside the list is not an image; flatten it"))
            else:
                yield from expand(element)
    else:
        kind = type(images).__name__
        yield Item(kind, lambda: _raise(f"unsupported input type {kind}"))


@dataclass(frozen=True)
class _Failed:
    """Where iterating the user's iterable raised, and why."""

    source: str
    reason: str


def _elements(images: Iterable[Any]) -> Iterator[Any]:
    """The iterable's elements; if it raises (a generator whose file vanished, say), one ``_Failed``
    for that point, and nothing after it: the elements already read still get their answers."""
    kind, read = type(images).__name__, 0
    try:
        for element in images:
            yield element
            read += 1
    except Exception as exc:
        reason = f"the {kind} of inputs raised {type(exc).__name__}: {exc}; nothing after it was read"
        yield _Failed(f"{kind} element {read}", reason)


def _pil(img: Image.Image) -> np.ndarray:
    width, height = img.size
    if width * height > MAX_PIXELS:
        raise InputError(f"image too large: {width}x{height} pixels (limit {MAX_PIXELS:,})")
    return normalize_image(img)


def _dataframe_pixels(frame: Any) -> Any:
    columns = [str(c) for c in frame.columns]
    pixels = [c for c in columns if c.startswith("pixel")]
    if len(pixels) == KAGGLE_PIXELS:
        return frame[pixels].to_numpy()
    return frame.to_numpy()


def _file_name(f: Any) -> str:
    name = getattr(f, "name", None)
    return f"file {name!r}" if isinstance(name, str) else f"file object {type(f).__name__}"


def _read_stream(f: Any) -> bytes:
    data = f.read(MAX_FILE_BYTES + 1)
    if isinstance(data, str):
        raise InputError("file is open in text mode; open it with 'rb'")
    if len(data) > MAX_FILE_BYTES:
        raise InputError(f"file too large: over {MAX_FILE_BYTES:,} bytes")
    return bytes(data)


def _path_items(path: str | os.PathLike[str]) -> Iterator[Item]:
    text = os.fspath(path)
    if _is_url(text):
        yield Item(f"url {text!r}", lambda: decode(fetch_url(text)))
    elif os.path.isdir(text):
        files = list_image_files(text)
        if not files:
            yield Item(f"directory {text!r}", lambda: _raise("no image files in this directory"))
        for file in files:
            yield Item(repr(str(file)), partial(decode_file, file))
    elif text.lower().endswith(".csv"):
        yield from kaggle_csv_items(text)
    elif not os.path.exists(text) and glob.has_magic(text):
        matches = sorted(m for m in glob.glob(text, recursive=True) if Path(m).suffix.lower() in IMAGE_SUFFIXES)
        if not matches:
            yield Item(f"glob {text!r}", lambda: _raise("no image files match this pattern"))
        for match in matches:
            yield Item(repr(match), partial(decode_file, match))
    else:
        yield Item(repr(text), partial(decode_file, text))


@dataclass(frozen=True)
class Loaded:
    """An item after loading: its digit, or the error that names it."""

    index: int
    source: str
    digit: np.ndarray | None
    error: InputError | None


def load_item(index: int, item: Item) -> Loaded:
    try:
        digit = item.load()
    except InputError as exc:
        return Loaded(index, item.source, None, exc.at(index, item.source))
    except Exception as exc:
        reason = f"unexpected {type(exc).__name__} while reading: {exc}"
        return Loaded(index, item.source, None, InputError(reason, index=index, source=item.source))
    return Loaded(index, item.source, digit, None)


def load_items(items: Iterable[Item], start: int = 0) -> list[Loaded]:
    """Load each item; errors stay in place as values so every item has exactly one outcome."""
    return [load_item(start + i, item) for i, item in enumerate(items)]


def stack(loaded: Iterable[Loaded]) -> np.ndarray:
    """The successfully loaded digits as one uint8 ``[N, 28, 28]`` array."""
    digits = [x.digit for x in loaded if x.digit is not None]
    if not digits:
        return np.zeros((0, SIZE, SIZE), dtype=np.uint8)
    return np.stack(digits)
