"""Dithered black-and-white pictures (halftones) -> their grey levels back (descreening).

A scanner's or a fax's black-and-white "photo" mode, or Pillow's own ``convert("1")``
(Floyd-Steinberg unless told otherwise), draws each grey as a scatter of black dots. Off-white
paper then becomes white paper strewn with lone black pixels, and the recipe in ``photo`` reads
them as ink all over the page: before this module, such scans of validation digits read 10 %
(bench/README.md, the ``bench/scans.py`` section). A halftone is recognised by its dots, pixels of
a colour none of their eight neighbours has, and blurred until the dots merge back into grey; a dot
the blur leaves apart on light paper is then taken for paper (``descreen``). A two-level picture
with clean edges (a thresholded scan, a binarised MNIST digit, a digit drawn without anti-aliasing,
even with a one-pixel pen) has next to none and is left as it is.

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
# After the blur, every level past PAPER_POINT of the way from the ink's end to the paper's level
# counts as paper; the paper's level is the mean of the picture's outer PAPER_FRAME (a halftone keeps
# the mean of the greys it draws). A lone dot on near-white paper blurs to a speck 40 levels deep,
# which the recipe in ``photo`` took for ink beside a small digit. Chosen on bench/scans.py's small
# dithered scans (bench/README.md).
PAPER_POINT = 0.85
PAPER_FRAME = 0.1
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
    its dots are over LONE_SHARE of its rarer colour. Other grey pictures, and colour (``RGB``) ones,
    are when their sample is nearly two-level and, cut halfway, shows dots over LONE_SHARE of its
    rarer colour; so are ``LA`` and ``RGBA`` ones whose sample is opaque (an editor's export)."""
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
    rarer colour; False for a picture of one level."""
    levels = [level for level, count in enumerate(counts) if count]
    if len(levels) != 2:
        return False
    return lone_pixels(img, levels[0]) > LONE_SHARE * min(counts[levels[0]], counts[levels[1]])


def _halfway(counts: list[int]) -> int | None:
    """The level halfway between a nearly two-level picture's darkest and lightest (see NEAR_SHARE),
    from its histogram; None when the picture is not nearly two-level."""
    total = sum(counts)
    cumulative = np.cumsum(counts)
    dark = int(np.searchsorted(cumulative, 0.005 * total, side="right"))
    light = int(np.searchsorted(cumulative, 0.995 * total))
    if light - dark < MIN_SPREAD:
        return None
    near = cumulative[dark + NEAR_LEVELS] + total - cumulative[light - NEAR_LEVELS - 1]
    return (dark + light + 1) // 2 if near >= NEAR_SHARE * total else None


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
    and every level nearer the paper's than PAPER_POINT of the way from the far end (ink) the
    paper's. Light or dark paper, whichever the picture's frame shows."""
    blurred = img.filter(ImageFilter.GaussianBlur(DESCREEN_SIGMA))
    paper = _frame_mean(img)
    if paper >= 128:  # light paper: levels from 0 (ink) up to PAPER_POINT of the paper's, stretched to 255
        point = max(1.0, PAPER_POINT * paper)
        lut = [min(255, round(level * 255 / point)) for level in range(256)]
    else:  # dark paper, light ink: the same from 255 down
        point = max(1.0, PAPER_POINT * (255 - paper))
        lut = [max(0, 255 - round((255 - level) * 255 / point)) for level in range(256)]
    return blurred.point(lut)


def _frame_mean(img: Image.Image) -> float:
    """The mean grey of a grey picture's outer PAPER_FRAME (of its shorter side, at least a pixel)."""
    width, height = img.size
    band = max(1, round(PAPER_FRAME * min(width, height)))
    strips = [(0, 0, width, band), (0, height - band, width, height)]  # top, bottom; then the sides between
    if height > 2 * band:
        strips += [(0, band, band, height - band), (width - band, band, width, height - band)]
    total = count = 0.0
    for box in strips:
        stat = ImageStat.Stat(img.crop(box))
        total += stat.sum[0]
        count += stat.count[0]
    return total / count
