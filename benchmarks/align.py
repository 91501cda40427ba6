"""How well two pictures line up, pixel for pixel: a check on a benchmark label.

    python benchmarks/align.py A B [C D ...]      (pairs of image files)
    python benchmarks/align.py --groups ../shared/bench
                      (every natural copy against its group's first member)

A copy of a picture (re-encoded, scaled, cropped, recoloured) lines up with it exactly:
once the best scale and shift are found, every part of one matches the same part of
the other. Two photographs of one scene taken apart (a re-shot, another day from the
same viewpoint) line up only roughly: parallax, moving clouds, people and light leave
parts that disagree. This script finds the best upright alignment (scale 0.2-5,
any shift; both pictures at 256 px, grey, histogram-free normalised cross-correlation)
and prints:

- corr: the correlation of the aligned pictures' overlap (1.0 = identical up to
  brightness and contrast);
- blocks: the same correlation in each cell of a 4x4 grid over the overlap, textured
  cells only (min / median): a copy agrees everywhere, a re-shot does not.

It is how the one natural "copy" in ../shared/bench/groups.tsv that the accuracy
benchmark treats as a different photo was judged (accuracy.py, DISPUTED). It only
prints figures; it is not part of watcherd, which never sees more than hashes and a
128 px thumbnail of an indexed picture.
"""

from __future__ import annotations

import csv
import sys
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

SIDE = 256
SCALES = np.exp(np.linspace(np.log(0.2), np.log(5.0), 121))
MARGIN = 0.1  # the template is the centre 80% of the scaled picture
GRID = 4
TEXTURED = 4.0  # a cell whose grey levels vary less than this says nothing


def load(path: Path, side: int = SIDE) -> np.ndarray:
    with Image.open(path) as im:
        grey = ImageOps.exif_transpose(im).convert("L")
    grey.thumbnail((side, side), Image.Resampling.LANCZOS)
    return np.asarray(grey, dtype=np.float64)


def scaled(pixels: np.ndarray, scale: float) -> np.ndarray:
    h, w = pixels.shape
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    im = Image.fromarray(pixels.astype(np.uint8)).resize(size, Image.Resampling.BILINEAR)
    return np.asarray(im, dtype=np.float64)


def ncc_map(image: np.ndarray, template: np.ndarray) -> np.ndarray | None:
    """Normalised cross-correlation of `template` at every position wholly inside
    `image` (FFT for the products, summed-area tables for each window's variance)."""
    H, W = image.shape
    th, tw = template.shape
    t0 = template - template.mean()
    tnorm = np.sqrt((t0 * t0).sum())
    if tnorm < 1e-6:
        return None
    shape = (H + th, W + tw)
    prod = np.fft.rfft2(image, shape) * np.fft.rfft2(t0[::-1, ::-1], shape)
    corr = np.fft.irfft2(prod, shape)[th - 1 : H, tw - 1 : W]

    def windows(x: np.ndarray) -> np.ndarray:
        s = np.pad(x, ((1, 0), (1, 0))).cumsum(0).cumsum(1)
        return s[th:, tw:] - s[:-th, tw:] - s[th:, :-tw] + s[:-th, :-tw]

    var = windows(image * image) - windows(image) ** 2 / (th * tw)
    return corr / (np.sqrt(np.maximum(var, 1e-9)) * tnorm)


def locate(big: np.ndarray, small: np.ndarray) -> tuple[float, float, int, int]:
    """(corr, scale, x, y): where `small`, scaled, sits best inside `big`."""
    best = (-1.0, 1.0, 0, 0)
    for s in SCALES:
        rs = scaled(small, s)
        h, w = rs.shape
        mx, my = round(w * MARGIN), round(h * MARGIN)
        tpl = rs[my : h - my, mx : w - mx]
        if min(tpl.shape) < 16 or tpl.shape[0] > big.shape[0] or tpl.shape[1] > big.shape[1]:
            continue
        m = ncc_map(big, tpl)
        if m is None:
            continue
        y, x = np.unravel_index(np.argmax(m), m.shape)
        if m[y, x] > best[0]:
            best = (float(m[y, x]), float(s), int(x) - mx, int(y) - my)
    return best


def blocks(big: np.ndarray, small: np.ndarray, scale: float, x: int, y: int) -> list[float]:
    """Correlation in each textured cell of a GRID x GRID split of the overlap."""
    rs = scaled(small, scale)
    h, w = rs.shape
    x0, y0 = max(x, 0), max(y, 0)
    x1, y1 = min(x + w, big.shape[1]), min(y + h, big.shape[0])
    a, b = big[y0:y1, x0:x1], rs[y0 - y : y1 - y, x0 - x : x1 - x]
    H, W = a.shape
    out = []
    for i in range(GRID):
        for j in range(GRID):
            rows = slice(i * H // GRID, (i + 1) * H // GRID)
            cell = (rows, slice(j * W // GRID, (j + 1) * W // GRID))
            ca, cb = a[cell] - a[cell].mean(), b[cell] - b[cell].mean()
            sa, sb = np.sqrt((ca * ca).mean()), np.sqrt((cb * cb).mean())
            if sa >= TEXTURED and sb >= TEXTURED:
                out.append(float((ca * cb).mean() / (sa * sb)))
    return out


def align(a: Path, b: Path) -> dict:
    pa, pb = load(a), load(b)
    found = [(locate(big, small), big, small) for big, small in ((pa, pb), (pb, pa))]
    (corr, scale, x, y), big, small = max(found, key=lambda f: f[0][0])
    cells = blocks(big, small, scale, x, y)
    return {
        "corr": corr,
        "scale": scale,
        "blocks_min": min(cells, default=float("nan")),
        "blocks_median": float(np.median(cells)) if cells else float("nan"),
        "cells": len(cells),
    }


def group_pairs(bench: Path) -> list[str]:
    """Each natural copy in groups.tsv after its group's first member (sorted by path),
    as accuracy.py places them. Turned, mirrored or stretched copies do not line up
    upright: this check is for the others."""
    with open(bench / "groups.tsv", newline="") as fh:
        rows = [r for r in csv.DictReader(fh, delimiter="\t") if r["kind"] == "copy"]
    groups: dict[str, list[str]] = {}
    for r in rows:
        groups.setdefault(r["group_id"], []).append(r["path"])
    photos = bench / "photos"
    out = []
    for members in groups.values():
        first, *rest = sorted(members)
        for rel in rest:
            out += [str(photos / first), str(photos / rel)]
    return out


def main(argv: list[str]) -> int:
    if argv[:1] == ["--groups"] and len(argv) == 2:
        argv = group_pairs(Path(argv[1]))
    if len(argv) < 2 or len(argv) % 2:
        print(__doc__, file=sys.stderr)
        return 2
    for a, b in zip(argv[::2], argv[1::2], strict=True):
        r = align(Path(a), Path(b))
        print(
            f"corr {r['corr']:.3f}  scale {r['scale']:.2f}  blocks min {r['blocks_min']:.2f} "
            f"median {r['blocks_median']:.2f} ({r['cells']} cells)  {Path(a).name} ~ {Path(b).name}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
