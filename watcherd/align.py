"""Lining two pictures up before they are compared: a crop, a frame, a thumbnail a
pixel shorter or a photo inside a screenshot shifts every cell of a whole-picture
comparison, so one picture is cut to the part the other shows.

The places a crop usually is (the regions watcherd hashes, the picture without its
bars, the photo inside a screenshot) are scored first, at ALIGN_SIDE; the best one, if
it fits at all, is moved and scaled step by step to the best fit (`_refined`). A
picture is checked against many others, so what depends on it alone (its boxes and
their small grids) is made once and kept on its `Picture`.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

import numpy as np
from PIL import Image

from .fingerprint import REGIONS, SQUARES, TRANSFORMS
from .matching import REGION_NAMES
from .screenshots import photo_boxes

SIDE = 128  # pictures are compared at SIDE x SIDE
CELL = 8  # in cells of CELL x CELL pixels
ALIGN_SIDE = 64  # crop boxes are tried at this size, the best one checked at SIDE
# A crop's best region box scores 0.89 or more before it is refined (crop kinds of
# accuracy.py, a 13% crop no box matches), unrelated pictures the hashes bring at most
# 0.76 (benchmarks/throughput.py's photos): below this the box is not refined.
START_FIT = 0.8
ALIGNED = 0.95  # the wholes fit this well already: no box is refined
TEXTURED = 4.0  # a cell whose grey levels vary less than this (std) says nothing

Box = tuple[float, float, float, float]
Settled = Callable[[np.ndarray, np.ndarray], bool]  # do two grids line up well enough?
_POSES = dict(TRANSFORMS)


class Picture:
    """A picture for checks: its grey rendition, and what is made of it once (its
    grids, its boxes and their grids, its turned poses), kept for the next check.
    Grids are kept as bytes (a resized grey picture has whole grey levels): a quarter
    of the memory, for a cache of many pictures."""

    __slots__ = ("_made", "image")

    def __init__(self, image: Image.Image) -> None:
        self.image = image
        self._made: dict = {}

    def grid(self, side: int = SIDE) -> np.ndarray:
        """The whole picture at side x side."""
        key = ("grid", side)
        if key not in self._made:
            self._made[key] = grid(self.image, side=side).astype(np.uint8)
        return self._made[key].astype(np.float32)

    @property
    def nbytes(self) -> int:
        """About what it holds in memory (for a cache with a budget)."""
        made = 0
        for value in self._made.values():
            if isinstance(value, np.ndarray):
                made += value.nbytes
            elif isinstance(value, list):
                made += sum(g.nbytes for _, g in value)
        return self.image.width * self.image.height + made

    def settled(self) -> Picture:
        """The picture as an indexed file keeps it: without the newcomer's turned poses."""
        kept = Picture(self.image)
        kept._made = {k: v for k, v in self._made.items() if k[0] != "turned"}
        return kept

    def turned(self, transform: str) -> Picture:
        """This picture in the pose `transform` names (a crop leaves it as it is)."""
        if transform not in _POSES:
            return self
        key = ("turned", transform)
        if key not in self._made:
            self._made[key] = Picture(turned(self.image, transform))
        return self._made[key]

    def photos(self) -> list[Box]:
        """The photo inside this picture if it is a screenshot: one box, or up to three
        readings of its edges (fingerprint.photo_boxes)."""
        if "photo" not in self._made:
            # a tuple: lists in _made are grids, counted in nbytes
            self._made["photo"] = tuple(tuple(map(float, box)) for box in photo_boxes(self.image))
        return list(self._made["photo"])

    @property
    def aspect(self) -> float:
        return self.image.width / self.image.height

    def photo_starts(self, aspect: float) -> list[tuple[Box, np.ndarray]]:
        """The photo's box in this screenshot given the shape of the photo it is checked
        against (`aspect`), each at ALIGN_SIDE: each reading with its width kept and
        its top, middle or bottom where it was, and with its height kept and its left,
        middle or right. A reading is off where the photo's edge was unsure (a sky
        taken for the screen, text bubbles taken for the photo), rarely on every side:
        one of these usually has the photo's own edges."""
        key = ("photo-starts", round(aspect, 3))
        if key not in self._made:
            boxes = [v for box in self.photos() for v in _shaped(box, aspect)]
            self._made[key] = [
                (box, grid(self.image, box, ALIGN_SIDE).astype(np.uint8)) for box in boxes
            ]
        return [(box, g.astype(np.float32)) for box, g in self._made[key]]

    def is_photo(self, box: Box, other: Picture) -> bool:
        """Whether `box` is the photo's box in this screenshot, as found or reshaped."""
        return box in self.photos() or any(b == box for b, _ in self.photo_starts(other.aspect))

    def starts(self, region: str) -> list[tuple[Box, np.ndarray]]:
        """The boxes a crop of or in this picture is tried at, each with its grid at
        ALIGN_SIDE."""
        key = ("starts", region)
        if key not in self._made:
            boxes = _boxes(self, region)
            self._made[key] = [
                (box, grid(self.image, box, ALIGN_SIDE).astype(np.uint8)) for box in boxes
            ]
        return [(box, g.astype(np.float32)) for box, g in self._made[key]]


def turned(img: Image.Image, transform: str) -> Image.Image:
    """`img` in the pose `transform` names (a crop leaves it as it is)."""
    pose = _POSES.get(transform)
    return img.transpose(pose) if pose is not None else img


def grid(img: Image.Image, box: Box | None = None, side: int = SIDE) -> np.ndarray:
    """`box` of `img` (the whole by default, to the fraction of a pixel) at side x side."""
    if box is not None:  # kept inside the picture, which resize requires
        w, h = img.size
        x0, y0, x1, y1 = box
        box = (max(0.0, x0), max(0.0, y0), min(float(w), x1), min(float(h), y1))
    size = (side, side)
    return np.asarray(img.resize(size, Image.Resampling.BILINEAR, box=box), dtype=np.float32)


def cells(x: np.ndarray) -> np.ndarray:
    """A square picture, or a stack of them, as rows of CELL x CELL cells."""
    n = x.shape[-1] // CELL
    lead = x.shape[:-2]
    split = x.reshape(*lead, n, CELL, n, CELL)
    return np.swapaxes(split, -3, -2).reshape(*lead, n * n, CELL * CELL)


def _boxes(picture: Picture, region: str) -> list[Box]:
    """The part of a picture watcherd hashed as `region` (a crop of the other picture
    is that part), the whole, and the picture without bars; for a whole-picture match,
    the boxes of a slight crop; the photo in it, if it is a screenshot."""
    img = picture.image
    w, h = img.size
    boxes = {"whole": (0.0, 0.0, float(w), float(h))}
    for number, (x0, y0, x1, y1) in REGIONS.items():
        boxes[REGION_NAMES[number]] = (x0 * w, y0 * h, x1 * w, y1 * h)
    short = min(w, h)
    for number, f in SQUARES.items():
        s = short * f
        boxes[REGION_NAMES[number]] = ((w - s) / 2, (h - s) / 2, (w + s) / 2, (h + s) / 2)
    if w * 9 > h * 16:
        nw = h * 16 / 9
        boxes["16:9"] = ((w - nw) / 2, 0.0, (w + nw) / 2, float(h))
    else:
        nh = w * 9 / 16
        boxes["16:9"] = (0.0, (h - nh) / 2, float(w), (h + nh) / 2)
    boxes["content"] = _trimmed(img)
    if region in boxes:
        chosen = [boxes["whole"], boxes[region], boxes["content"]]
    else:  # a whole-picture match: at most a few percent cut off, or a bar added
        chosen = [boxes["whole"], boxes["centre"], boxes["top"], boxes["content"]]
    return [*chosen, *picture.photos()]


def _trimmed(img: Image.Image) -> Box:
    """The picture without the near-black or near-white bars around it (letterboxing,
    a frame), judged row by row and column by column: flat and dark or bright."""
    a = np.asarray(img, dtype=np.float32)
    h, w = a.shape

    def bars(axis: int) -> np.ndarray:
        mean, std = a.mean(axis=axis), a.std(axis=axis)
        return (std < TEXTURED) & ((mean < 40) | (mean > 215))

    rows, cols = ~bars(1), ~bars(0)  # lines that are picture, not bar
    if not rows.any() or not cols.any():
        return (0.0, 0.0, float(w), float(h))
    top, bottom = int(rows.argmax()), h - int(rows[::-1].argmax())
    left, right = int(cols.argmax()), w - int(cols[::-1].argmax())
    if (right - left) * (bottom - top) < 0.3 * w * h:
        return (0.0, 0.0, float(w), float(h))  # mostly bar: a dark or bright picture
    return (float(left), float(top), float(right), float(bottom))


def scores(xs: np.ndarray, ys: np.ndarray) -> np.ndarray:
    """How well pairs of pictures (two stacks, or one picture against a stack) line
    up, for moving a box towards the best place: the mean correlation of their cells,
    leaving out the worst quarter (a caption bar or a sticker sways a correlation of
    the whole picture; it changes only its cells). -1 where too few cells vary."""
    cx, cy = cells(xs), cells(ys)
    dx = cx - cx.mean(axis=-1, keepdims=True)
    dy = cy - cy.mean(axis=-1, keepdims=True)
    vx, vy = (dx * dx).sum(axis=-1), (dy * dy).sum(axis=-1)
    ncc = (dx * dy).sum(axis=-1) / np.sqrt(np.maximum(vx * vy, 1e-12))
    both = (vx > 1e-3) & (vy > 1e-3)
    ncc, both = np.atleast_2d(ncc), np.atleast_2d(both)
    out = np.full(ncc.shape[0], -1.0)
    for k in range(ncc.shape[0]):
        if both[k].sum() >= 4:
            kept = np.sort(ncc[k][both[k]])
            out[k] = kept[len(kept) // 4 :].mean()
    return out


def _shaped(box: Box, aspect: float) -> list[Box]:
    """`box` given `aspect` (width / height) six ways: its width kept, anchored at its
    top, middle and bottom; its height kept, anchored at its left, middle and right."""
    x0, y0, x1, y1 = box
    h, w = (x1 - x0) / aspect, (y1 - y0) * aspect
    cy, cx = (y0 + y1) / 2, (x0 + x1) / 2
    across = [(x0, top, x1, top + h) for top in (y0, cy - h / 2, y1 - h)]
    down = [(left, y0, left + w, y1) for left in (x0, cx - w / 2, x1 - w)]
    return across + down


def _fitted(box: Box, aspect: float) -> Box:
    """`box` reshaped about its centre to `aspect` (width / height, in pixels) at the
    same area: a crop of a picture has the crop's own shape."""
    x0, y0, x1, y1 = box
    area = max(1.0, (x1 - x0) * (y1 - y0))
    w = (area * aspect) ** 0.5
    h = w / aspect
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    return (cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2)


_MOVES = ((1, 0, 0), (-1, 0, 0), (0, 1, 0), (0, -1, 0), (0, 0, 1), (0, 0, -1))


def _refined(img: Image.Image, box: Box, target: Picture, enough: Settled | None = None) -> Box:
    """`box` of `img` moved and scaled step by step (halving the step) towards the place
    that lines up best with `target`: the region boxes are where a crop usually is, not
    where this one is. Keeps the crop's shape (the target's); stays inside the picture.
    Each step tries the six moves at once and takes the best. The fine steps are
    skipped when the coarse ones already line the two up `enough` (most copies)."""
    w, h = img.size
    aspect = target.image.width / target.image.height

    def cut(cx: float, cy: float, bw: float) -> Box | None:
        bh = bw / aspect
        b = (cx - bw / 2, cy - bh / 2, cx + bw / 2, cy + bh / 2)
        if bw < 0.2 * w or b[0] < -0.02 * w or b[1] < -0.02 * h:
            return None
        if b[2] > 1.02 * w or b[3] > 1.02 * h:
            return None
        return b

    x0, y0, x1, y1 = _fitted(box, aspect)
    cx, cy, bw = (x0 + x1) / 2, (y0 + y1) / 2, x1 - x0
    if cut(cx, cy, bw) is None:
        cx, cy, bw = w / 2, h / 2, min(w, h * aspect)
    # coarse steps at ALIGN_SIDE; then, for a box compared at SIDE, fine ones at SIDE
    passes = [(ALIGN_SIDE, 0.04, 0.01)]
    if _side((0, 0, bw, bw / aspect)) == SIDE:
        passes.append((SIDE, 0.008, 0.002))
    for side, step, last in passes:
        goal = target.grid(side)
        here = _centred(cx, cy, bw, aspect)
        if side == SIDE and enough is not None and enough(grid(img, here, SIDE), goal):
            break
        best = scores(grid(img, cut(cx, cy, bw) or _centred(cx, cy, bw, aspect), side), goal)[0]
        while step >= last:
            moves = []
            for dx, dy, ds in _MOVES:
                place = (cx + dx * step * bw, cy + dy * step * bw, bw * (1 + ds * step))
                if (b := cut(*place)) is not None:
                    moves.append((place, grid(img, b, side)))
            fits = scores(np.stack([g for _, g in moves]), goal) if moves else []
            top = int(np.argmax(fits)) if moves else -1
            if top >= 0 and fits[top] > best + 1e-4:
                best, (cx, cy, bw) = fits[top], moves[top][0]
            else:
                step /= 2
    return _centred(cx, cy, bw, aspect)


def _centred(cx: float, cy: float, bw: float, aspect: float) -> Box:
    bh = bw / aspect
    return (cx - bw / 2, cy - bh / 2, cx + bw / 2, cy + bh / 2)


def aligned(
    a: Picture, b: Picture, region: str, enough: Settled | None = None
) -> tuple[np.ndarray, np.ndarray, int]:
    """`a` and `b` at SIDE, one of them cut to the part the other shows: the box (of
    either) that fits best as a start, then moved to the best fit (_refined), or until
    `enough(a's grid, b's grid)` says they line up. The wholes as they are if no box
    fits. Third, which one shows the other inside a screen around it (1: `a`, 2: `b`,
    0: neither)."""
    options, fits = _starts(a, b, a.starts(region), b.starts(region))
    best = int(np.argmax(fits))
    if fits[best] < START_FIT:
        # a photo's box in a screenshot is found with its margins uncertain: tried in
        # the other picture's shape too, and refined however it fits; else no box comes
        # near, and it is not a crop of the other
        more, more_fits = _starts(a, b, a.photo_starts(b.aspect), b.photo_starts(a.aspect))
        options, fits = options + more, np.concatenate([fits, more_fits])
        photos = [i for i, (cut, other, box) in enumerate(options) if cut.is_photo(box, other)]
        if not photos:
            return a.grid(), b.grid(), 0
        best = max(photos, key=lambda i: fits[i])
    cut, other, box = options[best]
    if best == 0 and fits[0] >= ALIGNED:  # a's whole on b's whole: lined up already
        return a.grid(), b.grid(), 0
    # cut at its photo box: a screen around the photo (a chat, a viewer). Not a box
    # around the content within bars or a plain ground (a product shot on white has
    # one, and a crop of it would be taken for its source), nor a region box: that is
    # a crop, and `other` the copy that shows less
    framed = (1 if cut is a else 2) if cut.is_photo(box, other) else 0
    if enough is not None and cut is not a:  # asked in a's and b's order
        enough = partial(_swapped, enough)
    box = _refined(cut.image, box, other, enough)
    side = _side(box)
    cut_grid, other_grid = grid(cut.image, box, side), other.grid(side)
    return (cut_grid, other_grid, framed) if cut is a else (other_grid, cut_grid, framed)


def _starts(
    a: Picture, b: Picture, mine: list, theirs: list
) -> tuple[list[tuple[Picture, Picture, Box]], np.ndarray]:
    """(cut, other, box) for boxes of `a` (`mine`) and of `b` (`theirs`), each with how
    well it fits the other picture whole, at ALIGN_SIDE."""
    fits = []
    if mine:
        fits.append(scores(np.stack([g for _, g in mine]), b.grid(ALIGN_SIDE)))
    if theirs:
        fits.append(scores(a.grid(ALIGN_SIDE), np.stack([g for _, g in theirs])))
    options = [(a, b, box) for box, _ in mine] + [(b, a, box) for box, _ in theirs]
    return options, np.concatenate(fits) if fits else np.empty(0)


def _swapped(enough: Settled, x: np.ndarray, y: np.ndarray) -> bool:
    return enough(y, x)


def _side(box: Box) -> int:
    """The size to compare at: a small box cut from a thumbnail is blurred when
    enlarged to SIDE, and its sharp counterpart would disagree in every fine cell."""
    x0, y0, x1, y1 = box
    return SIDE if max(x1 - x0, y1 - y0) >= 0.75 * SIDE else ALIGN_SIDE
