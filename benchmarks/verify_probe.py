"""Probe for issue 23: how well would a pixel check on the stored 128 px thumbnails
tell copies from different pictures that the hashes link?

    python benchmarks/verify_probe.py [--bench ../shared/bench] [--workdir /tmp/wd-probe]

Not part of watcherd yet: a measurement to choose the verification stage with. It
scans three folders with watcherd as it is, and for every `near` decision compares the
two pictures' stored thumbnails: grey, aligned by the decision's pose (or, for a crop,
the best of the region boxes watcherd hashes, either way round), at 64x64, in an 8x8
grid of cells. A cell is textured when its grey levels vary (std > 4); for cells
textured in both pictures it computes the normalised cross-correlation, and counts
the cells that disagree (< 0.6). It prints, for a few acceptance rules (mean cell
correlation at least C, disagreeing cells at most F of the textured ones, at least T
textured cells in each picture), how many links would stand:

- positives: 30 everyday photos and every generated copy kind of benchmarks/accuracy.py
  plus a round sticker of 8% of the area at a random place;
- deep-sky photos (none a copy of another) and the video frames (only the 13 labelled
  bursts are copies), the sets benchmarks/trust.py counts false links on.
"""

from __future__ import annotations

import argparse
import csv
import io
import random
import re
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from watcherd.fingerprint import REGIONS, SQUARES

HERE = Path(__file__).resolve().parent
DEFAULT_BENCH = HERE.parent.parent / "shared" / "bench"


SIDE = 64
CELL = 8
POSES = {
    "identity": None,
    "mirror": Image.Transpose.FLIP_LEFT_RIGHT,
    "rotate90": Image.Transpose.ROTATE_90,
    "rotate180": Image.Transpose.ROTATE_180,
    "rotate270": Image.Transpose.ROTATE_270,
    "flip": Image.Transpose.FLIP_TOP_BOTTOM,
    "transpose": Image.Transpose.TRANSPOSE,
    "transverse": Image.Transpose.TRANSVERSE,
}


def grey(jpeg):
    return Image.open(io.BytesIO(jpeg)).convert("L")


def boxes(w, h):
    out = [(0, 0, w, h)]
    for left, top, right, bottom in REGIONS.values():
        out.append((left * w, top * h, right * w, bottom * h))
    s = min(w, h)
    for f in SQUARES.values():
        side = s * f
        out.append(((w - side) / 2, (h - side) / 2, (w + side) / 2, (h + side) / 2))
    if w / h > 16 / 9:
        nw = h * 16 / 9
        out.append(((w - nw) / 2, 0, (w + nw) / 2, h))
    else:
        nh = w * 9 / 16
        out.append((0, (h - nh) / 2, w, (h + nh) / 2))
    return out


def small(img, box=None):
    if box is not None:
        img = img.crop(tuple(round(v) for v in box))
    return np.asarray(img.resize((SIDE, SIDE), Image.Resampling.BILINEAR), dtype=np.float64)


def compare(x, y):
    gx = (x - x.mean()) / (x.std() + 1e-6)
    gy = (y - y.mean()) / (y.std() + 1e-6)
    corr = float((gx * gy).mean())
    n = SIDE // CELL
    cx = x.reshape(n, CELL, n, CELL).transpose(0, 2, 1, 3).reshape(n * n, -1)
    cy = y.reshape(n, CELL, n, CELL).transpose(0, 2, 1, 3).reshape(n * n, -1)
    sx, sy = cx.std(1), cy.std(1)
    tx, ty = sx > 4, sy > 4
    both = tx & ty
    dx = cx - cx.mean(1, keepdims=True)
    dy = cy - cy.mean(1, keepdims=True)
    ncc = (dx * dy).sum(1) / (np.sqrt((dx * dx).sum(1) * (dy * dy).sum(1)) + 1e-9)
    changed = int((both & (ncc < 0.6)).sum())
    corr = float(ncc[both].mean()) if both.any() else 0.0
    overlay = int((tx ^ ty).sum())
    return dict(
        corr=corr,
        textured=int(both.sum()),
        changed=changed,
        overlay=overlay,
        texx=int(tx.sum()),
        texy=int(ty.sum()),
    )


def verify(a_jpeg, b_jpeg, transform):
    """a: redundant, b: kept; transform turns a into b."""
    a, b = grey(a_jpeg), grey(b_jpeg)
    results = []
    if transform is None or transform in POSES:
        inverse = {"rotate90": "rotate270", "rotate270": "rotate90"}
        t = POSES.get(inverse.get(transform, transform or "identity"))
        a2 = a.transpose(t) if t is not None else a
        results.append(compare(small(a2), small(b)))
    else:
        for bx in boxes(*a.size):
            results.append(compare(small(a, bx), small(b)))
        for bx in boxes(*b.size):
            results.append(compare(small(a), small(b, bx)))
    return max(results, key=lambda r: r["corr"] - 0.05 * r["changed"])


def decisions(folder, db):
    from sqlalchemy import select

    from watcherd.config import Config
    from watcherd.index import Index
    from watcherd.models import Decision, File
    from watcherd.scanner import scan

    db.unlink(missing_ok=True)
    out = []
    with Index(db, writer=True) as index:
        scan([folder], Config(), index)
        paths = dict(index.session.execute(select(File.id, File.path)).all())
        rows = index.session.execute(
            select(Decision.file_id, Decision.original_id, Decision.kind, Decision.transform).where(
                Decision.current.is_(True)
            )
        ).all()
        thumbs = index.thumbnails(list(paths))
        for a, b, kind, tr in rows:
            if kind != "near":
                continue
            if a not in thumbs or b not in thumbs:
                continue
            m = verify(thumbs[a], thumbs[b], tr)
            out.append((paths[a], paths[b], tr, m))
    return out


def sticker(img, rng):
    img = img.copy()
    d = ImageDraw.Draw(img)
    w, h = img.size
    r = int((0.08 * w * h / 3.14) ** 0.5)
    x, y = rng.randrange(r, w - r), rng.randrange(r, h - r)
    d.ellipse((x - r, y - r, x + r, y + r), fill=tuple(rng.randrange(256) for _ in range(3)))
    return img


def positives(bench: Path, folder: Path) -> None:
    sys.path.insert(0, str(HERE))
    from accuracy import KINDS, make_copy

    photos = bench / "photos"
    with open(bench / "manifest.tsv", newline="") as fh:
        manifest = list(csv.DictReader(fh, delimiter="\t"))
    skip = ("nebulae", "video-frames")
    srcs = [photos / r["path"] for r in manifest
            if r.get("role") == "photo" and not any(s in r["path"] for s in skip)]  # fmt: skip
    rng = random.Random(1)
    rng.shuffle(srcs)
    folder.mkdir(parents=True)
    for i, src in enumerate(srcs[:30]):
        shutil.copyfile(src, folder / f"o{i:03d}{src.suffix}")
        for kind in KINDS:
            if kind != "byte":
                make_copy(src, kind, folder / f"o{i:03d}_{kind}")
        with Image.open(src) as im:
            sticker(im.convert("RGB"), rng).save(folder / f"o{i:03d}_sticker.jpg", quality=85)


def group(path: str) -> str:
    m = re.match(r"(o\d+)", Path(path).name)
    return m.group(1) if m else path


def accepted(m: dict, corr: float, changed: float, textured: int) -> bool:
    if m["texx"] < textured or m["texy"] < textured or m["corr"] < corr:
        return False
    return m["changed"] <= max(1, changed * m["textured"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bench", type=Path, default=DEFAULT_BENCH)
    parser.add_argument("--workdir", type=Path)
    args = parser.parse_args()
    work = args.workdir or Path(tempfile.mkdtemp(prefix="wd-probe-"))
    shutil.rmtree(work, ignore_errors=True)
    positives(args.bench, work / "pos")
    sets = {
        "copies (positives)": [r for r in decisions(work / "pos", work / "pos.sqlite3")
                               if group(r[0]) == group(r[1])],
        "deep-sky (all false)": decisions(
            args.bench / "photos" / "debian-stellarium-nebulae", work / "sky.sqlite3"),
        "video frames (mostly false)": decisions(
            args.bench / "photos" / "video-frames", work / "frames.sqlite3"),
    }  # fmt: skip
    print("links standing under each rule (corr C, changed F, textured T):")
    for rule in [(0.85, 0.1, 4), (0.8, 0.15, 4), (0.9, 0.1, 4), (0.75, 0.2, 4), (0.8, 0.1, 6)]:
        stands = {name: sum(accepted(m, *rule) for *_, m in rows) for name, rows in sets.items()}
        figures = ", ".join(f"{name} {n}/{len(sets[name])}" for name, n in stands.items())
        print(f"  C={rule[0]} F={rule[1]} T={rule[2]}: {figures}")


if __name__ == "__main__":
    main()
