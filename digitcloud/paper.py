"""The paper under a digit: which way round the ink is (dark on light, or light on dark), and the
paper's light taken off so that it reads 0 and the ink stands out from it.

Most photos are lit evenly enough that the paper is a plane fitted to the image's frame
(``flatten_paper``). Under a vignette or a shadow it is estimated locally instead
(``flatten_uneven_paper``); ``photo`` decides which, and when (see ``photo.normalize_grey``).
"""

from __future__ import annotations

import numpy as np
from PIL import Image

from digitcloud import morphology

# Uneven light: when the paper along the frame strays from a plane by more than UNEVEN_LIGHT grey
# levels (150 photo-set photos: at most 12; 0.6 vignettes 34-37, shadows 66-121) and the plane's
# reading is in doubt (photo._read_paper), the paper is estimated locally, on a grid PAPER_CELLS
# cells across the shorter side, in windows PEN_WINDOW of that side (wider than any pen: MNIST's
# boldest is about a quarter of a digit's width), and the flat-field gain is capped where the
# paper is darker than DARKEST_PAPER.
UNEVEN_LIGHT = 32.0
PAPER_CELLS = 48
PEN_WINDOW = 0.3
DARKEST_PAPER = 64.0


def ink_is_light(grey: np.ndarray) -> bool:
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


def robust_deviation(values: np.ndarray, times: float = 1.0) -> float:
    """``times`` robust standard deviations of ``values``: 1.4826 times their median absolute
    deviation, a normal noise's spread that the ink or lines among the values do not move."""
    return times * 1.4826 * float(np.median(np.abs(values - np.median(values))))


def frame_pixels(grey: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Row, column and value of every pixel on the image's outer frame."""
    h, w = grey.shape
    ys = np.concatenate([np.zeros(w), np.full(w, h - 1), np.arange(h), np.arange(h)]).astype(int)
    xs = np.concatenate([np.arange(w), np.arange(w), np.zeros(h), np.full(h, w - 1)]).astype(int)
    return ys, xs, grey[ys, xs]


def fit_plane(ys: np.ndarray, xs: np.ndarray, values: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """Least-squares coefficients of ``a + b * x / w + c * y / h`` through the given pixels."""
    h, w = shape
    design = np.stack([np.ones(values.size), xs / w, ys / h], axis=1)
    return np.linalg.lstsq(design, values.astype(np.float64), rcond=None)[0]


def plane(coef: np.ndarray, ys: np.ndarray, xs: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    h, w = shape
    return coef[0] + coef[1] * (xs / w) + coef[2] * (ys / h)


def flatten_paper(grey: np.ndarray) -> np.ndarray:
    """Subtract the paper: a plane fitted to the frame's darker pixels, so a light gradient across a
    photo becomes a flat 0 background. On a clean background this subtracts exactly 0."""
    ys, xs, values = frame_pixels(grey)
    if min(grey.shape) < 16:
        return grey - float(np.median(values))
    keep = values <= np.percentile(values, 70)  # ink touching the frame must not tilt the plane
    coef = fit_plane(ys[keep], xs[keep], values[keep], grey.shape)
    yy, xx = np.ogrid[0 : grey.shape[0], 0 : grey.shape[1]]  # broadcast: the plane without two full index grids
    return (grey - plane(coef, yy, xx, grey.shape)).astype(np.float32)


def _frame_unevenness(grey: np.ndarray, side_of_ink: float) -> float:
    """How far the light on the paper along the image's frame strays from a plane, in grey levels.

    Ink touching the frame (a close crop) must not count, and it lies on one side of the paper:
    so the 30 % of frame pixels furthest to the ink's side (``side_of_ink`` 1.0: the darkest, for
    dark ink; -1.0: the lightest) are set aside, a plane is fitted to the rest, the remainder is
    median-smoothed along each side over a tenth of its length (noise and strokes crossing it
    vanish), and its spread (2nd to 98th percentile) over the pixels kept is measured. Even light,
    a straight gradient included, gives a few grey levels; a vignette or a shadow across most of
    the page tens to over a hundred.
    """
    h, w = grey.shape
    ys, xs, values = frame_pixels(grey)
    keep = side_of_ink * values >= np.percentile(side_of_ink * values, 30)
    rest = values - plane(fit_plane(ys[keep], xs[keep], values[keep], grey.shape), ys, xs, grey.shape)
    smooth = []
    for side in np.split(rest, [w, 2 * w, 2 * w + h]):  # frame_pixels' order: top, bottom, left, right
        r = max(1, side.size // 20)
        windows = np.lib.stride_tricks.sliding_window_view(np.pad(side, r, mode="edge"), 2 * r + 1)
        smooth.append(np.median(windows, axis=-1))
    lo, hi = np.percentile(np.concatenate(smooth)[keep], [2, 98])
    return float(hi - lo)


def to_grid(grey: np.ndarray) -> np.ndarray:
    """``grey`` averaged onto a grid of about ``PAPER_CELLS`` cells across its shorter side."""
    h, w = grey.shape
    cell = max(1, min(h, w) // PAPER_CELLS)
    size = (max(1, round(w / cell)), max(1, round(h / cell)))
    return np.asarray(Image.fromarray(grey.astype(np.float32), mode="F").resize(size, Image.Resampling.BOX))


def from_grid(coarse: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """A coarse grid from ``to_grid`` back at full size ``shape``, bilinearly."""
    img = Image.fromarray(coarse.astype(np.float32), mode="F").resize((shape[1], shape[0]), Image.Resampling.BILINEAR)
    return np.asarray(img, dtype=np.float32)


def _pen_window(coarse: np.ndarray) -> int:
    """The side, in grid cells, of the windows the local paper is estimated in (odd, at least 3)."""
    return max(3, int(PEN_WINDOW * min(coarse.shape)) | 1)


def ink_is_light_locally(grey: np.ndarray) -> bool:
    """``ink_is_light`` under uneven light, where the frame shows no single paper level: the
    paper is each pixel's local median (windows wider than a pen, on the coarse grid), and the
    ink is the extreme further from it. A deep shadow over most of the frame made the lit paper
    stand further out than the shadowed ink."""
    coarse = to_grid(grey)
    k = _pen_window(coarse)
    windows = np.lib.stride_tricks.sliding_window_view(np.pad(coarse, k // 2, mode="edge"), (k, k))
    lo, hi = np.percentile(grey - from_grid(np.median(windows, axis=(-2, -1)), grey.shape), [0.05, 99.95])
    return bool(hi > -lo)


def flatten_uneven_paper(grey: np.ndarray) -> np.ndarray:
    """``flatten_paper`` under uneven light (``grey``'s ink already light): a vignette or a shadow
    is no plane, so the paper is the image's morphological opening, which removes anything
    narrower than a pen window (the ink) and follows any light change wider than that, sharp
    shadow edges included. Then, as light multiplies, the ink's height is taken relative to the
    paper's brightness (a flat-field correction): ink in shadow stands as tall as ink in the light.
    """
    coarse = to_grid(grey)
    k = _pen_window(coarse)
    # Past the edge the light goes on as it was going (odd reflection), but never darker than at
    # the edge: mirrored ink near the edge would be a dark blot, pulling the paper under it down.
    beyond = np.maximum(np.pad(coarse, k, mode="reflect", reflect_type="odd"), np.pad(coarse, k, mode="edge"))
    # The dilation is one cell wider each way than the erosion: where a sharp shadow edge crosses
    # a cell, the paper there is the shadow's, not a blend that leaves a line of "ink" along it.
    paper = from_grid(morphology.sliding(morphology.sliding(beyond, k, np.min), k + 2, np.max), grey.shape)
    return ((grey - paper) * (255.0 / np.maximum(255.0 - paper, DARKEST_PAPER))).astype(np.float32)


def uneven_light(grey: np.ndarray) -> bool:
    """Whether the frame strays from a plane by over ``UNEVEN_LIGHT``, measured with either side's
    ink set aside (``_frame_unevenness``). Asked after most readings, so it stops at the first
    measure under that (dark ink's): an evenly lit photo pays for one."""
    return min(grey.shape) >= 16 and all(_frame_unevenness(grey, side) > UNEVEN_LIGHT for side in (1.0, -1.0))
