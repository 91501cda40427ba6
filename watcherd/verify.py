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

from dataclasses import dataclass, replace

import numpy as np
from PIL import Image

from .align import CELL, TEXTURED, Picture, aligned, cells, turned
from .fingerprint import grey_rendition as rendition

__all__ = ["Check", "Picture", "check", "rendition", "turned", "zoomed"]

CELL_AGREES = 0.6  # a cell textured in both agrees at this correlation or more
NEAR_CORR = 0.8  # a copy: mean correlation of the cells textured in both
NEAR_CHANGED = 0.12  # a copy: at most this fraction of those cells disagree...
OVERLAY_SPREAD = 0.25  # an overlay: the disagreeing cells within a box this big
OVERLAY_FILL = 0.3  # and at least this share of the cells compared in it
OVERLAY_CHANGED = 0.3  # and no more than this fraction of the shared cells
OVERLAY_AT_MOST = 0.2  # a sticker or label (up to 10% of a picture, with its rim) boxes
# no more of the grid than this; a photo inside a screenshot takes 20% of it or more
SCATTERED = 0.03  # cells disagreeing here and there that recompression alone explains
MIN_TEXTURED = 8  # fewer textured cells than this: a degenerate picture
SIMILAR_CORR = 0.5  # another shot of the scene: its cells still broadly agree
DETAIL = 40  # fewer textured cells than this in either: too little to tell at SIDE...
# ...unless every one of them agrees this closely, on the files read again: copies of
# deep-sky photos agree at 0.978-0.9995 with 16-37 textured cells, different objects
# at 0.905 at most (a scan of the 265 of ../shared/bench with a copy of each)
FAITHFUL_CORR = 0.97
ZOOM_CONTRAST = 24  # grey levels from the background that count as the subject
TONE_TOLERANCE = 40.0  # grey levels a cell's mean may stray from the tone curve
OFF_TONE = 0.2  # a copy: at most this fraction of all cells that far off (an overlay)
MAX_GAIN = 1.7  # the steepest tone line a copy's brightness or contrast edit draws
FLAT_STEP = 2.0  # grey levels between neighbours that count as flat (a graphic's fill)
COVERED_BY = 0.2  # an overlay: its block has this much more of its pixels flat
OVERLAY_AT_LEAST = 4 / 256  # of the grid: the least block an overlay is told from


@dataclass(frozen=True, slots=True)
class Check:
    """How two aligned pictures agree."""

    corr: float  # mean correlation of the cells textured in both
    shared: int  # cells textured in both
    changed: int  # of those, cells that disagree
    textured: tuple[int, int]  # textured cells in each picture
    spread: float  # the box around the main block of cells that disagree (of the grid)
    fill: float  # the share of the cells compared in that box that disagree
    off_tone: float = 0.0  # cells far off the tone curve that maps one onto the other
    stray: int = 0  # cells that disagree outside the main block
    rest: float = 0.0  # mean correlation of the cells textured in both outside its box
    framed: int = 0  # which shows the other inside a screen, cut at its photo box (1, 2; 0)
    covered: int = 0  # which one's block is flat where the other's has detail (1, 2; 0)
    block: tuple[int, int, int, int] | None = None  # the main block's box, in cells
    sharp: bool = False  # made on both files read again, not on stored thumbnails

    @property
    def degenerate(self) -> bool:
        return min(self.textured) < MIN_TEXTURED

    @property
    def copy(self) -> bool:
        if self.degenerate or self.off_tone > OFF_TONE:
            return False
        if self.corr >= NEAR_CORR and self.changed <= max(1, NEAR_CHANGED * self.shared):
            return True
        # more cells disagree, but in one compact block (a caption bar, a sticker, a
        # label): an overlay on a copy, where another shot differs here and there. The
        # cells under an opaque overlay do not correlate at all: a sticker over a tenth
        # of a photo pulls the mean of every cell to 0.69-0.79 while the rest agrees at
        # 0.97-0.99 (benchmarks/trust.py), as faithfully as a copy's cells do; drawn
        # deep-sky objects, one block apart, agree elsewhere at up to 0.96
        # (test_different_dark_pictures_are_not_linked). Only for an overlay: a block
        # over a fifth of the picture is a photo inside a screenshot, whose chrome
        # agrees around it whatever the photo (two chat screenshots: 0.99)
        overlay = self._one_block and self.changed <= OVERLAY_CHANGED * self.shared
        small = self.spread <= OVERLAY_AT_MOST
        return overlay and (self.corr >= NEAR_CORR or (small and self.rest >= FAITHFUL_CORR))

    @property
    def _one_block(self) -> bool:
        """The disagreeing cells form one compact block, but for the few here and there
        that recompression alone explains."""
        return self._compact and self.stray <= max(1, SCATTERED * self.shared)

    @property
    def _compact(self) -> bool:
        """The main block of disagreeing cells is small and dense."""
        return self.spread <= OVERLAY_SPREAD and self.fill >= OVERLAY_FILL

    @property
    def overlaid(self) -> bool:
        """A copy by the stricter rule for a candidate the hashes found only loosely
        (a sticker or a label moves pHash far): the disagreeing cells, beyond the few
        recompression explains, form one compact block. Another shot of the scene,
        where the subject moved, disagrees in two places (where it was and where it
        is) or all over."""
        if not self.copy:
            return False
        if self.changed <= max(1, SCATTERED * self.shared):
            return True
        return self._one_block

    @property
    def maybe_overlaid(self) -> bool:
        """Perhaps a copy under an overlay, on thumbnails too coarse to say: around a
        sticker on a smooth photo the thumbnails' cells agree at only 0.86-0.95, and over
        water or foliage recompression leaves more stray cells than SCATTERED; the files
        read again agree at 0.99 (benchmarks/trust.py). Overlaid already, or one
        compact block with the rest broadly alike."""
        if self.overlaid:
            return True
        few = self.changed <= OVERLAY_CHANGED * self.shared
        return self.shot and self.off_tone <= OFF_TONE and self._compact and few

    @property
    def faithful(self) -> bool:
        """A copy with every shared cell agreeing, nearly perfectly: enough, on the files
        read again, to call a picture with little detail a copy."""
        return self.copy and self.changed == 0 and self.corr >= FAITHFUL_CORR

    @property
    def shot(self) -> bool:
        """The same scene at least (a copy is one too)."""
        return not self.degenerate and self.corr >= SIMILAR_CORR

    @property
    def blocked(self) -> bool:
        """The two differ in one compact block of an overlay's size, beyond the cell or
        two here and there that recompression explains: which one carries it can be
        asked. (Frames of a swaying tree differ in blocks too, but loose ones.)"""
        if self.block is None or self.spread < OVERLAY_AT_LEAST or not self._one_block:
            return False
        return self.changed > max(1, SCATTERED * self.shared)

    @property
    def added(self) -> int:
        """Which of the two (1: the first, 2: the second, 0: neither that can be told)
        is the other with something added: a screen around it (a chat, a viewer), or a
        sticker, label or caption over it. That one is never the copy to keep: a chat
        screenshot has more pixels than the photo in it, a stickered PNG more bytes."""
        return self.framed or self.covered


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


def check(
    newcomer: Picture | Image.Image,
    indexed: Picture | Image.Image,
    transform: str,
    search: bool = True,
    resampled: bool = False,
    sharp: bool = False,
) -> Check:
    """How `newcomer`, turned or cropped as the hashes matched it (`transform`, a pose
    name or `crop:<region>`), agrees with `indexed`. `resampled`: one shows the other
    resampled twice over (a photo inside a screenshot: scaled to the screen, the
    screen scaled down), which leaves nothing of the finest texture (a fabric, grass,
    gravel): two lined-up pictures that do not agree as copies are compared again
    without it (_smoothed). `sharp`: both read from their files, not from stored
    thumbnails, whose JPEG ringing leaves no pixel of a sticker's fill flat: only
    then is `covered` told."""
    found = _checked(newcomer, indexed, transform, search, resampled, sharp)
    return replace(found, sharp=True) if sharp else found


def _checked(
    newcomer: Picture | Image.Image,
    indexed: Picture | Image.Image,
    transform: str,
    search: bool,
    resampled: bool,
    sharp: bool,
) -> Check:
    mine = newcomer if isinstance(newcomer, Picture) else Picture(newcomer)
    theirs = indexed if isinstance(indexed, Picture) else Picture(indexed)
    if transform in _ARRAY_POSES:
        x, y = _ARRAY_POSES[transform](mine.grid()), theirs.grid()
        found = _compare(x, y)
        if sharp and found.copy:
            found = _covered(x, y, found)
        if found.copy or found.degenerate or not search:
            return found
        # close as a whole, yet not lined up: a crop of a few percent, a frame, or a
        # thumbnail a pixel shorter shifts every cell; the region boxes line them up
        mine, region = mine.turned(transform), "any"
    else:
        found, region = None, transform.removeprefix("crop:")
    x, y, framed = aligned(mine, theirs, region, _lined_up)
    boxed = _compare(x, y)
    if resampled and not boxed.copy:
        boxed = _compare(_smoothed(x), _smoothed(y))
    if framed:
        boxed = replace(boxed, framed=framed)
    return boxed if found is None or boxed.copy else found


def _smoothed(x: np.ndarray) -> np.ndarray:
    """`x` blurred over about a pixel each way (a [1, 2, 1] filter twice along each
    axis, close to a Gaussian of sigma 1): what is left is the structure a second
    resampling keeps."""
    for axis in (0, 1):
        for _ in range(2):
            padded = np.concatenate([x.take([0], axis), x, x.take([-1], axis)], axis=axis)
            n = x.shape[axis]
            x = (
                padded.take(range(0, n), axis)
                + 2 * padded.take(range(1, n + 1), axis)
                + padded.take(range(2, n + 2), axis)
            ) / 4
    return x


def _lined_up(x: np.ndarray, y: np.ndarray) -> bool:
    return _compare(x, y).copy


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
    bright one would fit two uniform pictures, not a copy. A first line that leaves no
    cell off settles it (most copies)."""
    keep = slice(None)
    quarter = (3 * len(mx)) // 4
    for _ in range(2):
        x, y = mx[keep], my[keep]
        dx = x - x.mean()
        spread = float(dx @ dx)
        a = float(dx @ (y - y.mean())) / spread if spread > 1 else 1.0
        a = min(max(a, 1 / MAX_GAIN), MAX_GAIN)
        b = float(np.median(y - a * x))
        residual = np.abs(my - a * mx - b)
        if residual.max() <= TONE_TOLERANCE:
            return 0.0
        keep = residual <= np.partition(residual, quarter)[quarter]
    return float((residual > TONE_TOLERANCE).mean())


def _compare(x: np.ndarray, y: np.ndarray) -> Check:
    cx, cy = cells(x), cells(y)
    mx, my = cx.mean(axis=1), cy.mean(axis=1)
    dx, dy = cx - mx[:, None], cy - my[:, None]
    vx, vy = np.einsum("ij,ij->i", dx, dx), np.einsum("ij,ij->i", dy, dy)
    limit = TEXTURED * TEXTURED * CELL * CELL
    tx, ty = vx > limit, vy > limit
    both = tx & ty
    ncc = np.einsum("ij,ij->i", dx[both], dy[both]) / np.sqrt(vx[both] * vy[both])
    corr = float(ncc.mean()) if ncc.size else 0.0
    bad = np.zeros(both.shape, dtype=bool)
    bad[both] = ncc < CELL_AGREES
    n = x.shape[0] // CELL
    spread, fill, stray, box = _main_block(
        bad.reshape(n, n), both.reshape(n, n), corr >= SIMILAR_CORR
    )
    rest = corr
    if box is not None:
        r, c = np.divmod(np.flatnonzero(both), n)
        outside = (r < box[0]) | (r > box[1]) | (c < box[2]) | (c > box[3])
        rest = float(ncc[outside].mean()) if outside.any() else 0.0
    textured = (int(tx.sum()), int(ty.sum()))
    # only a pair that may be a copy needs it (it is the costly part)
    off = _off_tone(mx, my) if max(corr, rest) >= NEAR_CORR else 0.0
    shared, changed = int(both.sum()), int(bad.sum())
    return Check(corr, shared, changed, textured, spread, fill, off, stray, rest, block=box)


def _flat_share(a: np.ndarray, box: tuple[int, int, int, int]) -> float:
    """The share of pixels in a block of cells that do not differ from their right and
    lower neighbours by more than FLAT_STEP grey levels."""
    top, bottom, left, right = box
    r = a[top * CELL : (bottom + 1) * CELL, left * CELL : (right + 1) * CELL]
    across = np.abs(np.diff(r, axis=1))[:-1, :] <= FLAT_STEP
    down = np.abs(np.diff(r, axis=0))[:, :-1] <= FLAT_STEP
    return float((across & down).mean())


def _covered(x: np.ndarray, y: np.ndarray, found: Check) -> Check:
    """`found` with which picture (1, 2; 0: neither can be told) is the flatter over
    the block where the two disagree: an overlay (a sticker's fill, a label, a caption
    bar) is flat graphics over the photo. Told only for a block of an overlay's size
    (a cell or two that disagree say nothing of either)."""
    if not found.blocked:
        return found
    fx, fy = _flat_share(x, found.block), _flat_share(y, found.block)
    if abs(fx - fy) < COVERED_BY:
        return found
    return replace(found, covered=1 if fx > fy else 2)


def _main_block(
    bad: np.ndarray, compared: np.ndarray, near: bool
) -> tuple[float, float, int, tuple[int, int, int, int] | None]:
    """(spread, fill, stray, box) of the cells that disagree: the box around their main
    block as a fraction of the grid, how many of the cells compared in it they are
    (`compared`: textured in both), how many lie outside it, and the box (top, bottom,
    left, right, in cells; None when not `near`).

    A sticker disagrees along its rim (its flat inside is textured in one picture only,
    so it is not compared: counted against the whole box, a label's rim filled 0.29 of
    it), and recompression adds a cell or two anywhere: a box around every disagreeing
    cell would stretch to those. Cells within two of each other join one block (a gap
    of a cell bridged); the block with the most cells is the main one. Only a pair that
    may be a copy (`near`) needs the blocks; otherwise the box is around every cell."""
    rows, cols = np.nonzero(bad)
    if not rows.size:
        return 0.0, 0.0, 0, None
    if near and rows.size > 1:
        joined = (np.abs(rows[:, None] - rows[None, :]) <= 2) & (
            np.abs(cols[:, None] - cols[None, :]) <= 2
        )
        label = np.arange(rows.size)
        while True:  # each cell takes the smallest label among its neighbours
            smaller = np.where(joined, label[None, :], rows.size).min(axis=1)
            smaller = smaller[smaller]
            if (smaller == label).all():
                break
            label = smaller
        main = label == np.bincount(label).argmax()
        stray = int(rows.size - main.sum())
        rows, cols = rows[main], cols[main]
    else:
        stray = 0
    top, bottom, left, right = int(rows.min()), int(rows.max()), int(cols.min()), int(cols.max())
    area = (bottom - top + 1) * (right - left + 1)
    box = (top, bottom, left, right) if near else None
    inside = int(compared[top : bottom + 1, left : right + 1].sum())
    return float(area / bad.size), float(rows.size / max(inside, 1)), stray, box
