"""Where the photo is inside a screenshot: a chat's image bubble, a gallery viewer.

A screenshot of a photo is a copy of it only where it shows the photo: the
fingerprint hashes the photo's box as a region of its own (fingerprint.PHOTO and
PHOTO_TIGHT), and verification lines the two up on it (align.Picture.photos).
Everything here works on a grey picture reduced to fingerprint.BASE_SIDE (or on a
file read again at 512 px), in pixels of that picture.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable
from functools import partial

import numpy as np
from PIL import Image

PHOTO_READINGS = ("wide", "tight", "trimmed")  # see photo_boxes
SCREEN_SHAPE = 1.7  # a picture this much longer than wide (or wider than long) may be a screen
PHOTO_TEXTURE = 1.0  # a block of a screenshot whose grey levels vary more: part of a photo
PHOTO_AREA = (0.08, 0.85)  # a photo inside a screenshot covers this much of it
PHOTO_SEED = 0.01  # the textured rectangle it grows from covers at least this much
FLAT_LINE = 0.5  # a line of a screenshot varying less (and like the next): not photo
FLAT_TONE = 2.0  # grey levels from a line's median that count as its background...
FLAT_SHARE = 0.7  # ...when this much of the line is that close to it (photo_boxes)
MARGIN_FLAT = 2 * FLAT_TONE  # grey levels a flat margin's pixels spread over (JPEG noise)
EDGE_STEP = MARGIN_FLAT  # a step between lines smaller than such noise is no edge
GAP_TEXTURED = 0.25  # a line of blocks this little textured across a photo's box: a gap
PHOTO_SAME = 0.9  # two readings overlapping this much (IoU) are one box


def screen_shaped(width: int, height: int) -> bool:
    """Whether a picture of this size may be a screen (a phone's, a monitor's)."""
    return max(width, height) >= SCREEN_SHAPE * min(width, height)


def photo_boxes(img: Image.Image) -> list[tuple[int, int, int, int]]:
    """The photo inside a screenshot, as one box or up to three readings of where its
    edges are, the widest first. Empty when `img` is not screen-shaped or shows no
    photo.

    A screen's own parts are flat (backgrounds, bars, bubbles) or thin (a line of
    text, an icon); a photo is a large block of continuous tone. Blocks of the picture
    are called textured when their grey levels vary at all, a block counts when most
    of its neighbourhood is textured (small flat patches of the photo count, specks of
    text do not), and the largest rectangle of such blocks, grown to where the photo
    ends, is the photo. Where it ends is the unsure part: a line that is mostly one
    tone may be a text bubble's background (the photo ended) or a sky (it goes on),
    and the rectangle itself may take in the text bubbles next to the photo. The wide
    reading takes a line for photo if it varies at all; the tight one not if it is
    mostly one tone that stays the same from line to line; the trimmed one not if it
    is mostly on two tones (a bubble beside the wallpaper), and also cuts such lines
    off the rectangle. Readings that agree (PHOTO_SAME) are one box. A copy of the
    photo is searched for, and verified, at each: on the bench's chat screenshots the
    wide reading alone found 0.44 of them, the three 0.69 (0.77 with the lookup's
    slack, candidates.PHOTO_SLACK, and verification's tries in the photo's shape,
    align.Picture.photo_starts), gallery screenshots 0.95 -> 0.97 (benchmarks/trust.py,
    seeds 1-3).
    """
    w, h = img.size
    if not screen_shaped(w, h):
        return []  # photos are 4:3, 3:2, 16:9 at most; screens are taller
    block = max(2, max(w, h) // 64)
    by, bx = h // block, w // block
    if by < 8 or bx < 4:
        return []
    a = np.asarray(img, dtype=np.float32)[: by * block, : bx * block]
    textured = a.reshape(by, block, bx, block).std(axis=(1, 3)) > PHOTO_TEXTURE
    padded = np.pad(textured.astype(np.int8), 1)
    around = sum(padded[dy : dy + by, dx : dx + bx] for dy in range(3) for dx in range(3))
    top, left, bottom, right = _split(textured, _largest_rectangle(around >= 5))
    if (bottom - top) * (right - left) < PHOTO_SEED * by * bx:
        return []  # nothing like a photo
    found: list[tuple[int, int, int, int]] = []
    lines = _Lines(a)
    for reading in PHOTO_READINGS:
        box = _grown(lines, (left * block, top * block, right * block, bottom * block), reading)
        x0, y0, x1, y1 = _snapped(a, box, 3 * block)
        area = (x1 - x0) * (y1 - y0)
        if area < PHOTO_AREA[0] * a.size or area > PHOTO_AREA[1] * a.size:
            continue  # a line of text, or the screen is the photo
        if all(_overlap(b, (x0, y0, x1, y1)) < PHOTO_SAME for b in found):
            found.append((x0, y0, x1, y1))
    return found


def _split(textured: np.ndarray, rect: tuple[int, int, int, int]) -> tuple[int, int, int, int]:
    """The larger part of the textured rectangle (top, left, bottom, right, in blocks)
    on either side of a line of blocks nearly flat across it (a time stamp in a
    bubble's corner is textured). Counting a flat block with textured ones around it
    keeps a photo's small flat patches, but also bridges the gap between a photo and
    the text bubble beneath it; inside a photo, a band flat from side to side is
    rare."""
    top, left, bottom, right = rect
    for _ in range(2):  # across, then down the part kept
        if bottom <= top or right <= left:
            break
        block = textured[top:bottom, left:right]
        top, bottom = _widest_run(block.mean(axis=1) > GAP_TEXTURED, top)
        block = textured[top:bottom, left:right]
        left, right = _widest_run(block.mean(axis=0) > GAP_TEXTURED, left)
    return top, left, bottom, right


def _widest_run(kept: np.ndarray, start: int) -> tuple[int, int]:
    """(first, end) of the longest run of True in `kept`, numbered from `start`."""
    edges = [-1, *np.flatnonzero(~kept).tolist(), len(kept)]
    lo, hi = max(itertools.pairwise(edges), key=lambda e: e[1] - e[0])
    return start + lo + 1, start + hi


def _background(counts: np.ndarray, running: np.ndarray, reading: str) -> bool:
    """Whether a line (its grey levels counted, and those counts summed up to each
    level) looks like a screen's background with letters on it: most of it
    (FLAT_SHARE) within FLAT_TONE of its median ("tight"), or of its two commonest grey
    levels ("trimmed": a bubble beside the wallpaper). A photo's line spreads over many
    levels; a smooth sky drifts over a few, and is still taken for photo when its tone
    changes from line to line."""
    n = int(running[-1])
    if reading == "tight":
        median = _median(running)
        low, high = max(0, math.ceil(median - FLAT_TONE)), math.floor(median + FLAT_TONE)
        close = int(running[min(high, 255)]) - (int(running[low - 1]) if low else 0)
        return close / n >= FLAT_SHARE
    near = np.convolve(counts, np.ones(2 * int(FLAT_TONE) + 1), mode="same")
    first = int(near.argmax())
    covered = near[first]
    near[max(0, first - 2 * int(FLAT_TONE)) : first + 2 * int(FLAT_TONE) + 1] = 0
    return covered + near.max() >= FLAT_SHARE * n


def _overlap(a: tuple[int, int, int, int], b: tuple[int, int, int, int]) -> float:
    """Intersection over union of two boxes."""
    iw = max(0, min(a[2], b[2]) - max(a[0], b[0]))
    ih = max(0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = iw * ih
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union else 0.0


def _grown(
    lines: _Lines, box: tuple[int, int, int, int], reading: str = "wide"
) -> tuple[int, int, int, int]:
    """`box` grown, a line of pixels at a time on each side, while the next line is
    still photo: it varies along its length, or its tone differs from the line beyond
    it (a smooth sky, a gradient). A screen's background or bar is a run of lines of
    one flat tone; that is where the photo ends. `reading` (see photo_boxes): "tight"
    and "trimmed" take a line that looks like a background with letters on it
    (_background) for photo only if its tone changes; "trimmed" also cuts such lines
    off the box."""
    h, w = lines.shape
    left, top, right, bottom = box

    def photo(across: int, i: int, beyond: int, lo: int, hi: int) -> bool:
        """Line `i` from `lo` to `hi` (a row, or a column when `across`) against the
        line `beyond` it."""
        if hi <= lo:
            return False
        if reading != "wide":
            counts = lines.counts(across, i, lo, hi)
            running = counts.cumsum()
            if _background(counts, running, reading):
                theirs = lines.counts(across, beyond, lo, hi).cumsum()
                return abs(_median(running) - _median(theirs)) > FLAT_LINE
        mean, spread = lines.spread(across, i, lo, hi)
        return spread > FLAT_LINE or abs(mean - lines.spread(across, beyond, lo, hi)[0]) > FLAT_LINE

    def cut(left: int, top: int, right: int, bottom: int) -> tuple[int, int, int, int]:
        """Lines off each side while the side's line is not photo."""
        while bottom - top > 2 and top > 0 and not photo(0, top, top - 1, left, right):
            top += 1
        while bottom - top > 2 and bottom < h and not photo(0, bottom - 1, bottom, left, right):
            bottom -= 1
        while right - left > 2 and left > 0 and not photo(1, left, left - 1, top, bottom):
            left += 1
        while right - left > 2 and right < w and not photo(1, right - 1, right, top, bottom):
            right -= 1
        return left, top, right, bottom

    grew = True
    while grew:
        grew = False
        if top > 1 and photo(0, top - 1, top - 2, left, right):
            top, grew = top - 1, True
        if bottom < h - 1 and photo(0, bottom, bottom + 1, left, right):
            bottom, grew = bottom + 1, True
        if left > 1 and photo(1, left - 1, left - 2, top, bottom):
            left, grew = left - 1, True
        if right < w - 1 and photo(1, right, right + 1, top, bottom):
            right, grew = right + 1, True
    if reading == "trimmed":  # the textured blocks may take in text bubbles beside it
        left, top, right, bottom = cut(left, top, right, bottom)
    return (left, top, right, bottom)


def _snapped(a: np.ndarray, box: tuple[int, int, int, int], reach: int) -> tuple[int, ...]:
    """`box` with each edge moved (by up to `reach` + 1 pixels) onto a strong straight
    edge along it with the screen beyond it (a line mostly of one tone): the photo's
    own border, where the blocks only come near, not a horizon inside the photo
    (_strongest). An edge near the picture's border stays there (a photo as wide as
    the screen) unless what lies between is a flat margin (a bubble's edge, the
    wallpaper)."""
    h, w = a.shape
    left, top, right, bottom = box
    for _ in range(2):
        if right - left < 2 or bottom - top < 2:
            break
        span = a[:, left:right]
        rows = np.abs(np.diff(span, axis=0)).mean(axis=1)  # rows[y]: y | y+1
        flat = partial(_one_tone, span)  # rows, looked at only near the edges
        if top > reach or _margin(a[:top, left:right]):
            top = _strongest(rows, top - 1, reach, flat, -1) + 1
        if bottom < h - reach or _margin(a[bottom:, left:right]):
            bottom = _strongest(rows, bottom - 1, reach, flat, 2) + 1
        if bottom - top < 2:
            break
        span = a[top:bottom].T
        cols = np.abs(np.diff(span, axis=0)).mean(axis=1)
        flat = partial(_one_tone, span)
        if left > reach or _margin(a[top:bottom, :left]):
            left = _strongest(cols, left - 1, reach, flat, -1) + 1
        if right < w - reach or _margin(a[top:bottom, right:]):
            right = _strongest(cols, right - 1, reach, flat, 2) + 1
    left, top = max(0, left), max(0, top)
    return (left, top, min(w, max(right, left + 1)), min(h, max(bottom, top + 1)))


def _one_tone(lines: np.ndarray, which: np.ndarray) -> np.ndarray:
    """Whether each of the lines `which` (rows of `lines`) is mostly of one tone, as
    the screen around a photo is (a time stamp or a bubble's rounded corner on it
    aside)."""
    picked = lines[which]
    median = np.median(picked, axis=1, keepdims=True)
    return (np.abs(picked - median) <= FLAT_TONE).mean(axis=1) >= FLAT_SHARE


def _margin(strip: np.ndarray) -> bool:
    """Whether the strip between a box's edge and the picture's border is one flat
    tone (the screen around the photo), not the photo running on to the border: a
    box grown to the border stops a line or two short of it (_grown)."""
    return min(strip.shape) >= 3 and float(strip.std()) <= MARGIN_FLAT


def _strongest(
    steps: np.ndarray, at: int, reach: int, flat: Callable[[np.ndarray], np.ndarray], beyond: int
) -> int:
    """The step within `reach` + 1 of `at` (step i lies between lines i and i + 1)
    where a photo's border most likely is: of the steps whose line `beyond` is `flat`
    (the screen; `flat(lines)` says it for each), the outermost at least half as
    strong as the strongest of them (a horizon under a smooth sky can be the stronger,
    and lies inside); the strongest of all where none is, or none of them is a step of
    a few grey levels."""
    lo, hi = max(0, at - reach - 1), min(len(steps), at + reach + 2)
    if hi <= lo:
        return at
    near = np.arange(lo, hi)
    outside = near + beyond
    inside = (outside >= 0) & (outside <= len(steps))  # len(steps) + 1 lines
    edged = near[inside][flat(outside[inside])] if inside.any() else near[:0]
    if not edged.size or steps[edged].max() < EDGE_STEP:  # no edge there at all
        return int(near[np.argmax(steps[near])])
    strong = edged[steps[edged] >= steps[edged].max() / 2]
    return int(strong.min() if beyond < 0 else strong.max())


def _largest_rectangle(mask: np.ndarray) -> tuple[int, int, int, int]:
    """(top, left, bottom, right) of the largest all-true rectangle of a 2-D mask, by
    the histogram-and-stack method: one pass over the rows."""
    rows, cols = mask.shape
    heights = np.zeros(cols, dtype=np.int32)
    best = (0, 0, 0, 0, 0)
    for r in range(rows):
        heights = np.where(mask[r], heights + 1, 0)
        stack: list[tuple[int, int]] = []
        for c, height in enumerate([*heights.tolist(), 0]):
            start = c
            while stack and stack[-1][1] >= height:
                s, sh = stack.pop()
                if sh * (c - s) > best[0]:
                    best = (sh * (c - s), r - sh + 1, s, r + 1, c)
                start = s
            stack.append((start, height))
    return best[1:]


class _Lines:
    """The rows and columns of a grey picture, for judging stretches of them many
    times over while a box grows a line at a time: sums along each line (the mean and
    spread of any stretch in a few additions, exact on whole grey levels) and the
    picture as bytes (a stretch's grey levels counted in one call)."""

    def __init__(self, a: np.ndarray) -> None:
        self.shape = a.shape
        rows = a.astype(np.uint8)
        cols = np.ascontiguousarray(rows.T)  # sums run fastest along a contiguous line
        self._levels = (rows, cols)
        self._sums = tuple(
            (_running(lines), _running(lines.astype(np.int32) ** 2)) for lines in self._levels
        )

    def spread(self, across: int, i: int, lo: int, hi: int) -> tuple[float, float]:
        """(mean, standard deviation) of line `i` from `lo` to `hi`: a row when
        `across` is 0, a column when 1."""
        sums, squares = self._sums[across]
        n = hi - lo
        total = int(sums[i, hi] - sums[i, lo])
        total2 = int(squares[i, hi] - squares[i, lo])
        return total / n, max(0, n * total2 - total * total) ** 0.5 / n

    def counts(self, across: int, i: int, lo: int, hi: int) -> np.ndarray:
        """How many pixels of the stretch have each grey level."""
        return np.bincount(self._levels[across][i, lo:hi], minlength=256)


def _running(lines: np.ndarray) -> np.ndarray:
    """Sums along each line up to each position, a zero first (exact: at most 255**2 a
    pixel, a few thousand pixels a line)."""
    out = np.zeros((lines.shape[0], lines.shape[1] + 1), dtype=np.int32)
    np.cumsum(lines, axis=1, dtype=np.int32, out=out[:, 1:])
    return out


def _median(running: np.ndarray) -> float:
    """The median grey level of a stretch (as numpy's median), from its counts summed
    up to each level."""
    n = int(running[-1])
    upper = int(running.searchsorted(n // 2, side="right"))
    if n % 2:
        return float(upper)
    return (int(running.searchsorted(n // 2 - 1, side="right")) + upper) / 2
