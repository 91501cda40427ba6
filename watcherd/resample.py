"""Pillow's LANCZOS reduction of greyscale pictures, bit for bit, as matrix products.

A photo is hashed some thirty times: its whole, eleven regions and the trimmed content
shrunk to 32x32, then each of those and their poses shrunk again to 9x8 for dHash. One
`Image.resize` call costs about 0.2 ms, mostly per-call work on tiny pictures, which was
half of a worker's time on a WhatsApp-size photo. Here all the regions of a picture go
through one matrix product per pass instead.

The results are Pillow's to the bit, so the hashes in existing indexes stay valid: the
coefficients are Pillow's (same filter, same order of steps, same rounding to 22-bit
fixed point; see weights), and the two passes run in Pillow 13's order, the first
rounded and clipped to 8 bits before the second. The products are exact in float64
(integers far below 2**53), so BLAS's order of summation cannot change a result. Hashes
are thereby also fixed across Pillow versions: Pillow 13 began running the vertical pass
first for pictures shrunk much more in height than in width, which changed their 32x32
images slightly.
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np

PRECISION_BITS = 22  # Pillow's fixed point for 8-bit images: 32 - 8 - 2
_HALF = float(1 << (PRECISION_BITS - 1))
_ONE = float(1 << PRECISION_BITS)


@lru_cache(maxsize=512)
def weights(in_size: int, out_size: int) -> np.ndarray:
    """(out_size, in_size) matrix of the integer coefficients Pillow uses to shrink
    `in_size` pixels to `out_size` (its precompute_coeffs and normalize_coeffs_8bpc).

    Every tap of every output pixel at once, each step in the C code's order: the
    truncated sinc as a product of its two factors, the taps summed one after another
    (a running sum), then normalised and rounded to fixed point. numpy's `sin` is not
    libm's to the last bit, but its coefficients here came out identical to a
    libm-based loop for every size up to 1024 (and the tests compare with Pillow's own
    resize); this is five times quicker, and a worker meets a hundred sizes or more.
    """
    scale = in_size / out_size
    filterscale = max(scale, 1.0)
    support = 3.0 * filterscale
    ss = 1.0 / filterscale
    centers = (np.arange(out_size) + 0.5) * scale
    xmin = np.maximum((centers - support + 0.5).astype(np.int64), 0)  # int(): toward zero
    xmax = np.minimum((centers + support + 0.5).astype(np.int64), in_size)
    taps = xmin[:, None] + np.arange(int((xmax - xmin).max()))
    used = taps < xmax[:, None]
    x = (taps - centers[:, None] + 0.5) * ss
    w = np.ones_like(x)
    for v in (x, x / 3):  # Pillow's lanczos: sinc(x) * sinc(x / 3)
        angle = v * math.pi
        with np.errstate(invalid="ignore", divide="ignore"):
            w *= np.where(v != 0.0, np.sin(angle) / angle, 1.0)
    w[(x < -3.0) | (x >= 3.0) | ~used] = 0.0
    total = np.add.accumulate(w, axis=1)[:, -1:]  # summed in order, as the C loop does
    w = np.divide(w, total, out=w, where=total != 0.0)
    coefficients = np.trunc(w * _ONE + np.where(w >= 0, 0.5, -0.5))
    matrix = np.zeros((out_size, in_size))
    rows = np.broadcast_to(np.arange(out_size)[:, None], taps.shape)
    matrix[rows[used], taps[used]] = coefficients[used]
    matrix.setflags(write=False)
    return matrix


def warm(max_side: int, side: int) -> None:
    """Work out ahead of use the weights for shrinking every size up to `max_side` to
    `side`, and `side` to the 9x8 of dHash.

    Done in the process a short-lived command forks its workers from (see
    watcherd.preload), while the command itself is still starting: each worker then
    starts with all of them. Otherwise every worker works out its own as it meets new
    sizes, and a first scan of phone pictures meets some 150 per worker (every region of
    every aspect ratio). All 256 sizes take about 30 ms.
    """
    for n in range(1, max_side + 1):
        weights(n, side)
    weights(side, 9)
    weights(side, 8)


def _round(sums: np.ndarray) -> np.ndarray:
    """Pillow's clip8: add half, shift right (floor), clamp to 0..255. In place: `sums`
    is always a fresh product."""
    sums += _HALF
    sums *= 1.0 / _ONE  # a power of two: exact
    np.floor(sums, out=sums)
    return np.clip(sums, 0, 255, out=sums)


def vertical_first(in_w: int, in_h: int, out_w: int, out_h: int) -> bool:
    """Pillow 13's choice: shrink the height first when it shrinks more than twice as
    much as the width (in pixels), to make the second pass cheaper."""
    return in_h - out_h > 0 and in_h - out_h > (in_w - out_w) * 2


def shrink_boxes(
    pixels: np.ndarray, boxes: list[tuple[int, int, int, int]], side: int
) -> np.ndarray:
    """`Image.crop(box).resize((side, side), LANCZOS)` of an L picture for every box.

    `pixels` is the picture as a (height, width) array of 0..255; boxes lie inside it.
    Returns an (n, side, side) float64 array of 0..255 integers.
    """
    out = np.empty((len(boxes), side, side))
    pixels = np.asarray(pixels, dtype=np.float64)
    batch = []
    for n, (left, top, right, bottom) in enumerate(boxes):
        if vertical_first(right - left, bottom - top, side, side):  # tall, narrow boxes
            out[n] = shrink_many(pixels[top:bottom, left:right], side, side)
        else:
            batch.append(n)
    if not batch:
        return out
    # Horizontal pass: once per distinct span of columns (boxes over the same columns
    # share it), over only those columns and the rows its boxes cover. One product over
    # the whole width for all spans at once was twice as slow: the weights are a narrow
    # band, and most of that product multiplied zeros.
    spans: dict[tuple[int, int], tuple[int, int]] = {}
    for n in batch:
        left, top, right, bottom = boxes[n]
        lo, hi = spans.get((left, right), (top, bottom))
        spans[left, right] = (min(lo, top), max(hi, bottom))
    across = {
        (left, right): (lo, _round(pixels[lo:hi, left:right] @ weights(right - left, side).T))
        for (left, right), (lo, hi) in spans.items()
    }
    # Vertical pass: each box's rows of its span, shrunk to `side` rows.
    down = np.empty((len(batch), side, side))
    for j, n in enumerate(batch):
        left, top, right, bottom = boxes[n]
        lo, shrunk = across[left, right]
        np.matmul(weights(bottom - top, side), shrunk[top - lo : bottom - lo], out=down[j])
    out[batch] = _round(down)
    return out


def shrink_many(images: np.ndarray, width: int, height: int) -> np.ndarray:
    """`Image.resize((width, height), LANCZOS)` of an L picture ((h, w) array of 0..255
    integers) or of each of a stack of equal-size ones ((n, h, w)); returns (height,
    width) or (n, height, width). Both passes run in Pillow's order."""
    h, w = images.shape[-2:]
    across, down = weights(w, width).T, weights(h, height)
    if vertical_first(w, h, width, height):
        return _round(_round(down @ images) @ across)
    return _round(down @ _round(images @ across))
