"""Dithered black-and-white pictures (halftones) -> their grey levels back (descreening).

A scanner's or a fax's black-and-white "photo" mode, or Pillow's own ``convert("1")``
(Floyd-Steinberg unless told otherwise), draws each grey as a scatter of black dots. Off-white
paper then becomes white paper strewn with lone black pixels, and the recipe in ``photo`` reads
them as ink all over the page: before this module, such scans of validation digits read 10 %
(bench/README.md, the ``bench/scans.py`` section). A halftone is recognised by its dots, pixels of
a colour none of their eight neighbours has, and blurred until the dots merge back into grey; a dot
the blur leaves apart on light paper is then taken for paper (``descreen``). Grey paper, a third to
two thirds black, is drawn as dots touching at their corners; it is recognised by its frame. A
two-level picture with clean edges (a thresholded scan, a binarised MNIST digit, a digit drawn
without anti-aliasing, even with a one-pixel pen) has next to none and is left as it is.

Saved as JPEG or WebP, a halftone is no longer two levels: the dots blur a little and ring. It is
still nearly two levels, and cut halfway between them it shows its dots again; such scans read 14 %
before this was looked for. WebP (and some scanning apps' JPEGs) store it in colour, so a colour
picture whose three channels are each nearly two-level is looked at in grey. numpy + Pillow only.
"""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageFilter, ImageStat

# Dots (``lone_pixels``) over the rarer colour's pixels above which a two-level picture, or a nearly
# two-level one cut halfway, is a halftone. Measured (bench/README.md, the ``bench/scans.py``
# section): thresholded scans reach 0.02, binarised MNIST digits 0.029, lines drawn one pixel wide
# 0, nearly two-level photos 0.024; dithered scans of digits on off-white paper 0.23 and up, saved
# as JPEG or WebP 0.16 and up.
LONE_SHARE = 0.1
# The blur that merges the dots, in the picture's own pixels: Floyd-Steinberg's dots lie a few pixels
# apart whatever the picture's size. It is kept small, as a digit scanned 14-29 px tall blurs with it;
# the dots it leaves apart on light paper are taken out by PAPER_POINT instead.
DESCREEN_SIGMA = 1.0
# Paper within MID_GREY of half grey is drawn as worms of dots, which a 1 px blur leaves as texture:
# it is blurred MID_GREY_SIGMA px.
MID_GREY = 0.1
MID_GREY_SIGMA = 1.5
# After the blur, every level past PAPER_POINT of the way from the ink's end to the paper's level
# counts as paper; the paper's level is the mean of the picture's outer PAPER_FRAME (a halftone keeps
# the mean of the greys it draws). A lone dot on near-white paper blurs to a speck 40 levels deep,
# which the recipe in ``photo`` took for ink beside a small digit. Chosen on bench/scans.py's small
# dithered scans (bench/README.md).
PAPER_POINT = 0.85
PAPER_FRAME = 0.1
# Grey paper a third to two thirds black has no dots by ``lone_pixels``; it is a halftone when the
# frame's outer FRAME_BAND px (at most PAPER_FRAME of the shorter side) hold its rarer colour at
# FRAME_MIX of their pixels or more, and pixels touching none of their own colour side to side make
# FRAME_ALONE of that colour or more (Floyd-Steinberg's greys 60-230: 0.46 and up).
FRAME_BAND = 32
FRAME_MIX = 0.15
FRAME_ALONE = 0.3
# A picture is nearly two-level when NEAR_SHARE of its pixels lie within NEAR_LEVELS of its darkest
# or its lightest level (the 0.5th and 99.5th percentiles) and those are MIN_SPREAD or more apart.
NEAR_LEVELS = 40
NEAR_SHARE = 0.95
MIN_SPREAD = 128
# Those checks look at a sample of the picture (``sample``): up to (SAMPLE / TILE)^2 tiles of TILE x
# TILE pixels, so a 48 MP photo costs what a 0.26 MP one does.
SAMPLE = 512
TILE = 32
BAND_ROWS = 256  # rows looked at at once: a 50 MP scan is never held as one more full-size array


def grey_halftone(img: Image.Image) -> Image.Image | None:
    """``img`` in grey when it is a halftone, else None. Only a sample of it (``sample``) is looked
    at, unless that holds two grey levels: then a two-level grey (``L``) picture is a halftone when
    its dots are over LONE_SHARE of its rarer colour, or its frame is grey paper drawn in dots. Other
    grey pictures, and colour (``RGB``) ones, are when their sample is nearly two-level and, cut
    halfway, shows dots over LONE_SHARE of its rarer colour (or a frame of grey paper drawn in dots);
    so are ``LA`` and ``RGBA`` ones whose sample is opaque (an editor's export)."""
    if img.mode in ("LA", "RGBA"):
        seen = sample(img)
        if seen.getchannel("A").getextrema() != (255, 255):
            return None  # see-through somewhere: a drawing on a transparent canvas, not a scan
        return img.convert("L") if _dots_when_cut(seen.convert(seen.mode[:-1])) else None
    if img.mode not in ("L", "RGB"):
        return None
    seen = sample(img)
    if img.mode == "L" and _levels(seen.histogram()) == 2:
        counts = img.histogram()  # of the whole picture: 21-95 ms at 49 MP, the more uniform the slower
        if _levels(counts) == 2:
            return img if _dotted(img, counts) else None
    if not _dots_when_cut(seen):
        return None
    return img if img.mode == "L" else img.convert("L")


def sample(img: Image.Image) -> Image.Image:
    """``img`` itself when it fits SAMPLE x SAMPLE, else a mosaic of TILE x TILE tiles cut from it on
    an even grid (at most SAMPLE / TILE a side): paper and ink in the picture's own proportions, so
    its dots over its rarer colour come out as in the whole picture."""
    width, height = img.size
    if width <= SAMPLE and height <= SAMPLE:
        return img
    across, down = (max(1, min(SAMPLE // TILE, side // TILE)) for side in (width, height))
    tile_w, tile_h = min(TILE, width), min(TILE, height)
    mosaic = Image.new(img.mode, (across * tile_w, down * tile_h))
    for row in range(down):
        top = (height - tile_h) * row // max(1, down - 1)
        for column in range(across):
            left = (width - tile_w) * column // max(1, across - 1)
            mosaic.paste(img.crop((left, top, left + tile_w, top + tile_h)), (column * tile_w, row * tile_h))
    return mosaic


def _dots_when_cut(img: Image.Image) -> bool:
    """Whether a grey or colour picture is nearly two-level (in each channel) and, cut halfway
    between its two levels, shows dots over LONE_SHARE of its rarer colour."""
    if img.mode == "RGB":
        counts = img.histogram()
        if any(_halfway(counts[256 * band : 256 * band + 256]) is None for band in range(3)):
            return False  # a colour picture not nearly two-level in every channel: one histogram, no more
        img = img.convert("L")
    halfway = _halfway(img.histogram())
    if halfway is None:
        return False
    cut = img.point([0] * halfway + [255] * (256 - halfway))
    return _dotted(cut, cut.histogram())


def _levels(counts: list[int]) -> int:
    """How many grey levels a histogram holds."""
    return sum(1 for count in counts if count)


def _dotted(img: Image.Image, counts: list[int]) -> bool:
    """Whether a two-level grey picture (``counts``: its histogram) has dots over LONE_SHARE of its
    rarer colour, or a frame of grey paper drawn in dots (``_grey_paper_drawn``); False for a
    picture of one level."""
    levels = [level for level, count in enumerate(counts) if count]
    if len(levels) != 2:
        return False
    if lone_pixels(img, levels[0]) > LONE_SHARE * min(counts[levels[0]], counts[levels[1]]):
        return True
    return _grey_paper_drawn(img, levels[0])


def _grey_paper_drawn(img: Image.Image, level: int) -> bool:
    """Whether the picture's frame (its outer FRAME_BAND) is paper drawn in dots of both colours,
    a third to two thirds black: Floyd-Steinberg then draws dots that touch at their corners, no
    dots by ``lone_pixels``, but most touch none of their own colour side to side."""
    rarer = alone = total = 0
    for box in _frame_boxes(img.size, FRAME_BAND):
        mask = np.asarray(img.crop(box)) == level
        padded = np.pad(mask, 1, mode="edge")
        same = np.zeros_like(mask)
        for dy, dx in ((0, 1), (2, 1), (1, 0), (1, 2)):
            same |= padded[dy : dy + mask.shape[0], dx : dx + mask.shape[1]] == mask
        total += mask.size
        rarer += int(mask.sum())
        alone += int((~same).sum())
    rarer = min(rarer, total - rarer)
    return rarer >= FRAME_MIX * total and alone >= FRAME_ALONE * rarer


def _halfway(counts: list[int]) -> int | None:
    """The level halfway between a nearly two-level picture's darkest and lightest (see NEAR_SHARE),
    from its histogram; None when the picture is not nearly two-level."""
    cumulative = np.cumsum(counts)
    total = cumulative[-1]
    dark, light = _extremes(cumulative, 0.005, 0.995)
    if light - dark < MIN_SPREAD:
        return None
    near = cumulative[dark + NEAR_LEVELS] + total - cumulative[light - NEAR_LEVELS - 1]
    return (dark + light + 1) // 2 if near >= NEAR_SHARE * total else None


def _extremes(cumulative: np.ndarray, low: float, high: float) -> tuple[int, int]:
    """The levels at the ``low`` and ``high`` shares of a histogram's pixels (``cumulative``: its
    running sum): its darkest and lightest, a few outliers aside."""
    dark = int(np.searchsorted(cumulative, low * cumulative[-1], side="right"))
    return dark, int(np.searchsorted(cumulative, high * cumulative[-1]))


def lone_pixels(img: Image.Image, level: int, band_rows: int = BAND_ROWS) -> int:
    """How many pixels of ``img`` are dots: ``level`` with none of their eight neighbours ``level``,
    or the reverse. The picture's outermost pixels are repeated past its edge, so an edge makes no
    dot; a line drawn one pixel wide runs on through its diagonal neighbours, so it makes none either."""
    width, height = img.size
    lone = 0
    for top in range(0, height, band_rows):
        bottom = min(top + band_rows, height)
        # the band and the rows just above and below it, or a copy of its own where the picture ends
        above, below = int(top > 0), int(bottom < height)
        band = np.asarray(img.crop((0, top - above, width, bottom + below))) == level
        band = np.pad(band, ((1 - above, 1 - below), (1, 1)), mode="edge")
        mask = band[1:-1, 1:-1]
        alone = np.ones_like(mask)
        for dy in range(3):
            for dx in range(3):
                if (dy, dx) != (1, 1):
                    alone &= band[dy : dy + mask.shape[0], dx : dx + mask.shape[1]] != mask
        lone += int(alone.sum())
    return lone


def descreen(img: Image.Image) -> Image.Image:
    """A grey halftone's grey levels: each pixel the Gaussian-weighted mean of the dots around it,
    then every level past PAPER_POINT of the way from the ink's end (0 or 255) to the paper's level
    made the paper's. The paper's level is the frame's mean; the ink's end is the side of the
    blurred picture's extreme (its 0.05th or 99.95th percentile) further from it."""
    paper = _frame_mean(img)
    sigma = MID_GREY_SIGMA if abs(paper - 127.5) < MID_GREY * 255 else DESCREEN_SIGMA
    blurred = img.filter(ImageFilter.GaussianBlur(sigma))
    darkest, lightest = _extremes(np.cumsum(blurred.histogram()), 0.0005, 0.9995)
    if paper - darkest >= lightest - paper:  # dark ink: levels from 0 up to PAPER_POINT of the paper's, to 255
        point = max(1.0, PAPER_POINT * paper)
        lut = [min(255, round(level * 255 / point)) for level in range(256)]
    else:  # light ink: the same from 255 down
        point = max(1.0, PAPER_POINT * (255 - paper))
        lut = [max(0, 255 - round((255 - level) * 255 / point)) for level in range(256)]
    return blurred.point(lut)


def _frame_mean(img: Image.Image) -> float:
    """The mean grey of a grey picture's outer PAPER_FRAME (of its shorter side, at least a pixel)."""
    total = count = 0.0
    for box in _frame_boxes(img.size):
        stat = ImageStat.Stat(img.crop(box))
        total += stat.sum[0]
        count += stat.count[0]
    return total / count


def _frame_boxes(size: tuple[int, int], most: int | None = None) -> list[tuple[int, int, int, int]]:
    """The boxes of a picture's outer PAPER_FRAME of its shorter side (at least a pixel, at most
    ``most`` px): top, bottom, then the sides between them (no pixel twice in a picture over two
    bands tall)."""
    width, height = size
    band = max(1, round(PAPER_FRAME * min(width, height)))
    band = min(band, most) if most else band
    boxes = [(0, 0, width, band), (0, height - band, width, height)]
    if height > 2 * band:
        boxes += [(0, band, band, height - band), (width - band, band, width, height - band)]
    return boxes
