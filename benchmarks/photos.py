"""Real photos for the benchmarks, as an endless stream of pictures to make files of."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

from PIL import Image, ImageOps

EXTS = {".jpg", ".jpeg", ".png", ".webp"}


def upright(photos: Path, min_side: int = 0) -> Iterator[tuple[int, Image.Image]]:
    """(variant, picture): every readable photo under `photos` at least `min_side` pixels
    on its short side, upright and in RGB; then all of them again with the next variant
    number, for as long as the caller takes them (it alters each variant so that no two
    files it makes are the same)."""
    sources = sorted(p for p in photos.rglob("*") if p.suffix.lower() in EXTS)
    variant = 0
    while True:
        given = 0
        for src in sources:
            try:
                with Image.open(src) as im:
                    img = ImageOps.exif_transpose(im).convert("RGB")
            except Exception:
                continue
            if min(img.size) >= min_side:
                given += 1
                yield variant, img
        if not given:
            sys.exit(f"no usable photos under {photos}")
        variant += 1
