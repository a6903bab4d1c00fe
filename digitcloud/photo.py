"""A grey picture -> a 28x28 uint8 MNIST-style digit (light ink on dark): the MNIST recipe.

``normalize_grey`` is the whole recipe. Cut to the page when the photo shows a desk round it
(``clutter.crop_to_page``); decide the ink's polarity and take the paper's light off (``paper``);
scale the ink from the paper's level to full ink; take out what is not the digit (``clutter``);
crop to the strong ink (an error if it holds several digits in a row, ``digits_side_by_side``);
bring every stroke to full ink; widen a pen much thinner than MNIST's; fit the ink's box into
20x20 keeping its aspect ratio (anti-aliased), then place it in 28x28 so its centre of mass sits
at pixel (14, 14) (LeCun et al.). A 28x28 digit that already looks like that passes through
untouched. numpy + Pillow only.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from PIL import Image

from digitcloud import clutter, morphology, paper
from digitcloud.errors import InputError

SIZE = 28
BOX = 20  # the ink's bounding box is fitted into BOX x BOX, as in MNIST
# Every stroke of a crop is brought to full ink: each pixel divided by the brightest ink within
# about STROKE_WINDOW of the digit's size round it, taken as at least FAINT_STROKE of full ink
# (at 0.3 the dots a dithered scan on grey paper leaves round its digit were raised with it).
STROKE_WINDOW = 0.1
FAINT_STROKE = 0.5
# A crop whose longer side is under SMALL_CROP px has too few pixels to measure its pen or its strokes' level: both
# steps leave it as it is (an MNIST-sized digit, given off-centre in 28x28, keeps its anti-aliasing).
SMALL_CROP = 24
THIN_PEN = 0.09  # pen width / digit size below which the pen is widened: MNIST's 5th percentile
PEN_TARGET = 0.12  # ... to about this (MNIST's 25th percentile is 0.115, its median 0.135)
MIN_CONTRAST = 24.0  # grey levels between paper and ink below which an image counts as blank
# A speck, not a digit: ink spanning under MIN_INK_FRACTION of the image's side along both axes,
# or under MIN_INK_PX pixels and under SMALL_INK_FRACTION (a 3x3 fleck in a 28x28 image is one; a
# 5 px "1" in it, or a "1" filling a 5x5 image or a 1100x20 strip, is not).
MIN_INK_FRACTION = 0.02
MIN_INK_PX = 6
SMALL_INK_FRACTION = 0.15
# Several digits side by side (a number on the page), not one: empty columns SIDE_GAP of the ink's
# height wide split it into parts SIDE_TALL of that height tall or more, SIDE_WIDE of their own
# height wide (a "1", a 4's detached stem are narrower: see SIDE_ONE) and SIDE_SHARE of the ink.
SIDE_GAP, SIDE_TALL, SIDE_WIDE, SIDE_SHARE = 0.08, 0.5, 0.3, 0.15
SIDE_INK = 0.1  # faint ink counts: a thin pen's strokes break up at the strong-ink level
# A narrow part counts too, as a "1", when it and a wide part beside it are each one stroke SIDE_ONE of
# the ink's height tall ("17", "10"), or when two such narrow parts stand with no wide one ("11").
# A 4's detached stem stands beside a body that ends at its bar.
SIDE_ONE = 0.85
# Under uneven light a local reading of dark ink replaces the plane's only when its ink's box is
# under LOCAL_SIZE of the picture's shorter side: the local windows (30 % of that side) are then
# wider than MNIST's boldest pen (21 % of the digit's size, its 95th percentile).
LOCAL_SIZE = 0.9


def normalize_grey(grey: np.ndarray) -> np.ndarray:
    """A grey image (float, any size, either polarity) -> a 28x28 uint8 MNIST-style digit.

    Raises ``InputError`` when there is no ink to find. A photo of a sheet of paper on a darker
    desk is first read cut to the page (``clutter.crop_to_page``); when that finds no digit, as any photo.
    """
    page = clutter.crop_to_page(grey)
    if page is not None:
        try:
            return _read_paper(page)
        except InputError:
            pass
    return _read_paper(grey)


def _read_paper(grey: np.ndarray) -> np.ndarray:
    """``normalize_grey`` of an image showing only paper and ink. The paper is first taken as one
    level with a plane of light across it. Where the frame shows uneven light (a vignette, a shadow),
    the paper is estimated locally instead when that plane reading
    - found no digit;
    - or, the local paper calling the ink dark, found light ink, none of it on the frame (a lit
      patch of paper in a shadow, read as the digit);
    - or, the same, found dark ink: no plane follows a shadow's edge or a vignette, so the plane
      left a band of "ink" along the edge, or cut a notebook's lines where the light changes and
      left their pieces in the digit's box. The local reading is kept only when its ink's box is
      under ``LOCAL_SIZE`` of the picture's shorter side: the local windows are 30 % of that side,
      so a digit larger than it (a close crop) can have a pen as wide as a window, which the local
      paper swallowed.
    """
    try:
        reading = _normalize_grey(grey, paper.ink_is_light(grey), even_light=True)
    except InputError:
        if not paper.uneven_light(grey):
            raise
        return _normalize_grey(grey, paper.ink_is_light_locally(grey), even_light=False).digit
    if reading.passed_through or (reading.light_ink and reading.ink_on_frame):
        return reading.digit
    if not paper.uneven_light(grey) or paper.ink_is_light_locally(grey):
        return reading.digit
    try:  # the local paper calls the ink dark
        local = _normalize_grey(grey, light_ink=False, even_light=False)
    except InputError:
        return reading.digit
    if reading.light_ink or local.ink_size < LOCAL_SIZE:
        return local.digit
    return reading.digit


class _Reading(NamedTuple):
    digit: np.ndarray  # 28x28 uint8
    light_ink: bool  # the polarity it was read with
    passed_through: bool  # already MNIST-shaped: the digit as given
    # Where its strong ink lies: touching the image's frame, and its box's longer side relative
    # to the image's shorter side (a close crop: on the frame, 1 or more)
    ink_on_frame: bool
    ink_size: float


def _normalize_grey(grey: np.ndarray, light_ink: bool, even_light: bool) -> _Reading:
    """One reading of ``grey`` with the polarity given: its paper a plane (``even_light``) or local."""
    if not light_ink:
        grey = 255.0 - grey
    if grey.shape == (SIZE, SIZE):
        candidate = np.clip(np.rint(grey), 0, 255).astype(np.uint8)
        if is_mnist_shaped(candidate):
            return _Reading(candidate, light_ink, passed_through=True, ink_on_frame=True, ink_size=1.0)
    grey = paper.flatten_paper(grey) if even_light else paper.flatten_uneven_paper(grey)
    _, _, frame = paper.frame_pixels(grey)
    # Paper texture and sensor noise: four robust standard deviations of the frame count as paper.
    floor = paper.robust_deviation(frame, times=4)
    ink = _ink_level(grey, floor)
    if ink - floor < MIN_CONTRAST:
        raise InputError(f"no digit found: the image is blank (contrast {max(0.0, ink - floor):.0f} of 255)")
    unclipped = (grey - floor) / (ink - floor)
    level = clutter.erase_faint_blobs(np.clip(unclipped, 0.0, 1.0))
    level, lines_turn = clutter.erase_paper_lines(level, unclipped)
    if abs(lines_turn) >= clutter.PAGE_TURN:
        # The digit was written along the page's lines: turned with them, it reads as a digit turned
        # that much (a ruled page turned 30 degrees read 88 %). It is turned back, the room it needs paper.
        level = clutter.turned(level, lines_turn)
    level = clutter.erase_printed_box(level)
    # The ink's box: strong ink decides where the digit is (faint specks are ignored; dust far from
    # it or in dots clear of it, a pen lying beside it, an outline drawn round it and a line drawn
    # under it left out), then the faint anti-aliased edge right around it is kept so a clean digit
    # is cropped exactly.
    strong = clutter.without_specks(level > 0.25)
    for find in (clutter.dust_dots, clutter.lying_bar, clutter.drawn_mark):
        mark = find(strong)
        if mark is not None:
            strong, level = strong & ~mark, np.where(mark, 0.0, level).astype(level.dtype)
    rows, cols = np.flatnonzero(strong.any(1)), np.flatnonzero(strong.any(0))
    if rows.size == 0:
        raise InputError("no digit found: no ink stands out from the background")
    ink_on_frame = rows[0] == 0 or cols[0] == 0 or rows[-1] == level.shape[0] - 1 or cols[-1] == level.shape[1] - 1
    height, width = grey.shape
    ink_h, ink_w = rows[-1] - rows[0] + 1, cols[-1] - cols[0] + 1
    extent = max(ink_h / height, ink_w / width)  # along its longer axis, relative to the image's side
    if extent < MIN_INK_FRACTION or (max(ink_h, ink_w) < MIN_INK_PX and extent < SMALL_INK_FRACTION):
        raise InputError(
            f"no digit found: the only ink is a speck ({ink_w}x{ink_h} px in a {width}x{height} image); "
            "crop closer to the digit"
        )
    digits = digits_side_by_side(level[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1] > SIDE_INK)
    if digits > 1:
        raise InputError(f"{digits} digits side by side, it seems: give one digit per image (crop each)")
    margin = max(1, round(max(rows[-1] - rows[0], cols[-1] - cols[0]) / BOX))
    top, left = max(0, rows[0] - margin), max(0, cols[0] - margin)
    window = level[top : rows[-1] + margin + 1, left : cols[-1] + margin + 1]
    rows, cols = np.flatnonzero(window.any(1)), np.flatnonzero(window.any(0))
    crop = widen_thin_pen(strokes_at_full_ink(window[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]))
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
    digit = np.rint(out).astype(np.uint8)
    ink_size = max(ink_h, ink_w) / min(height, width)
    return _Reading(digit, light_ink, passed_through=False, ink_on_frame=bool(ink_on_frame), ink_size=ink_size)


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


def digits_side_by_side(box: np.ndarray) -> int:
    """How many digit-like parts the ink in ``box`` (a mask cropped to it) splits into at empty
    columns: 1 for a digit, 2 for "42", "17" and "11"; 1 for a 4 whose stem stands apart."""
    height = box.shape[0]
    inked = np.flatnonzero(box.any(0))
    split = np.flatnonzero(np.diff(inked) - 1 >= max(1.0, SIDE_GAP * height))
    starts, ends = np.r_[inked[0], inked[split + 1]], np.r_[inked[split], inked[-1]] + 1
    if starts.size == 1:
        return 1
    total = float(box.sum())
    wide = ones = 0
    full_height = False  # a wide part as tall as a "1"
    for start, end in zip(starts, ends, strict=True):
        part = box[:, start:end]
        if part.sum() < SIDE_SHARE * total:
            continue
        tall = _tallest_stroke(part)  # not scattered fragments of a faint digit
        if tall < SIDE_TALL * height:
            continue
        if end - start >= SIDE_WIDE * tall:
            wide += 1
            full_height |= tall >= SIDE_ONE * height
        elif tall >= SIDE_ONE * height:
            ones += 1
    if full_height or (wide == 0 and ones > 1):  # "17", "10"; "11"
        wide += ones
    return max(1, wide)


def _tallest_stroke(mask: np.ndarray) -> int:
    """The height of the tallest 8-connected part of ``mask``."""
    top, bottom, _, _ = morphology.part_boxes(*morphology.components(mask))
    return int((bottom - top).max()) + 1


def strokes_at_full_ink(crop: np.ndarray) -> np.ndarray:
    """Every stroke of a 0..1 ink map cropped to the digit brought to full ink: each pixel divided
    by the brightest ink near it (``STROKE_WINDOW``), that brightness taken as at least
    ``FAINT_STROKE`` so that what is fainter (a grain of noise, a halftone's leftover dots) is at
    most doubled.

    MNIST's strokes all reach full ink: NIST's digits were scanned black and white, and greys came
    only from shrinking them (LeCun et al.). A photo's strokes need not: a thin pen's line
    blurred, a light touch, a stroke where the light is stronger read at a fraction of the darkest
    ink, and the model reads a faint stroke as none (a 9 whose loop is faint at the top read as 4).
    A stroke's soft edge keeps its share of the stroke's core, as MNIST's anti-aliasing does. A crop
    under ``SMALL_CROP`` is left alone: its window would be a pixel or two, less than a pen, and would
    raise an MNIST-sized digit's anti-aliased edge, which a digit given off-centre in 28x28 must keep.
    """
    if max(crop.shape) < SMALL_CROP:
        return crop
    near = morphology.local_max(crop, max(1, round(STROKE_WINDOW * max(crop.shape) / 2.5)))
    return np.asarray(np.clip(crop / np.maximum(near, FAINT_STROKE), 0.0, 1.0), dtype=crop.dtype)


def widen_thin_pen(crop: np.ndarray) -> np.ndarray:
    """A digit written with a pen much thinner than MNIST's, relative to its size, gets a wider one.

    MNIST's pen is 9-21 % of the digit's size (5th-95th percentile, median 13.5 %); a ballpoint
    on a large digit can be 3 %, which shrinks to a faint sub-pixel line at 20 px. Below
    ``THIN_PEN`` the ink is dilated to about ``PEN_TARGET``; anything at or above is left alone.
    """
    size = max(crop.shape)
    if size < SMALL_CROP:
        return crop  # too few pixels to measure a width
    relative = morphology.stroke_width(crop) / size
    if relative >= THIN_PEN:
        return crop
    grow = round((PEN_TARGET - relative) * size)
    return morphology.max_filter(crop, grow | 1) if grow >= 2 else crop


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


def is_mnist_shaped(digit: np.ndarray) -> bool:
    """One digit: 28x28 uint8 and ``mnist_shaped``."""
    return digit.shape == (SIZE, SIZE) and digit.dtype == np.uint8 and bool(mnist_shaped(digit[None])[0])
