"""Dithered black-and-white pictures (halftones) -> their grey levels back (descreening).

A scanner's or a fax's black-and-white "photo" mode, or Pillow's own ``convert("1")``
(Floyd-Steinberg unless told otherwise), draws each grey as a scatter of black dots. Off-white
paper then becomes white paper strewn with lone black pixels, and the recipe in ``photo`` reads
them as ink all over the page: before this module, such scans of validation digits read 10 %
(bench/README.md, the ``bench/scans.py`` section). A halftone is recognised by its dots, pixels of
a colour none of their eight neighbours has, and blurred until the dots merge back into grey. A
two-level picture with clean edges (a thresholded scan, a binarised MNIST digit, a digit drawn
without anti-aliasing, even with a one-pixel pen) has next to none and is left as it is. numpy +
Pillow only.
"""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageFilter

# Dots (``lone_pixels``) over the rarer colour's pixels above which a two-level picture is a halftone.
# Measured (bench/README.md, the ``bench/scans.py`` section): thresholded scans reach 0.02,
# binarised MNIST digits 0.029, lines drawn one pixel wide 0; dithered scans of digits on off-white
# paper 0.23 and up.
LONE_SHARE = 0.1
# The blur that merges the dots, in the picture's own pixels: Floyd-Steinberg's dots lie a few pixels
# apart whatever the picture's size.
DESCREEN_SIGMA = 1.5
BAND_ROWS = 256  # rows looked at at once: a 50 MP scan is never held as one more full-size array


def is_halftone(img: Image.Image) -> bool:
    """Whether a grey (mode ``L``) picture holds two levels only, laid out as dots: a dithered one."""
    if img.mode != "L":
        return False
    counts = img.histogram()
    levels = [level for level, count in enumerate(counts) if count]
    if len(levels) != 2:
        return False
    rarer = min(counts[levels[0]], counts[levels[1]])
    return lone_pixels(img, levels[0]) > LONE_SHARE * rarer


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
    """A halftone's grey levels: each pixel the Gaussian-weighted mean of the dots around it."""
    return img.filter(ImageFilter.GaussianBlur(DESCREEN_SIGMA))
