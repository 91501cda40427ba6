"""Verification on pixels: a candidate the hashes bring is a copy only if the two
pictures line up.

64-bit hashes retrieve candidates; on their own they link dark pictures, blank ones
and shots of one scene that are not copies (benchmarks/trust.py). Every candidate is
therefore checked on the pictures' 128 px thumbnails, the one the index already stores
for the report (the newcomer's comes with its fingerprint; an indexed file from before
thumbnails were stored is read again). Both are aligned by the pose the hashes found
(or, for a crop, the region box that lines them up best, either way round), brought to
128x128 grey and cut into a 16x16 grid of 8 px cells. A cell is textured when its grey
levels vary; cells textured in both pictures are compared by normalised
cross-correlation:

- a copy (resampled, recompressed, recoloured, cropped, framed, with a caption or a
  sticker) agrees in nearly every cell it shares: a mean cell correlation of at least
  NEAR_CORR and at most NEAR_CHANGED of those cells disagreeing. Overlays are flat
  graphics: a cell textured in one picture only is not counted against it;
- another shot (a burst, a re-take) disagrees where the scene moved; an unrelated
  picture disagrees everywhere;
- a copy's cell brightness follows one straight tone line of plausible slope (an
  edit), bar an overlay: two different low-texture pictures in the same frame or
  viewer are bright in different places (OFF_TONE);
- a picture with fewer than MIN_TEXTURED textured cells (blank, a gradient, a dot on
  black) is degenerate: it is never linked except as an exact byte copy.

The figures behind these limits: benchmarks/accuracy.py and benchmarks/trust.py run
with WATCHERD_VERIFY_TRACE (every check as a JSON line) and joined on their labels.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np
from PIL import Image

from .fingerprint import REGIONS, SQUARES, TRANSFORMS, photo_box
from .matching import REGION_NAMES

SIDE = 128  # both pictures are compared at SIDE x SIDE
CELL = 8  # in cells of CELL x CELL pixels
TEXTURED = 4.0  # a cell whose grey levels vary less than this (std) says nothing
CELL_AGREES = 0.6  # a cell textured in both agrees at this correlation or more
NEAR_CORR = 0.8  # a copy: mean correlation of the cells textured in both
NEAR_CHANGED = 0.12  # a copy: at most this fraction of those cells disagree...
OVERLAY_SPREAD = 0.25  # an overlay: the disagreeing cells within a box this big
OVERLAY_FILL = 0.3  # and filling at least this much of it
OVERLAY_CHANGED = 0.3  # and no more than this fraction of the shared cells
MIN_TEXTURED = 8  # fewer textured cells than this: a degenerate picture
SIMILAR_CORR = 0.5  # another shot of the scene: its cells still broadly agree
DETAIL = 40  # fewer textured cells than this in either: too little to tell at SIDE
ZOOM_CONTRAST = 24  # grey levels from the background that count as the subject
TONE_TOLERANCE = 40.0  # grey levels a cell's mean may stray from the tone curve
OFF_TONE = 0.2  # a copy: at most this fraction of all cells that far off (an overlay)
MAX_GAIN = 1.7  # the steepest tone line a copy's brightness or contrast edit draws
# A crop's best region box scores 0.89 or more before it is refined (crop kinds of
# accuracy.py, a 13% crop no box matches), unrelated pictures the hashes bring at most
# 0.76 (benchmarks/throughput.py's photos): below this the box is not refined.
START_FIT = 0.8
ALIGNED = 0.95  # the wholes fit this well already: no box is refined
ALIGN_SIDE = 64  # crop boxes are tried at this size, the best one checked at SIDE

_POSES = dict(TRANSFORMS)


@dataclass(frozen=True, slots=True)
class Check:
    """How two aligned pictures agree."""

    corr: float  # mean correlation of the cells textured in both
    shared: int  # cells textured in both
    changed: int  # of those, cells that disagree
    textured: tuple[int, int]  # textured cells in each picture
    spread: float  # the box around the cells that disagree, as a fraction of the grid
    fill: float  # how much of that box they fill
    off_tone: float = 0.0  # cells far off the tone curve that maps one onto the other

    @property
    def degenerate(self) -> bool:
        return min(self.textured) < MIN_TEXTURED

    @property
    def copy(self) -> bool:
        if self.degenerate or self.corr < NEAR_CORR or self.off_tone > OFF_TONE:
            return False
        if self.changed <= max(1, NEAR_CHANGED * self.shared):
            return True
        # more cells disagree, but all in one compact block (a caption bar, a sticker,
        # a label): an overlay on a copy, where another shot differs here and there
        overlay = self.spread <= OVERLAY_SPREAD and self.fill >= OVERLAY_FILL
        return overlay and self.changed <= OVERLAY_CHANGED * self.shared

    @property
    def shot(self) -> bool:
        """The same scene at least (a copy is one too)."""
        return not self.degenerate and self.corr >= SIMILAR_CORR


def rendition(jpeg: bytes | None) -> Image.Image | None:
    """A stored thumbnail as the grey picture checks are made on (None: unusable)."""
    if not jpeg:
        return None
    try:
        with Image.open(io.BytesIO(jpeg)) as im:
            im.draft("L", (SIDE, SIDE))
            return im.convert("L")
    except Exception:  # a damaged thumbnail: the caller reads the file instead
        return None


def zoomed(img: Image.Image) -> Image.Image:
    """The picture cut to what stands on its background (a nebula on black, an object
    on white), with a margin: a small subject fills a thumbnail only when zoomed."""
    a = np.asarray(img, dtype=np.int16)
    h, w = a.shape
    ground = int(np.median([a[0, 0], a[0, -1], a[-1, 0], a[-1, -1]]))
    subject = np.abs(a - ground) > ZOOM_CONTRAST
    rows = np.nonzero(subject.sum(axis=1) > 1)[0]
    cols = np.nonzero(subject.sum(axis=0) > 1)[0]
    if rows.size == 0 or cols.size == 0:
        return img
    top, bottom, left, right = rows[0], rows[-1] + 1, cols[0], cols[-1] + 1
    side = max(bottom - top, right - left) * 1.2
    cx, cy = (left + right) / 2, (top + bottom) / 2
    box = (
        max(0, cx - side / 2),
        max(0, cy - side / 2),
        min(w, cx + side / 2),
        min(h, cy + side / 2),
    )
    return img.crop(tuple(round(v) for v in box))


def turned(img: Image.Image, transform: str) -> Image.Image:
    """`img` in the pose `transform` names (a crop leaves it as it is)."""
    pose = _POSES.get(transform)
    return img.transpose(pose) if pose is not None else img


_ARRAY_POSES = {  # the poses of fingerprint.TRANSFORMS, on a numpy array
    "identity": lambda x: x,
    "mirror": lambda x: x[:, ::-1],
    "rotate90": lambda x: np.rot90(x, 1),
    "rotate180": lambda x: np.rot90(x, 2),
    "rotate270": lambda x: np.rot90(x, 3),
    "flip": lambda x: x[::-1],
    "transpose": lambda x: x.T,
    "transverse": lambda x: np.rot90(x, 2).T,
}


class Picture:
    """A picture for checks: its grey rendition, and the SIDE x SIDE grid of it once
    made (a candidate is checked against many newcomers; a newcomer in many poses,
    which are turns of the one grid)."""

    __slots__ = ("_grid", "image")

    def __init__(self, image: Image.Image) -> None:
        self.image = image
        self._grid: np.ndarray | None = None

    def grid(self) -> np.ndarray:
        if self._grid is None:
            self._grid = _grid(self.image)
        return self._grid


def check(
    newcomer: Picture | Image.Image,
    indexed: Picture | Image.Image,
    transform: str,
    search: bool = True,
) -> Check:
    """How `newcomer`, turned or cropped as the hashes matched it (`transform`, a pose
    name or `crop:<region>`), agrees with `indexed`."""
    mine = newcomer if isinstance(newcomer, Picture) else Picture(newcomer)
    theirs = indexed if isinstance(indexed, Picture) else Picture(indexed)
    image = mine.image
    if transform in _POSES:
        found = _compare(_ARRAY_POSES[transform](mine.grid()), theirs.grid())
        if found.copy or found.degenerate or not search:
            return found
        # close as a whole, yet not lined up: a crop of a few percent, a frame, or a
        # thumbnail a pixel shorter shifts every cell; the region boxes line them up
        image, region = turned(image, transform), "any"
    else:
        found, region = None, transform.removeprefix("crop:")
    a, b = _aligned(image, theirs.image, region)
    boxed = _compare(a, b)
    return boxed if found is None or boxed.copy else found


def _grid(img: Image.Image, box=None, side: int = SIDE) -> np.ndarray:
    """`box` of `img` (the whole by default, to the fraction of a pixel) at side x side."""
    if box is not None:  # kept inside the picture, which resize requires
        w, h = img.size
        x0, y0, x1, y1 = box
        box = (max(0.0, x0), max(0.0, y0), min(float(w), x1), min(float(h), y1))
    size = (side, side)
    return np.asarray(img.resize(size, Image.Resampling.BILINEAR, box=box), dtype=np.float32)


def _boxes(img: Image.Image, region: str) -> list[tuple[float, float, float, float]]:
    """The part of a picture watcherd hashed as `region` (a crop of the other picture
    is that part), the whole, and the picture without bars; for a whole-picture match,
    the boxes of a slight crop."""
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
        return [boxes["whole"], boxes[region], boxes["content"]]
    # a whole-picture match: at most a few percent cut off, or a bar added
    return [boxes["whole"], boxes["centre"], boxes["top"], boxes["content"]]


def _trimmed(img: Image.Image) -> tuple[float, float, float, float]:
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


def _score(x: np.ndarray, y: np.ndarray) -> float:
    """How well two pictures line up, for moving a box towards the best place: the
    mean correlation of their cells, leaving out the worst quarter (a caption bar or
    a sticker sways a correlation of the whole picture; it changes only its cells)."""
    cx, cy = _cells(x), _cells(y)
    dx = cx - cx.mean(axis=1, keepdims=True)
    dy = cy - cy.mean(axis=1, keepdims=True)
    vx, vy = (dx * dx).sum(axis=1), (dy * dy).sum(axis=1)
    both = (vx > 1e-3) & (vy > 1e-3)
    if both.sum() < 4:
        return -1.0
    ncc = np.sort((dx * dy).sum(axis=1)[both] / np.sqrt(vx[both] * vy[both]))
    return float(ncc[len(ncc) // 4 :].mean())


def _fitted(box, aspect: float) -> tuple[float, float, float, float]:
    """`box` reshaped about its centre to `aspect` (width / height, in pixels) at the
    same area: a crop of a picture has the crop's own shape."""
    x0, y0, x1, y1 = box
    area = max(1.0, (x1 - x0) * (y1 - y0))
    w = (area * aspect) ** 0.5
    h = w / aspect
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    return (cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2)


def _refined(
    img: Image.Image, box, other: np.ndarray, aspect: float, fine: np.ndarray | None = None
) -> tuple:
    """`box` of `img` moved and scaled step by step (halving the step) towards the place
    that lines up best with `other`: the region boxes are where a crop usually is, not
    where this one is. Keeps the crop's shape; stays inside the picture."""
    w, h = img.size
    x0, y0, x1, y1 = _fitted(box, aspect)
    cx, cy, bw = (x0 + x1) / 2, (y0 + y1) / 2, x1 - x0

    def cut(cx: float, cy: float, bw: float):
        bh = bw / aspect
        b = (cx - bw / 2, cy - bh / 2, cx + bw / 2, cy + bh / 2)
        if bw < 0.2 * w or b[0] < -0.02 * w or b[1] < -0.02 * h:
            return None
        if b[2] > 1.02 * w or b[3] > 1.02 * h:
            return None
        return b

    start = cut(cx, cy, bw)
    if start is None:
        cx, cy, bw = w / 2, h / 2, min(w, h * aspect)
        start = (cx - bw / 2, cy - bw / aspect / 2, cx + bw / 2, cy + bw / aspect / 2)
    # coarse steps at ALIGN_SIDE; then, for a box compared at SIDE, fine ones at SIDE
    passes = [(ALIGN_SIDE, other, 0.04, 0.01)]
    if _side(start) == SIDE and fine is not None:
        passes.append((SIDE, fine, 0.008, 0.002))
    for side, target, step, last in passes:
        best = _score(_grid(img, cut(cx, cy, bw) or start, side), target)
        while step >= last:
            moved = False
            for dx, dy, ds in _MOVES:
                b = cut(cx + dx * step * bw, cy + dy * step * bw, bw * (1 + ds * step))
                if b is None:
                    continue
                fit = _score(_grid(img, b, side), target)
                if fit > best + 1e-4:
                    best, moved = fit, True
                    cx, cy, bw = cx + dx * step * bw, cy + dy * step * bw, bw * (1 + ds * step)
            if not moved:
                step /= 2
    bh = bw / aspect
    return (cx - bw / 2, cy - bh / 2, cx + bw / 2, cy + bh / 2)


_MOVES = ((1, 0, 0), (-1, 0, 0), (0, 1, 0), (0, -1, 0), (0, 0, 1), (0, 0, -1))


def _aligned(a: Image.Image, b: Image.Image, region: str) -> tuple[np.ndarray, np.ndarray]:
    """`a` and `b` at SIDE, one of them cut to the part the other shows: the region box
    (of either) that fits best as a start, then moved to the best fit (_refined)."""
    whole_a, whole_b = _grid(a, side=ALIGN_SIDE), _grid(b, side=ALIGN_SIDE)
    options = [("a", box) for box in _boxes(a, region)] + [("b", box) for box in _boxes(b, region)]
    # a screenshot: the photo in it, whatever region the hashes matched
    photos = [
        (w, tuple(map(float, box))) for w, img in (("a", a), ("b", b)) if (box := photo_box(img))
    ]

    def fit(option) -> float:
        which, box = option
        if which == "a":
            return _score(_grid(a, box, ALIGN_SIDE), whole_b)
        return _score(whole_a, _grid(b, box, ALIGN_SIDE))

    options += photos
    fits = [fit(option) for option in options]
    best = int(np.argmax(fits))
    if fits[best] < START_FIT:
        if not photos:  # no box comes near: not a crop of the other
            return _grid(a), _grid(b)
        # a photo's box in a screenshot is found with its margins uncertain: refined
        best = len(options) - len(photos) + int(np.argmax(fits[-len(photos) :]))
    which, box = options[best]
    if best == 0 and fits[0] >= ALIGNED:  # a's whole on b's whole: lined up already
        return _grid(a), _grid(b)
    if which == "a":
        box = _refined(a, box, whole_b, b.width / b.height, _grid(b))
        side = _side(box)
        return _grid(a, box, side), _grid(b, side=side)
    box = _refined(b, box, whole_a, a.width / a.height, _grid(a))
    side = _side(box)
    return _grid(a, side=side), _grid(b, box, side)


def _side(box) -> int:
    """The size to compare at: a small box cut from a thumbnail is blurred when
    enlarged to SIDE, and its sharp counterpart would disagree in every fine cell."""
    x0, y0, x1, y1 = box
    return SIDE if max(x1 - x0, y1 - y0) >= 0.75 * SIDE else ALIGN_SIDE


def _cells(x: np.ndarray) -> np.ndarray:
    n = x.shape[0] // CELL  # square pictures only
    return x.reshape(n, CELL, n, CELL).transpose(0, 2, 1, 3).reshape(n * n, CELL * CELL)


def _off_tone(mx: np.ndarray, my: np.ndarray) -> float:
    """The fraction of cells whose brightness strays far from the one tone curve that
    maps the rest of one picture onto the other. A copy is brighter, greyer or more
    contrasted everywhere alike, apart from an overlay; two screenshots of different
    photos in the same viewer agree in their chrome and correlate weakly in a
    low-texture photo, but the photos are bright in different places. Fitted both ways
    round (an overlay maps many tones to one), the fewer cells off counting."""
    first = _off_curve(mx, my)
    return first if first <= OFF_TONE else min(first, _off_curve(my, mx))


def _off_curve(mx: np.ndarray, my: np.ndarray) -> float:
    """Cells off the straight tone line y = a x + b, fitted and then fitted again
    without the worst quarter (an overlay), its slope held to what an edit does (a
    brightness or contrast change of up to MAX_GAIN): a line from a dark photo to a
    bright one would fit two uniform pictures, not a copy."""
    keep = slice(None)
    for _ in range(2):
        x, y = mx[keep], my[keep]
        dx = x - x.mean()
        spread = float(dx @ dx)
        a = float(dx @ (y - y.mean())) / spread if spread > 1 else 1.0
        a = min(max(a, 1 / MAX_GAIN), MAX_GAIN)
        b = float(np.median(y - a * x))
        residual = np.abs(my - a * mx - b)
        keep = (
            residual <= np.partition(residual, (3 * len(residual)) // 4)[(3 * len(residual)) // 4]
        )
    return float((residual > TONE_TOLERANCE).mean())


def _compare(x: np.ndarray, y: np.ndarray) -> Check:
    cx, cy = _cells(x), _cells(y)
    dx = cx - cx.mean(axis=1, keepdims=True)
    dy = cy - cy.mean(axis=1, keepdims=True)
    vx, vy = (dx * dx).sum(axis=1), (dy * dy).sum(axis=1)
    limit = TEXTURED * TEXTURED * CELL * CELL
    tx, ty = vx > limit, vy > limit
    both = tx & ty
    ncc = (dx * dy).sum(axis=1)[both] / np.sqrt(vx[both] * vy[both])
    corr = float(ncc.mean()) if ncc.size else 0.0
    bad = np.zeros(both.shape, dtype=bool)
    bad[both] = ncc < CELL_AGREES
    n = x.shape[0] // CELL
    rows, cols = np.nonzero(bad.reshape(n, n))
    spread = fill = 0.0
    if rows.size:
        box = (rows.max() - rows.min() + 1) * (cols.max() - cols.min() + 1)
        spread, fill = box / (n * n), rows.size / box
    textured = (int(tx.sum()), int(ty.sum()))
    # only a pair that may be a copy needs it (it is the costly part)
    off = _off_tone(cx.mean(axis=1), cy.mean(axis=1)) if corr >= NEAR_CORR else 0.0
    return Check(corr, int(both.sum()), int(bad.sum()), textured, float(spread), float(fill), off)
