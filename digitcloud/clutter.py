"""What a photo shows besides the digit, found and taken out before the digit's box is drawn.

``photo.normalize_grey`` runs these steps in this order; each is measured in bench/photo_stress.py:

* ``crop_to_page``: the desk around a sheet of paper, the page turned level first when it lies
  askew (on the grey photo, before anything else);
* ``erase_faint_blobs``: a fingertip or a smudge reaching in from the edge;
* ``erase_paper_lines``: ruled or squared paper's printed lines, at any angle (their turn then turns
  the picture level, ``turned``);
* ``erase_printed_box``: a form's printed box around the digit, square or askew;
* ``without_specks``: dust that would stretch the digit's box;
* ``lying_bar``: a pen lying on the page above, below or beside the digit, or across it;
* ``drawn_mark``: a circle or a box drawn round the digit in its own pen (touching it or not), or a
  line under it.

Each is tested two ways in tests/test_inputs.py: a photo with the thing reads as the digit alone
(and is misread with the step switched off), and what only looks like it (a 7's bar across a
close crop, a 4's stem, a blurred bold digit, chalk on a dark board) is left as it was.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
from PIL import Image, ImageDraw

from digitcloud import morphology, paper

# Lined or squared paper: a straight line crossing at least PAPER_LINE_SPAN of the image (turned up
# to PAPER_LINE_TILT degrees either way) whose pixels are fainter than PAPER_LINE_FAINT of the ink's
# is printed on the paper, not written: a digit's stroke crosses a whole image only in a close crop,
# and then it is the ink at full strength.
PAPER_LINE_SPAN = 0.85
PAPER_LINE_FAINT = 0.6
# A page photographed askew: searched up to 6 degrees, lines turned 8 or 12 read 13-22 %; up to 15,
# lines turned 20-30 read 19-31 %. Tilts up to PAPER_LINE_FIRST are searched first, the rest only
# when no line is found there (searching them all cost a squared page 43 -> 64 ms, a level one).
PAPER_LINE_TILT = 45.0
PAPER_LINE_FIRST = 15.0
PAPER_LINE_VISIBLE = 0.05  # the level a line's pixels exceed (JPEG leaves ~0.005 on plain paper)
# Under heavy sensor noise (sigma 30 a channel) a notebook's line is about as faint as the photo's
# noise floor: a third of its pixels or more fall under it and its row is not filled, so the search
# also counts a pixel whose mean over PAPER_LINE_ALONG pixels along the line, before the floor
# clipped it, stands out (_near_line). Its noisiest pixels stand above twice its level, so it is
# erased up to PAPER_LINE_NOISE robust deviations of its level over it as well (at 4, a speck left
# on a 2's top in the tests' noisier photo).
PAPER_LINE_ALONG = 5
PAPER_LINE_NOISE = 5.0
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
# A page turned PAGE_TURN degrees or more is turned level first: its digit was written level with it.
# So is a ruled or squared page whose lines are turned so, in a picture PAGE_MIN_PX a side or more
# (9 of the 10 scans turned by "lines" without that were small dithered ones): one line at least
# crossing the picture (a notebook's lines, 1.3 digits apart, often leave one) and pen-thin,
# LINES_THIN rows at most once widened (notebook photos 6-10, blurred or shaken; a shadow's soft
# edge 36), and the paper between the lines clean along the frame (under LINES_CLEAN of it faint
# ink, in a band LINES_FRAME of the shorter side deep: a notebook's measured 3 % at most; a
# dithered scan's texture, whose dots line up into lines by chance, 7-30 %).
PAGE_TURN = 10.0
LINES_THIN, LINES_CLEAN, LINES_FRAME = 16, 0.05, 0.05
# A printed box around the digit (a form's cell): lines BOX_BAND of the box's size deep at most,
# over BOX_SIDE of each of its four sides, turned BOX_TILT degrees at most (see erase_printed_box);
# a box turned more, up to BOX_TURN degrees, is looked for in the picture turned square when the
# ink's convex hull fills BOX_HULL of the rectangle round it at that angle.
BOX_BAND = 0.03
BOX_SIDE = 0.9
BOX_TILT = 3.0
BOX_TURN, BOX_HULL = 20.0, 0.9
# A faint blob (a fingertip, a smudge): under BLOB_FAINT of the ink's strength and thicker than a pen.
BLOB_FAINT = 0.6
# Dust left out of the digit's box: small clusters (ink nowhere SPECK_SIZE + 1 to SPECK_SIZE +
# SPECK_CLEAR px from them) with nothing but such clusters within SPECK_GAP of the longer side.
# A speck setting the box's edge is looked for, and left out, in a SPECK_SQUARE px square.
SPECK_GAP = 0.05
SPECK_SIZE, SPECK_CLEAR = 3, 3
SPECK_SQUARE = 5
# Dust beside the digit, wherever it lies (see dust_dots): a part of the strong ink under DOT_PEN of
# the digit's pen across both ways, with no other ink within DOT_CLEAR pens of it. Not looked for
# when DOT_PEN of the pen is DOT_MIN_PX or less: a dot that small may be a thin stroke's broken piece.
DOT_PEN, DOT_CLEAR, DOT_MIN_PX = 0.5, 2.0, 2.0
# A pen lying on the page beside the digit (see _is_lying_bar): a part of the ink BAR_LONG times
# as long as thick or more, filling BAR_FILL of that rectangle, within BAR_TILT degrees of level
# or of upright, with the rest of the ink on one side of it, the rest's size between BAR_REST of
# the bar's length and BAR_LONGER times less than it, and at least BAR_MASS of its cells; an upright
# bar also BAR_APART of the rest's size away from it, or BAR_THICKER times as thick as the rest's
# strokes. Parts are found on a grid of at most BAR_CELLS cells a side.
BAR_LONG, BAR_FILL, BAR_TILT = 4.0, 0.8, 15.0
BAR_LONGER, BAR_REST, BAR_APART, BAR_MASS, BAR_THICKER = 1.8, 0.25, 0.35, 0.25, 1.5
# A pen lying across the digit or touching it (see _touching_bar): a band of rows each holding
# BAR_BAND of the fullest row's ink, TOUCH_LONGER times the rest's size and reaching BAR_PAST of
# that past the rest at both ends, the rest TOUCH_MIN cells or more; TOUCH_MARGIN cells round it
# go with it.
BAR_BAND, BAR_PAST, TOUCH_LONGER, TOUCH_MIN, TOUCH_MARGIN = 0.7, 0.1, 2.3, 8, 2
BAR_CELLS = 128
# A mark drawn by hand in the digit's pen (see drawn_mark): a part of the ink with all the rest
# inside it, the rest OUTLINE_REST of its height or width or more and OUTLINE_MASS of its cells or
# more (less is a speck or a broken stroke's piece inside a 0's loop); or a straight bar below all
# the rest, reaching past it at both ends by UNDER_PAST of its height. Parts are found on a grid
# of at most OUTLINE_CELLS cells a side: a photo's working size (inputs.WORK_SIZE), so a circle
# passing a few pixels from the digit is still apart from it.
OUTLINE_REST, OUTLINE_MASS, OUTLINE_CELLS = 0.3, 0.1, 512
UNDER_PAST = 0.05
# An outline the digit touches (see _touching_outline): the paper inside its filled shape
# OUTLINE_HOLE of it or more, bordered OUTLINE_INNER times as long as the page outside; its depth
# levels each OUTLINE_CONTACT of its outer border or more; at most OUTLINE_STUB of that border not
# reached from inside.
OUTLINE_HOLE, OUTLINE_INNER, OUTLINE_CONTACT, OUTLINE_STUB = 0.25, 1.2, 0.2, 0.02
# Images under SEARCH_MIN_PX a side (MNIST's 28x28 among them) are not searched for paper lines,
# a printed box or faint blobs.
SEARCH_MIN_PX = 40


def crop_to_page(grey: np.ndarray, straighten: bool = True) -> np.ndarray | None:
    """``grey`` cut to the sheet of light paper it shows on a darker desk, the desk left in the
    page's bounding box (a turned page's corners) painted over as the page's paper; None when the
    photo shows no desk, which is most photos. A page turned PAGE_TURN degrees or more (its sides'
    turn, ``_page_turn``) is first turned level when ``straighten``.

    The page is the convex hull of the pixels lighter than the desk/paper split (Otsu's threshold
    on the coarse grid): ink lies inside the sheet, so the hull keeps it whatever its colour."""
    h, w = grey.shape
    if min(h, w) < PAGE_MIN_PX:
        return None
    coarse = paper.to_grid(grey)
    cut = _otsu(coarse)
    light_cells = coarse >= cut
    if light_cells.all() or not light_cells.any() or not _may_be_page(light_cells):
        return None
    desk, sheet = float(np.median(coarse[~light_cells])), float(np.median(coarse[light_cells]))
    if sheet - desk < PAGE_CONTRAST:
        return None
    light = _opened(grey >= cut)  # specks of the desk's texture as light as paper do not count
    hull = _hull(light)
    if len(hull) < 3:
        return None
    page = _filled(hull, grey.shape)
    if page.mean() < PAGE_AREA or page.mean() > 1 - PAGE_DESK or light[page].mean() < PAGE_PAPER:
        return None
    sides = _sides(hull, h, w)
    if sides is None:
        return None  # not a sheet's sides: a digit's many short ones
    edge = _edge_width(grey, hull, sides, desk, sheet)
    if edge is None or edge > max(2.0, PAGE_EDGE * min(h, w)):
        return None  # a shadow or a vignette: the existing readings handle those
    turn = _page_turn(sides)
    if straighten and abs(turn) >= PAGE_TURN:
        # The digit was written level with its page: turned with it, it reads as a digit turned that much
        # (a page turned 30 degrees read 87 %). The picture is turned back, the room it needs desk.
        levelled = crop_to_page(turned(grey, turn, fill=desk), straighten=False)
        if levelled is not None:
            return levelled  # else the page is cut as it lies
    # The page's pixels along its edge are blurred with the desk, and the hull may bulge a pixel or
    # two past it: they go with the desk, as does a margin along the frame (where the page's edge
    # leaves the picture, a sliver of desk can lie between them).
    margin = math.ceil(edge) + max(2, round(0.01 * min(h, w)))
    inner = morphology.sliding(np.pad(page, margin), 2 * margin + 1, np.min)
    if not inner.any():
        return None
    rows, cols = np.flatnonzero(inner.any(1)), np.flatnonzero(inner.any(0))
    box = (slice(rows[0], rows[-1] + 1), slice(cols[0], cols[-1] + 1))
    grey, inner, light = grey[box].astype(np.float32), inner[box], light[box]
    # the desk left in the box: the page's paper, a plane through it, with its noise
    ys, xs = np.nonzero(inner & light)
    coef = paper.fit_plane(ys, xs, grey[ys, xs], grey.shape)
    residual = grey[ys, xs] - paper.plane(coef, ys, xs, grey.shape)
    noise = paper.robust_deviation(residual)
    ys, xs = np.nonzero(~inner)
    rng = np.random.default_rng(0)  # the same photo gives the same digit
    grey[ys, xs] = paper.plane(coef, ys, xs, grey.shape) + rng.normal(0.0, noise, ys.size)
    return grey


def turned(picture: np.ndarray, degrees: float, fill: float = 0.0) -> np.ndarray:
    """``picture`` (float) turned ``degrees`` counter-clockwise (bilinear), grown to hold all of it,
    the new room ``fill``."""
    image = Image.fromarray(picture.astype(np.float32), "F")
    return np.asarray(image.rotate(degrees, Image.Resampling.BILINEAR, expand=True, fillcolor=fill))


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
    """``mask`` less anything narrower than 3 px: a morphological opening by a 3x3 square, the
    frame's pixels repeated past it."""
    return morphology.with_ring(morphology.eroded(mask))


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


def _page_turn(sides: list[tuple[float, float, float, float]]) -> float:
    """The degrees a page with these ``sides`` is turned clockwise (as ``Image.rotate`` turns it back),
    within 45 either way: the median of its sides' directions, each folded onto the nearest of level
    and upright, weighed by length (a phone tilted over the page splays its sides a few degrees
    either way; the median keeps the level they share)."""
    folded, lengths = [], []
    for x0, y0, x1, y1 in sides:
        folded.append(_folded(math.degrees(math.atan2(y1 - y0, x1 - x0))))
        lengths.append(math.hypot(x1 - x0, y1 - y0))
    order = np.argsort(folded)
    weight = np.cumsum(np.asarray(lengths)[order])
    return folded[int(order[np.searchsorted(weight, weight[-1] / 2)])]


def _folded(degrees: float) -> float:
    """A side's direction ``degrees`` as a turn within 45 either way: folded onto the nearest of level
    and upright, either way round (a rectangle's four sides give the same turn)."""
    return (degrees + 45.0) % 90.0 - 45.0


def _edge_width(
    grey: np.ndarray,
    hull: list[tuple[int, int]],
    sides: list[tuple[float, float, float, float]],
    desk: float,
    paper: float,
) -> float | None:
    """How many pixels the light takes to change from desk to paper across the page's ``sides`` (its
    ``hull``'s, ``_sides``): per side, the median over profiles every 4 px along it of the samples
    between a quarter and three quarters of the way from ``desk`` to ``paper``; the widest side's.
    None when one of them shows no step of ``PAGE_CONTRAST`` from paper
    inside to desk outside (it bridges a gap between a digit's strokes), or ink reaches it from
    inside (2 to 4 px in): a sharp shadow's edge across the digit looks like a page's side but for
    that, and a digit running off its page is not cut either."""
    h, w = grey.shape
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
    the digit. On a grid of cells one pen wide (``morphology.stroke_width`` of the ink over ``BLOB_FAINT``),
    a blob is the cells 90 % faint in 2x2 blocks of such cells, connected to the grid's edge. A
    stroke's faint anti-aliased edge, or a blurred digit's, is far thinner and lies inside the
    picture, and the ink itself is at full strength."""
    if min(level.shape) < SEARCH_MIN_PX:
        return level
    faint = (level > PAPER_LINE_VISIBLE) & (level < BLOB_FAINT)
    if np.count_nonzero(faint) < 0.01 * faint.size:
        return level  # most photos stop here
    pen = max(2, round(morphology.stroke_width((level >= BLOB_FAINT).astype(np.float32))))
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
    near = morphology.with_ring(blob).astype(np.float32)  # and the cells round it: its soft edge
    return np.where((paper.from_grid(near, level.shape) > 0) & faint, 0.0, level).astype(level.dtype)


def erase_paper_lines(level: np.ndarray, unclipped: np.ndarray | None = None) -> tuple[np.ndarray, float]:
    """``level`` (ink 0..1, paper 0) with the lines of ruled or squared paper taken out, and the
    page's turn those lines show (degrees, as ``Image.rotate`` turns it back; 0.0 when they are no
    page's: a picture under PAGE_MIN_PX, no thin line erased crossing it, or faint ink between the
    lines, ``_clean_between``). ``unclipped``: the same levels before they were clipped to 0..1 at
    the photo's noise floor, where lines as faint as the noise are looked for when that floor lies
    deeper than ``PAPER_LINE_VISIBLE`` under the paper (no deeper, pixels over it show a line as
    well, and the search costs what it did).

    A notebook's light blue lines stand out from the paper by a third of the ink's contrast or
    less, and they cross the whole photo; kept, they are cropped and scaled with the digit. Both
    directions are searched (``_lines_across``) before anything is erased, so a grid's crossings
    do not break its lines; ink where a line crosses a stroke is kept, being darker than the line.
    """
    if min(level.shape) < SEARCH_MIN_PX:
        return level, 0.0
    across, down = _lines_across(level, unclipped), _lines_across(level.T, None if unclipped is None else unclipped.T)
    if across is None and down is None:
        return level, 0.0
    cutoff = np.maximum(across.cutoff if across else 0.0, down.cutoff.T if down else 0.0)
    # a line running down the picture turned clockwise leans the other way in the transposed one
    turns = [(lines.crossing, sign * lines.tilt) for lines, sign in ((across, 1.0), (down, -1.0)) if lines]
    crossing, turn = max(turns, key=lambda found: found[0])  # the direction more lines cross; across on a tie
    if not crossing or min(level.shape) < PAGE_MIN_PX or not _clean_between(level, cutoff):
        turn = 0.0
    return np.where(level <= cutoff, 0.0, level).astype(level.dtype), turn


def _clean_between(level: np.ndarray, cutoff: np.ndarray) -> bool:
    """Whether the paper between the lines erased up to ``cutoff`` is clean along the picture's frame
    (where the digit seldom is): under LINES_CLEAN of its pixels there faint ink."""
    band = max(2, round(LINES_FRAME * min(level.shape)))
    frame = np.ones(level.shape, bool)
    frame[band:-band, band:-band] = False
    between = frame & (cutoff == 0)
    return bool(np.count_nonzero(between & (level > PAPER_LINE_VISIBLE)) < LINES_CLEAN * np.count_nonzero(between))


class _Lines(NamedTuple):
    cutoff: np.ndarray  # per pixel, the level up to which it is erased as a line (0 off the lines)
    tilt: float  # the lines' tilt: degrees clockwise, as _sheared_rows shears
    crossing: int  # how many of the lines erased cross the picture and are LINES_THIN rows or thinner


def _lines_across(level: np.ndarray, unclipped: np.ndarray | None) -> _Lines | None:
    """Where faint straight lines run left to right (within ``PAPER_LINE_TILT``, ``PAPER_LINE_FIRST``
    first), or None when there are none.

    Each tilt (in steps of half a degree) shears the image so such a line becomes one row: a row
    whose pixels are ink over at least ``PAPER_LINE_SPAN`` of its length is a line, at the tilt that
    finds the most such rows. The ink (with, under heavy noise, what stands out once averaged along
    the line: ``_near_line``) is first widened 2 px up and down, so a line still fills a row when
    the true tilt falls between two steps. Such a line is paper, not a stroke, when it is
    fainter than ``PAPER_LINE_FAINT`` and has paper on both sides (the faint edge of a stroke has
    the stroke beside it); then its pixels, and one row more either side for its anti-aliased
    edges, are erased up to a level between the line's own and full ink. On lined paper, short
    lines cut off by a corner go too; on a page of evenly spaced lines, lines as strong as the ink."""
    h, w = level.shape
    on = level > PAPER_LINE_VISIBLE
    # a line across needs ink in PAPER_LINE_SPAN of at least half the columns: most photos stop here
    if np.count_nonzero(on) < PAPER_LINE_SPAN * w or np.count_nonzero(on.any(axis=0)) < PAPER_LINE_SPAN * (w // 2):
        return None
    if unclipped is not None and -float(np.median(unclipped[::2, ::2])) <= PAPER_LINE_VISIBLE:
        unclipped = None  # the paper lies just under the floor: a photo with little noise
    near: dict[float, tuple[np.ndarray, np.ndarray]] = {}  # per direction averaged along, the pixels searched
    best_found, best_tilt = 0, 0.0
    for degrees in sorted(np.arange(-PAPER_LINE_TILT, PAPER_LINE_TILT + 0.25, 0.5), key=abs):
        if best_found and abs(best_tilt) <= PAPER_LINE_FIRST < abs(degrees):
            break  # lines within the first tilts: the rest are not searched
        _, full, inside = _sheared_rows(*_near_line(unclipped, on, degrees, near), h, w, degrees)
        found = int(np.count_nonzero(full & (inside >= w // 2)))
        if found > best_found:
            best_found, best_tilt = found, degrees
    if not best_found:
        return None
    shift, full, inside = _sheared_rows(*_near_line(unclipped, on, best_tilt, near), h, w, best_tilt)
    long, lines = full & (inside >= w // 2), full & (inside >= 4)  # the corners' short lines too
    rows = np.arange(h)[:, None] - shift[None, :] + int(shift.max())  # every pixel's sheared row
    ys, xs = np.nonzero(on)
    inked_row = rows[ys, xs]
    by_row = np.argsort(inked_row, kind="stable")  # the inked pixels in sheared-row order
    inked_row, inked_col, inked_level = inked_row[by_row], xs[by_row], level[ys, xs][by_row]
    edges = np.diff(np.concatenate([[0], lines.astype(np.int8), [0]]))
    runs = []  # each line: its sheared rows [first, end), its level and noise, crossing the image?, paper beside it?
    for first, end in zip(np.flatnonzero(edges == 1), np.flatnonzero(edges == -1), strict=True):
        near_first = max(int(first) - 3, 0)
        # its pixels, and theirs with 3 rows either side
        at = np.searchsorted(inked_row, np.array([near_first, first, end, end + 3]))
        inked = slice(at[1], at[2])
        # the line's level: its darkest pixel in each column, the median of those over its columns
        # (a digit lying along the line for part of its length does not move the median)
        across = np.zeros(w, np.float32)
        np.maximum.at(across, inked_col[inked], inked_level[inked])
        drawn = across[across > 0]
        core = float(np.median(drawn)) if drawn.size else 0.0
        noise = paper.robust_deviation(drawn) if drawn.size else 0.0
        # paper on both sides: the rows beyond the line's are mostly blank (the edge of a stroke has
        # the stroke beside it). Beside a steady line (a printed one: its level's spread under a
        # quarter of it) only ink as strong as the line counts: a coarse JPEG's ringing at its block's
        # edge is fainter. (Asked of any line, it erased the unsteady "lines" of small dithered scans'
        # texture: 8 of 3,000 more misread, 2 fewer.)
        steady = noise <= core / 4
        around = slice(at[0], at[3])
        counted = inked_row[around][inked_level[around] > core] if steady else inked_row[around]
        per_row = np.bincount(counted - near_first, minlength=end + 3 - near_first)
        beside = np.concatenate([per_row[: first - near_first], per_row[end - near_first : end + 3 - near_first]])
        alone = not (beside >= inside[near_first : end + 3].max() / 2).any()
        runs.append((first, end, core, noise, bool(long[first:end].any()), alone))
    lined = any(crossing and alone and core <= PAPER_LINE_FAINT for _, _, core, _, crossing, alone in runs)
    page_of_lines = _evenly_spaced([int(first) for first, _, _, _, crossing, _ in runs if crossing])
    cutoff = np.zeros(lines.size, np.float32)  # erase up to this level, per sheared row
    erased_crossing = 0
    for first, end, core, noise, crossing, alone in runs:
        if not alone:
            continue  # the faint edge of a stroke
        if not (crossing or lined or page_of_lines):
            continue  # a short line in a corner is one only on lined paper
        if core <= PAPER_LINE_FAINT:
            # ink crossing the line is darker: kept
            line_cutoff = min(max(2 * core, core + PAPER_LINE_NOISE * noise), (1 + core) / 2)
        elif page_of_lines:
            line_cutoff = 1.0
        else:
            continue  # a stroke of the digit crossing a close crop: full ink
        around = slice(max(first - 1, 0), end + 1)  # and the anti-aliased rows either side
        cutoff[around] = np.maximum(cutoff[around], line_cutoff)
        erased_crossing += int(crossing and end - first <= LINES_THIN)
    return _Lines(cutoff[rows], best_tilt, erased_crossing)


def _near_line(
    unclipped: np.ndarray | None, on: np.ndarray, degrees: float, cache: dict[float, tuple[np.ndarray, np.ndarray]]
) -> tuple[np.ndarray, np.ndarray]:
    """The pixels (ys, xs) searched for lines tilted ``degrees``: those ``on``, or whose mean over
    ``PAPER_LINE_ALONG`` pixels of ``unclipped`` along the nearest of the directions 0 and 30
    degrees either way stands out from that mean over the whole picture (mostly paper) by four
    robust deviations and at least ``PAPER_LINE_VISIBLE`` (without ``unclipped``, those ``on``
    only); widened 2 px up and down. Kept in ``cache`` per direction.

    Over the whole picture, not its frame: a dithered scan's frame is clean paper round a textured
    middle, whose mean along 30 degrees then stood out as "lines" at 42.5 (a 512 px scan turned)."""
    direction = math.copysign(2 * PAPER_LINE_FIRST, degrees) if abs(degrees) > PAPER_LINE_FIRST else 0.0
    if unclipped is None:
        direction = 0.0  # one search mask for every tilt
    if direction not in cache:
        near = on.copy()
        if unclipped is not None:
            mean = _mean_along(unclipped, direction, PAPER_LINE_ALONG)
            sample = mean[::2, ::2]  # a quarter of the pixels is plenty for the paper's median
            near |= mean > float(np.median(sample)) + max(paper.robust_deviation(sample, times=4), PAPER_LINE_VISIBLE)
        for _ in range(2):
            near[1:] |= near[:-1].copy()
            near[:-1] |= near[1:].copy()
        ys, xs = np.nonzero(near)
        cache[direction] = (ys, xs)
    return cache[direction]


def _mean_along(level: np.ndarray, degrees: float, size: int) -> np.ndarray:
    """The mean of ``level`` over ``size`` pixels (odd) along a line tilted ``degrees`` (clockwise,
    as ``_sheared_rows``), centred on each pixel; the frame's pixels repeated past it."""
    h, w = level.shape
    half = size // 2
    padded = np.pad(level, half, mode="edge")
    total = np.zeros(level.shape, np.float32)
    for dx in range(-half, half + 1):
        dy = round(dx * math.tan(math.radians(degrees)))
        total += padded[half + dy : half + dy + h, half + dx : half + dx + w]
    return total / size


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

    A box square to the picture, or turned up to ``BOX_TILT`` degrees, is found as it is
    (``_erase_square_box``). A box turned further, up to ``BOX_TURN`` degrees (a form photographed
    askew), is found in the picture turned by the angle of the ink's outline (``_outline_turn``),
    and the pixels erased there are erased here, with one more round them for the turn's rounding.
    """
    if min(level.shape) < SEARCH_MIN_PX:
        return level
    square = _erase_square_box(level)
    if square is not level:
        return square
    turn = _outline_turn(level > 0.1)
    if turn is None:
        return level
    # each pixel of the turned picture is the level of one pixel here (nearest), so what is erased
    # there maps back exactly
    h, w = level.shape
    where = Image.fromarray(np.arange(h * w, dtype=np.int32).reshape(h, w), mode="I")
    index = np.asarray(where.rotate(turn, Image.Resampling.NEAREST, expand=True, fillcolor=-1))
    inside = index >= 0
    squared = np.where(inside, level.ravel()[np.maximum(index, 0)], 0.0).astype(level.dtype)
    erased = _erase_square_box(squared)
    if erased is squared:
        return level
    gone = np.zeros(h * w, dtype=bool)
    gone[index[inside & (erased != squared)]] = True
    return np.where(morphology.with_ring(gone.reshape(h, w)), 0.0, level).astype(level.dtype)


def _outline_turn(inked: np.ndarray) -> float | None:
    """The angle in degrees (counter-clockwise, as Pillow turns) that squares the ink's outline to
    the picture, when that outline is a rectangle turned more than ``BOX_TILT`` and up to
    ``BOX_TURN`` degrees; else None. The outline is the ink's convex hull (``_hull``), its angle its
    longest side's, and a rectangle is a hull filling ``BOX_HULL`` of the rectangle round it at that
    angle (a digit's hull fills much less: an ellipse 0.79)."""
    if not inked.any():
        return None
    hull = np.array(_hull(inked), dtype=np.float64)
    if len(hull) < 4:
        return None
    edges = np.roll(hull, -1, axis=0) - hull
    dx, dy = edges[np.argmax(np.hypot(edges[:, 0], edges[:, 1]))]
    turn = _folded(math.degrees(math.atan2(dy, dx)))
    if not BOX_TILT < abs(turn) <= BOX_TURN:
        return None
    a, (x, y) = math.radians(turn), hull.T
    along, across = x * math.cos(a) + y * math.sin(a), y * math.cos(a) - x * math.sin(a)
    area = 0.5 * abs(float(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1))))  # the shoelace formula
    if area < BOX_HULL * float(np.ptp(along) * np.ptp(across)):
        return None
    return turn


def _erase_square_box(level: np.ndarray) -> np.ndarray:
    """``erase_printed_box`` for a box turned ``BOX_TILT`` degrees at most; ``level`` itself when
    there is none.

    A box is the ink's outermost rows and columns: along each of its four sides a straight thin
    line (``_box_side``). Each line's pixels go, 2 px more either side for its anti-aliased edges;
    ink inside stays. A digit's outermost strokes do not close four straight sides (a 7's bar is
    one), so a close crop of a digit is never a box (tested)."""
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


def without_specks(mask: np.ndarray) -> np.ndarray:
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


def dust_dots(mask: np.ndarray) -> np.ndarray | None:
    """Where ``mask`` (the strong ink) holds dots of dust or dirt standing clear of the digit: the
    dots and 2 px round them for their soft edge, less the other ink; None when there are none.

    ``without_specks`` leaves out specks on the box's edge with only specks for 5 % of the picture
    round them; a speck nearer the digit than that stays, and so do the specks between it and the
    digit, and the crop takes them all in (twenty specks round a small digit read 88.5 %). A stroke
    is a pen wide, so a part under ``DOT_PEN`` of the pen (``morphology.stroke_width``) across both
    ways is no stroke; a piece of a stroke broken up lies near the rest of it, so only a dot with no
    other ink within ``DOT_CLEAR`` pens goes (MNIST's own stray dots, next to their digit, stay).
    """
    pen = morphology.stroke_width(mask.astype(np.float32))
    if DOT_PEN * pen <= DOT_MIN_PX:
        return None
    labels, count = morphology.components(mask)
    if count < 2:
        return None
    top, bottom, left, right = morphology.part_boxes(labels, count)
    small = np.flatnonzero(np.maximum(bottom - top, right - left)[1:] + 1 < DOT_PEN * pen) + 1
    if small.size == 0:
        return None
    # other ink within DOT_CLEAR pens of each small part's box: window sums of a summed-area table
    others = mask & ~np.isin(labels, small)
    table = np.pad(others.astype(np.int32), ((1, 0), (1, 0))).cumsum(0).cumsum(1)
    reach, (h, w) = round(DOT_CLEAR * pen), mask.shape
    y0, y1 = np.clip(top[small] - reach, 0, h), np.clip(bottom[small] + reach + 1, 0, h)
    x0, x1 = np.clip(left[small] - reach, 0, w), np.clip(right[small] + reach + 1, 0, w)
    dots = small[table[y1, x1] - table[y0, x1] - table[y1, x0] + table[y0, x0] == 0]
    if dots.size == 0:
        return None
    return morphology.with_ring(morphology.with_ring(np.isin(labels, dots))) & ~others


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
    lookups in a summed-area table (``morphology.sliding`` with ``np.sum`` gives the same counts, but made
    a dusty photo's decode 4-6 ms slower)."""
    h, w = mask.shape
    total = np.pad(mask.astype(np.int32), ((r + 1, r), (r + 1, r))).cumsum(0).cumsum(1)
    return total[2 * r + 1 :, 2 * r + 1 :] - total[:h, 2 * r + 1 :] - total[2 * r + 1 :, :w] + total[:h, :w]


def lying_bar(mask: np.ndarray) -> np.ndarray | None:
    """Where ``mask`` holds a straight bar lying beside the digit and longer than it (the pen that
    wrote it, lying on the page): the bar's pixels and a margin for its soft edge that stops short
    of the other ink; None when there is none. The mask is pooled onto a grid of at most
    ``BAR_CELLS`` cells a side, split into connected parts (``morphology.components``), and each
    part is tried as the bar with all other parts as the digit (``_is_lying_bar``). When no part is
    one, the bar may be touching or crossing the digit: ``_touching_bar``.
    """
    grid, cell = _pooled(mask, BAR_CELLS)
    labels, count = morphology.components(grid)
    ys, xs = np.nonzero(grid)
    bar = None
    if count >= 2:
        cells = np.stack([ys, xs], axis=1).astype(np.float64)
        owner = labels[ys, xs]
        sizes = np.bincount(owner)
        for part in np.flatnonzero(sizes >= 2 * BAR_LONG):  # a bar is at least BAR_LONG cells by 2
            if _is_lying_bar(cells[owner == part], cells[owner != part]):
                bar = morphology.with_ring(labels == part) & ~((labels > 0) & (labels != part))
                break
    if bar is None and ys.size:
        bar = _touching_bar(ys, xs, grid.shape)
    if bar is None:
        return None
    return np.repeat(np.repeat(bar, cell, axis=0), cell, axis=1)[: mask.shape[0], : mask.shape[1]]


def _pooled(mask: np.ndarray, cells: int) -> tuple[np.ndarray, int]:
    """``mask`` pooled onto a grid of at most ``cells`` cells a side (a cell is set when any of its
    pixels is), and the cell's side in pixels."""
    cell = max(1, -(-max(mask.shape) // cells))
    return morphology.pooled_max(mask.astype(bool, copy=False), cell), cell


def drawn_mark(mask: np.ndarray) -> np.ndarray | None:
    """Where ``mask`` holds a mark drawn by hand in the digit's own pen: an outline round the rest
    of the ink (a circle or a box, which the printed box's thin-lines rule does not take;
    ``_outline``), a line under it (``_underline``), or an outline touching the digit, one part
    with it (``_touching_outline``). Its pixels and a margin for its soft edge that stops short of
    the other ink; None when there is none. The mask is pooled onto a grid of at most
    ``OUTLINE_CELLS`` cells a side (``_pooled``) and split into connected parts once for all three:
    the first two try one part as the mark, all the others as the digit."""
    grid, cell = _pooled(mask, OUTLINE_CELLS)
    labels, count = morphology.components(grid)
    if count == 0:
        return None
    ys, xs = np.nonzero(grid)
    owner = labels[ys, xs]
    erase = None
    if count >= 2:
        mark = _outline(labels, ys, xs, owner)
        if mark is None:
            mark = _underline(ys, xs, owner)
        if mark is not None:
            erase = morphology.with_ring(labels == mark) & ~((labels > 0) & (labels != mark))
    if erase is None:
        erase = _touching_outline(labels, ys, xs, owner)
    if erase is None:
        return None
    return np.repeat(np.repeat(erase, cell, axis=0), cell, axis=1)[: mask.shape[0], : mask.shape[1]]


def _outline(labels: np.ndarray, ys: np.ndarray, xs: np.ndarray, owner: np.ndarray) -> int | None:
    """The part of ``labels`` drawn round all the others, or None. ``ys``, ``xs``: the inked cells;
    ``owner``: each one's label. It is the part holding the topmost cell, when its bounding box
    holds all the others, none of them can be reached from the grid's edge without crossing it (its
    cells and their neighbours: a diagonal step closes it too), and they are big enough to be a
    digit (``OUTLINE_REST``, ``OUTLINE_MASS``)."""
    outer = int(owner[np.argmin(ys)])  # the part holding the topmost cell must hold the other extremes
    mine, rest = owner == outer, owner != outer
    top, bottom, left, right = ys[mine].min(), ys[mine].max(), xs[mine].min(), xs[mine].max()
    if not (top < ys[rest].min() and ys[rest].max() < bottom and left < xs[rest].min() and xs[rest].max() < right):
        return None
    rest_h, rest_w = np.ptp(ys[rest]) + 1, np.ptp(xs[rest]) + 1
    if max(rest_h / (bottom - top + 1), rest_w / (right - left + 1)) < OUTLINE_REST:
        return None
    if np.count_nonzero(rest) < OUTLINE_MASS * np.count_nonzero(mine):
        return None
    if _outside(morphology.with_ring(labels == outer))[ys[rest], xs[rest]].any():
        return None  # some of the rest lies outside the outline: it is no outline round it
    return outer


def _outside(wall: np.ndarray) -> np.ndarray:
    """The cells off ``wall`` that can be reached from the grid's edge without crossing it (a
    wall grown by ``morphology.with_ring`` is closed to diagonal steps too)."""
    open_parts, _ = morphology.components(~wall)
    edge = np.unique(np.concatenate([open_parts[0], open_parts[-1], open_parts[:, 0], open_parts[:, -1]]))
    return np.isin(open_parts, edge[edge > 0])


def _touching_outline(labels: np.ndarray, ys: np.ndarray, xs: np.ndarray, owner: np.ndarray) -> np.ndarray | None:
    """The cells of ``labels`` to erase (an outline and a cell round it, within its part) when the
    part holding the topmost inked cell is an outline that the digit inside touches, or None.
    ``ys``, ``xs``: the inked cells; ``owner``: each one's label.

    The part's cells are peeled from the outside in, one ring of neighbours at a time (geodesic
    depth): an outline's levels each hold about its border's length, while a digit touching it from
    inside is reached only where it touches, a level or two of a stroke's width. So the outline is
    the levels holding ``OUTLINE_CONTACT`` of the first level's cells or more, and the rest is the
    digit. Asked first: the paper inside the part's filled shape is ``OUTLINE_HOLE`` of it or more
    (a digit's own loops are less, a filled blob none), and the part borders that paper along
    ``OUTLINE_INNER`` times its outer border or more: an outline with a digit inside borders the
    digit's strokes on both sides too (photo_stress's tightly circled digits 1.21 times and more),
    a 0 or an 8 alone borders its holes less than the page, or up to 1.14 times where a long waist
    or the pen's end runs across it (16 of MNIST's train 0s, 2s, 4s, 6s, 8s and 9s enlarged to
    112 px). After: every cell of the outline is reached from inside (the paper or the digit)
    through the outline within its own depth and two, but for ``OUTLINE_STUB`` of the first level's
    cells: a slashed 0's slash crosses the 0 and sticks out of it, and what sticks out is reached
    from inside only along the slash. And the rest is big enough to be a digit (``OUTLINE_REST``,
    ``OUTLINE_MASS``).
    """
    outer = int(owner[np.argmin(ys)])
    mine = owner == outer
    top, bottom, left, right = ys[mine].min(), ys[mine].max(), xs[mine].min(), xs[mine].max()
    box = (slice(max(0, top - 2), bottom + 3), slice(max(0, left - 2), right + 3))
    crop = np.pad(labels[box], 2)  # paper all round the part
    part = crop == outer
    wall = morphology.with_ring(part)
    outside = _outside(wall)
    hole = ~outside & ~wall
    if np.count_nonzero(hole) < OUTLINE_HOLE * np.count_nonzero(~outside):
        return None
    reached = part & morphology.with_ring(morphology.with_ring(outside))
    border = np.count_nonzero(reached)
    if np.count_nonzero(part & morphology.with_ring(morphology.with_ring(hole))) < OUTLINE_INNER * border:
        return None
    depth = 1
    while True:
        front = part & morphology.with_ring(reached) & ~reached
        if np.count_nonzero(front) < OUTLINE_CONTACT * border:
            break
        reached |= front
        depth += 1
    ring = morphology.with_ring(reached) & part
    rest = (crop > 0) & ~ring
    if not rest.any():
        return None
    inside = ring & (morphology.with_ring(morphology.with_ring(hole)) | morphology.with_ring(rest))
    for _ in range(depth + 2):
        inside = morphology.with_ring(inside) & ring
    if np.count_nonzero(ring & ~inside) > OUTLINE_STUB * border:
        return None  # part of it is no outline: ink reaching out of it (a slashed 0's slash)
    rest_ys, rest_xs = np.nonzero(rest)
    if max((np.ptp(rest_ys) + 1) / (bottom - top + 1), (np.ptp(rest_xs) + 1) / (right - left + 1)) < OUTLINE_REST:
        return None
    if np.count_nonzero(rest) < OUTLINE_MASS * np.count_nonzero(ring):
        return None
    erase = np.zeros(labels.shape, dtype=bool)
    erase[box] = ring[2:-2, 2:-2]
    return erase


def _underline(ys: np.ndarray, xs: np.ndarray, owner: np.ndarray) -> int | None:
    """The part drawn under all the others, or None; ``ys``, ``xs``: the inked cells, ``owner``:
    each one's part. It is the part holding the lowest cell, when it is a straight bar
    (``_bar_shaped``) within ``BAR_TILT`` degrees of level, all the others lie above its top, it
    reaches past them at both ends by ``UNDER_PAST`` of their height, and they are big enough to be
    a digit over it (``BAR_REST`` of its length, ``BAR_MASS`` of its cells).

    A 2's base written apart is such a line when it starts left of the 2's diagonal's end and
    reaches past the body at both ends (``tests.synthetic.APART``'s "2, base apart", on some
    seeds); what is left then reads as 7. The one 2 with its base apart among MNIST's 60,000 train
    digits starts it where the diagonal ends, so it keeps it.
    """
    low = int(owner[np.argmax(ys)])
    mine, rest = owner == low, owner != low
    if np.count_nonzero(mine) < 2 * BAR_LONG or ys[rest].max() >= ys[mine].min():
        return None  # too small to be a bar, or the rest reaches down beside it or below it
    _, axes, long, thick = _bar_axes(np.stack([ys[mine], xs[mine]], axis=1).astype(np.float64))
    if abs(axes[0, 1]) > math.sin(math.radians(BAR_TILT)) or not _bar_shaped(long, thick, int(np.count_nonzero(mine))):
        return None
    rest_h = np.ptp(ys[rest]) + 1
    past = UNDER_PAST * rest_h
    if xs[mine].min() > xs[rest].min() - past or xs[mine].max() < xs[rest].max() + past:
        return None
    if rest_h < BAR_REST * long or np.count_nonzero(rest) < BAR_MASS * np.count_nonzero(mine):
        return None
    return low


def _bar_axes(cells: np.ndarray) -> tuple[np.ndarray, np.ndarray, float, float]:
    """The centre of ``cells`` (row, column pairs), their main axes (columns of a 2x2, the long one
    last) and the rectangle their spread along and across those axes gives: long, thick."""
    centre = cells.mean(axis=0)
    spread, axes = np.linalg.eigh(np.cov((cells - centre).T))
    # a uniform run of n cells has variance (n^2 - 1) / 12
    thick, long = np.sqrt(12 * np.maximum(spread, 0.0) + 1)
    return centre, axes, float(long), float(thick)


def _touching_bar(ys: np.ndarray, xs: np.ndarray, shape: tuple[int, ...]) -> np.ndarray | None:
    """A pen lying on the page across the digit or touching it (``morphology.components`` joins the
    two): the cells of ``shape`` to erase, the digit under the pen with them (the pen hides it
    anyway); None when there is none. ``ys``, ``xs``: the inked cells.

    The ink is counted row by row at each angle within ``BAR_TILT`` degrees of level, in one-degree
    steps, and the angle whose rows are fullest (the largest sum of squared counts) is the pen's.
    There the pen is the band of rows round the fullest row, each holding ``BAR_BAND`` of its ink.
    It must pass ``_is_lying_bar``'s tests of a straight bar (long and full) and its size test, with
    the rest (the ink beyond ``TOUCH_MARGIN`` cells of the band) ``TOUCH_LONGER`` times shorter
    than the band, and must reach past the rest at both ends by ``BAR_PAST`` of its size. The band
    and ``TOUCH_MARGIN`` cells round it go. A rest under ``TOUCH_MIN`` cells is not looked at: a
    digit a tenth of a 1000 px photo's height spans a few cells (a small 5 read as a 2 when it was).

    A digit's own long stroke touches the rest of it, so these tests are stricter than for a bar
    apart. A 7's bar, or a 2's base that the curve meets at its end, ends where the stroke from it
    starts: it reaches past at one end only. A 2's base reaching past its body at both ends can be
    twice the body's size: of MNIST's 60,000 digits enlarged to 60, 140 and 400 px, 9, 6 and 2
    (all 2s) would lose their base at 2.1 times, 6, 3 and 2 at ``TOUCH_LONGER``, whose bases are
    2.3 to 3 times their body's size and read as a pen's would. Only ink at least as wide as it is
    high is searched (a level pen longer than the digit makes it so), and an upright pen is not
    searched for: a 4's or a 9's stem touching the rest is one (a 9 with a long stem read as a 6).
    """
    if np.ptp(xs) < np.ptp(ys):
        return None
    turns = np.radians(np.arange(-BAR_TILT, BAR_TILT + 0.5, 1.0))[:, None]
    cos, sin = np.cos(turns), np.sin(turns)
    raw = np.rint(ys * cos - xs * sin).astype(np.int64)  # each cell's row at each angle
    offset = raw.min(axis=1, keepdims=True)
    counts = [np.bincount(rows) for rows in raw - offset]
    best = int(np.argmax([np.dot(c, c) for c in counts]))  # rows fullest where they run along the pen
    count, row = counts[best], raw[best] - offset[best, 0]
    c, s = float(cos[best, 0]), float(sin[best, 0])
    along = np.rint(xs * c + ys * s).astype(np.int64)
    lo = hi = int(np.argmax(count))
    full = count >= BAR_BAND * count[lo]
    while lo > 0 and full[lo - 1]:
        lo -= 1
    while hi + 1 < count.size and full[hi + 1]:
        hi += 1
    band = (row >= lo) & (row <= hi)
    start, end = int(along[band].min()), int(along[band].max())
    long, thick = end - start + 1, hi - lo + 1
    if not _bar_shaped(long, thick, int(band.sum())):
        return None
    m = TOUCH_MARGIN
    rest = (row < lo - m) | (row > hi + m) | (along < start - m) | (along > end + m)
    if not rest.any():
        return None
    size = max(np.ptp(along[rest]), np.ptp(row[rest])) + 1
    if size < TOUCH_MIN or not _rest_sized(size, long, TOUCH_LONGER):
        return None
    if along[rest].min() < start + BAR_PAST * size or along[rest].max() > end - BAR_PAST * size:
        return None
    gy, gx = np.indices(shape)  # every cell of the grid, turned as the ink was
    g_row = np.rint(gy * c - gx * s) - offset[best, 0]
    g_along = np.rint(gx * c + gy * s)
    return (g_row >= lo - m) & (g_row <= hi + m) & (g_along >= start - m) & (g_along <= end + m)


def _is_lying_bar(bar: np.ndarray, rest: np.ndarray) -> bool:
    """Whether the cells ``bar`` (row, column pairs) are a straight bar lying beside the digit, the
    cells ``rest``. Straight: the spread of its cells along and across their main axis gives a
    rectangle ``BAR_LONG`` times as long as it is thick, which they fill to ``BAR_FILL``, and it
    lies within ``BAR_TILT`` degrees of level or of upright. Beside: the rest lies wholly beyond
    one of its long sides. Longer than the digit: ``BAR_LONGER`` times the rest's size, which is
    ``BAR_REST`` of its length at least (a "1" with a dot beside it is no pen beside a digit), and
    with ``BAR_MASS`` of its cells at least (a digit has as much ink as a pen or more; a faint short
    mark beside a "1" has a fifth). Upright, it must also stand ``BAR_APART`` of the rest's size
    away from it, or be ``BAR_THICKER`` times as thick as the rest's strokes (``_pen_width``).

    A digit's own straight strokes, lifted off the rest, fail these. A detached top bar of a 7 or a
    5, or a 2's base, is about as long as the rest is tall. A 4's stem stands upright and may be
    twice as long as a short arm, but it stands next to the arm: in the test's drawings (60 seeds)
    at most 0.28 of the arm's size away, where a pen lying by the digit's side is mostly further;
    and it is written with the arm's pen (at most 1.06 times as thick in those drawings, where the
    pen that wrote a digit is many times as thick as its line). One MNIST 5 has a detached flag 1.8
    to 2.1 times its body's size, rising 20 degrees: the tilt limit keeps it.
    """
    centre, axes, long, thick = _bar_axes(bar)
    # axes[:, 1] is the long axis (row, column): level when its row share is small, upright when
    # its column share is
    level = abs(axes[0, 1]) <= math.sin(math.radians(BAR_TILT))
    upright = abs(axes[1, 1]) <= math.sin(math.radians(BAR_TILT))
    if not (level or upright) or not _bar_shaped(long, thick, len(bar)):
        return False
    across, along = ((rest - centre) @ axes).T
    size = max(np.ptp(along), np.ptp(across)) + 1
    gap = max(across.min() - thick / 2, -thick / 2 - across.max())  # positive when beside
    if gap <= 0 or not _rest_sized(size, long, BAR_LONGER) or len(rest) < BAR_MASS * len(bar):
        return False
    return bool(level or gap >= BAR_APART * size or _pen_width(bar) >= BAR_THICKER * _pen_width(rest))


def _pen_width(cells: np.ndarray) -> float:
    """The mean width of the strokes the cells ``cells`` (row, column pairs) make, in cells
    (``morphology.stroke_width``)."""
    ys, xs = cells[:, 0].astype(np.int64), cells[:, 1].astype(np.int64)
    mask = np.zeros((np.ptp(ys) + 3, np.ptp(xs) + 3), dtype=np.float32)  # a blank frame: the edge is outline
    mask[ys - ys.min() + 1, xs - xs.min() + 1] = 1.0
    return morphology.stroke_width(mask)


def _bar_shaped(long: float, thick: float, cells: int) -> bool:
    """A straight bar: ``BAR_LONG`` times as long as thick or more, its ``cells`` filling ``BAR_FILL``
    of that rectangle (a pen apart from the digit, ``_is_lying_bar``, or across it, ``_touching_bar``)."""
    return bool(long >= BAR_LONG * thick and cells >= BAR_FILL * long * thick)


def _rest_sized(size: float, long: float, longer: float) -> bool:
    """The rest of the ink, of ``size``, is a digit beside a bar ``long``: ``longer`` times shorter
    than the bar at least, and ``BAR_REST`` of it at least (a dot beside a "1" is no digit beside a pen)."""
    return bool(BAR_REST * long <= size <= long / longer)


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
