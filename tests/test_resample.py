"""The numpy resampler and the batched hashing must give Pillow's and ImageHash's bits:
indexes hold hashes made the Pillow way, and a newcomer hashed differently would drift
from its indexed copies."""

import math
import random

import imagehash
import numpy as np
import PIL
import pytest
from helpers import busy_photo, photo
from PIL import Image, ImageOps, ImageStat

from watcherd import fingerprint, resample

LANCZOS = Image.Resampling.LANCZOS
# Pillow 13 began shrinking tall, narrow pictures height first; ours does the same.
PILLOW_13 = int(PIL.__version__.split(".")[0]) >= 13


def random_boxes(rng: random.Random, w: int, h: int, n: int) -> list[tuple[int, int, int, int]]:
    boxes = []
    for _ in range(n):
        left = rng.randrange(0, w - 8)
        top = rng.randrange(0, h - 8)
        boxes.append((left, top, rng.randrange(left + 8, w + 1), rng.randrange(top + 8, h + 1)))
    return boxes


@pytest.mark.skipif(not PILLOW_13, reason="Pillow before 13 orders its passes differently")
@pytest.mark.parametrize("size", [(256, 192), (192, 256), (256, 60), (40, 256), (31, 30)])
def test_shrinking_boxes_gives_pillows_pixels(size):
    rng = random.Random(size[0] * 1000 + size[1])
    base = busy_photo(size[0], size).convert("L")
    pixels = np.asarray(base)
    boxes = [(0, 0, *size), *random_boxes(rng, *size, 40)]
    got = resample.shrink_boxes(pixels, boxes, 32)
    mismatched = [
        box
        for box, small in zip(boxes, got, strict=True)
        if not np.array_equal(small, np.asarray(base.crop(box).resize((32, 32), LANCZOS)))
    ]
    assert mismatched == []


@pytest.mark.skipif(not PILLOW_13, reason="Pillow before 13 orders its passes differently")
def test_both_pass_orders_occur_and_match_pillow():
    rng = np.random.default_rng(5)
    orders = set()
    for w, h in [(40, 200), (200, 40), (20, 90), (90, 20), (33, 35), (35, 41), (120, 120)]:
        stack = rng.integers(0, 256, (3, h, w)).astype(np.float64)
        got = resample.shrink_many(stack, 9, 8)
        orders.add(resample.vertical_first(w, h, 9, 8))
        for img, small in zip(stack, got, strict=True):
            expected = Image.fromarray(img.astype(np.uint8)).resize((9, 8), LANCZOS)
            assert np.array_equal(small, np.asarray(expected)), (w, h)
    assert orders == {True, False}


def test_poses_are_pillows_transpositions():
    small = np.asarray(photo(4, (32, 32)).convert("L"))
    img = Image.fromarray(small)
    got = fingerprint.poses(small)
    for (name, method), pose in zip(fingerprint.TRANSFORMS, got, strict=True):
        expected = img if method is None else img.transpose(method)
        assert np.array_equal(pose, np.asarray(expected)), name


def reference_hashes(base: Image.Image) -> fingerprint.PictureHashes:
    """The hashes the straightforward way: crop, ImageStat, Pillow resize, ImageHash."""

    def both(img: Image.Image) -> tuple[int, int]:
        return int(str(imagehash.phash(img)), 16), int(str(imagehash.dhash(img)), 16)

    def posed(img: Image.Image) -> tuple[tuple[int, int], ...]:
        small = img.resize((32, 32), LANCZOS)
        return tuple(
            both(small if method is None else small.transpose(method))
            for _, method in fingerprint.TRANSFORMS
        )

    regions, content = [], ()
    for rid, box in fingerprint.region_boxes(base).items():
        part = base.crop(box)
        if part.width < 8 or part.height < 8 or ImageStat.Stat(part).stddev[0] < 6.0:
            continue
        regions.append((rid, *both(part.resize((32, 32), LANCZOS))))
        if rid == fingerprint.CONTENT:
            content = posed(part)
    return fingerprint.PictureHashes(posed(base), tuple(regions), content)


def framed(seed: int) -> Image.Image:
    """A photo letterboxed in black, with a white square in one corner of the picture
    (a flat region), so that every kind of region is taken or left out."""
    img = photo(seed, (200, 120))
    img.paste((255, 255, 255), (0, 0, 90, 70))
    return ImageOps.expand(img, border=(0, 30), fill=(0, 0, 0))


@pytest.mark.skipif(not PILLOW_13, reason="Pillow before 13 orders its passes differently")
@pytest.mark.parametrize(
    "picture",
    [
        lambda: photo(1, (256, 192)).convert("L"),
        lambda: busy_photo(2, (144, 256)).convert("L"),
        lambda: framed(3).convert("L"),
        lambda: photo(4, (70, 256)).convert("L"),  # tall and narrow: shrunk height first
        lambda: Image.new("L", (120, 90), 128),  # flat all over: no regions
    ],
)
def test_picture_hashes_are_the_straightforward_ones(picture):
    base = picture()
    got = fingerprint.picture_hashes(base)
    assert got == reference_hashes(base)


def test_flatness_is_imagestat_standard_deviation():
    rng = random.Random(9)
    base = photo(6, (200, 150)).convert("L")
    base.paste(40, (10, 10, 120, 90))  # a flat patch, so some boxes fall under the limit
    boxes = random_boxes(rng, 200, 150, 200)
    got = fingerprint._flat(np.asarray(base, dtype=np.float64), boxes)
    expected = [ImageStat.Stat(base.crop(b)).stddev[0] < fingerprint.FLAT_STDDEV for b in boxes]
    assert got == expected
    assert True in got and False in got
    assert math.isfinite(ImageStat.Stat(base).stddev[0])


def test_warm_leaves_no_size_for_a_worker_to_work_out():
    """The forkserver of `watcherd scan` works out the weights for every size once
    (watcherd.preload); hashing any picture must then meet none it lacks, or each worker
    works them out again."""
    resample.weights.cache_clear()
    resample.warm(fingerprint.BASE_SIDE, fingerprint.HASH_SIDE)
    warmed = resample.weights.cache_info().currsize
    for size in [(4000, 3000), (1600, 900), (900, 1600), (257, 31), (640, 640), (40, 30)]:
        base = busy_photo(7, size).convert("L")
        if max(base.size) > fingerprint.BASE_SIDE:  # as decode_small reduces it
            base = base.reduce(math.ceil(max(base.size) / fingerprint.BASE_SIDE))
        fingerprint.picture_hashes(base)
    info = resample.weights.cache_info()
    assert (info.currsize, info.misses) == (warmed, warmed)


def _pillow_coefficients(in_size: int, out_size: int) -> np.ndarray:
    """Pillow's precompute_coeffs and normalize_coeffs_8bpc transcribed loop for loop,
    with libm's sin (math.sin): the reference for resample.weights."""

    def lanczos(x: float) -> float:
        if not -3.0 <= x < 3.0:
            return 0.0
        out = 1.0
        for v in (x, x / 3):
            if v != 0.0:
                v = v * math.pi
                out *= math.sin(v) / v
        return out

    scale = in_size / out_size
    support, ss = 3.0 * max(scale, 1.0), 1.0 / max(scale, 1.0)
    matrix = np.zeros((out_size, in_size))
    for xx in range(out_size):
        center = (xx + 0.5) * scale
        xmin = max(int(center - support + 0.5), 0)
        xmax = min(int(center + support + 0.5), in_size)
        ws = [lanczos((x - center + 0.5) * ss) for x in range(xmin, xmax)]
        total = 0.0
        for w in ws:
            total += w
        for x, w in zip(range(xmin, xmax), ws, strict=True):
            w = w / total if total != 0.0 else w
            matrix[xx, x] = int(w * (1 << resample.PRECISION_BITS) + (0.5 if w >= 0 else -0.5))
    return matrix


def test_weights_are_pillows_coefficients_for_every_size_hashing_meets():
    """numpy's sin is not libm's to the last bit: the rounding to fixed point must
    absorb the difference for every size a picture's hashing can meet (up to
    BASE_SIDE, to 32, then 32 to dHash's 9 and 8), and for some beyond them."""
    pairs = [(n, fingerprint.HASH_SIDE) for n in range(1, 2 * fingerprint.BASE_SIDE + 1)]
    pairs += [(fingerprint.HASH_SIDE, 9), (fingerprint.HASH_SIDE, 8), (1600, 32), (7, 9)]
    differ = [
        (n, out)
        for n, out in pairs
        if not np.array_equal(resample.weights(n, out), _pillow_coefficients(n, out))
    ]
    assert differ == []
