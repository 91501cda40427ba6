"""Fingerprints: what a file is (sha256) and what it looks like (perceptual hashes).

Runs in worker processes, so everything here is a plain function of a path returning a
picklable value. A file is read once: the bytes feed the sha256 and the image decoder.
Bad input never raises out of `fingerprint_file`; it comes back as `error` text.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import os
import stat as stat_mod
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from functools import cache, partial

import numpy as np
from PIL import Image, ImageFile, UnidentifiedImageError

from . import resample
from .config import IMAGE_EXTENSIONS, VIDEO_EXTENSIONS
from .screenshots import photo_boxes


@cache
def _heif_registered() -> bool:
    """Teach Pillow HEIC/HEIF (phone photos) the first time a file is decoded, not at
    import: libheif and its codecs cost the daemon's main process, which never decodes,
    about 7 MB. Optional, so a broken libheif never stops indexing."""
    try:
        import pillow_heif

        pillow_heif.register_heif_opener()
    except Exception:  # pragma: no cover - depends on the platform's wheel
        return False
    return True


def _open(fp) -> Image.Image:
    _heif_registered()
    return Image.open(fp)


ImageFile.LOAD_TRUNCATED_IMAGES = False

HASH_SIDE = 32  # pHash works on a 32x32 greyscale image
BASE_SIDE = 256  # hashes are taken from the picture reduced to this long side
FLAT_STDDEV = 6.0  # a region whose greyscale varies less than this is "blank"
# Regions hashed besides the whole picture: id -> (left, top, right, bottom) fractions.
REGIONS = {
    1: (0.05, 0.05, 0.95, 0.95),  # centre 90%
    2: (0.0, 0.0, 0.85, 0.85),  # 85% corners
    3: (0.15, 0.0, 1.0, 0.85),
    4: (0.0, 0.15, 0.85, 1.0),
    5: (0.15, 0.15, 1.0, 1.0),
    6: (0.0, 0.0, 1.0, 0.85),  # top 85% (a caption bar at the bottom)
}
# Centred squares, as a fraction of the short side: square crops (profile pictures,
# Instagram) keep the middle of a photo.
SQUARES = {7: 1.0, 8: 0.85, 9: 0.7}
CONTENT = 10  # the picture without black or white bars around it (content_box)
WIDE = 11  # the largest centred 16:9 crop: the picture fitted to a screen or a video frame
PHOTO = 12  # the photo inside a screenshot (screenshots.photo_boxes: the first reading)
PHOTO_TIGHT = (13, 14)  # the same, read more tightly, where the readings differ
THUMB_SIDE = 128  # long side of the stored thumbnail (about 3 KB as JPEG)
THUMB_QUALITY = 70
# JPEG draft() decodes at 1/2..1/8 scale: as small as keeps the long side at least
# THUMB_SIDE and the short side at least DRAFT_SHORT (a region of a 16:9 picture is
# still twice the 32 pixels it is hashed at).
DRAFT_SHORT = 64
# An image up to this size is read into memory once, feeding both sha256 and the decoder;
# anything else (videos, larger files) is streamed through sha256 in chunks.
READ_WHOLE_LIMIT = 128 * 1024 * 1024
CHUNK = 1024 * 1024

# The eight ways a picture can be rotated or mirrored, identity first (it wins ties).
TRANSFORMS: tuple[tuple[str, Image.Transpose | None], ...] = (
    ("identity", None),
    ("mirror", Image.Transpose.FLIP_LEFT_RIGHT),
    ("rotate90", Image.Transpose.ROTATE_90),
    ("rotate180", Image.Transpose.ROTATE_180),
    ("rotate270", Image.Transpose.ROTATE_270),
    ("flip", Image.Transpose.FLIP_TOP_BOTTOM),
    ("transpose", Image.Transpose.TRANSPOSE),
    ("transverse", Image.Transpose.TRANSVERSE),
)
TRANSFORM_NAMES = tuple(name for name, _ in TRANSFORMS)

# EXIF orientation tag value -> the transposition that shows the picture upright
# (the table ImageOps.exif_transpose uses), applied to the small image: same result,
# a fraction of the work.
_EXIF_ORIENTATION = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}


@dataclass(slots=True)
class Fingerprint:
    """Everything the index and the matcher need about one file, as read at one moment."""

    path: str
    size: int
    mtime_ns: int
    inode: int
    sha256: str | None = None
    width: int | None = None
    height: int | None = None
    format: str | None = None
    phash: int | None = None  # unsigned 64-bit, identity orientation
    dhash: int | None = None
    # pHash and dHash of the picture under each of TRANSFORMS, for matching a newcomer
    # against indexed files whatever way it was turned; not stored in the index.
    variants: tuple[tuple[int, int], ...] = ()
    # (region id, pHash, dHash) of the parts in REGIONS (see region_hashes).
    regions: tuple[tuple[int, int, int], ...] = ()
    # pHash and dHash of the picture without its bars or blank background, in the eight
    # poses; empty when there was nothing to trim. Not stored (the CONTENT region is).
    content_variants: tuple[tuple[int, int], ...] = ()
    thumbnail: bytes | None = None  # a small upright JPEG (THUMB_SIDE) for the report
    # that JPEG decoded to grey, (width, height, pixels): what verification compares,
    # decoded here in the worker rather than in the process that decides. Not stored.
    grey: tuple[int, int, bytes] | None = None
    taken_at: str | None = None  # EXIF DateTimeOriginal as "YYYY-MM-DD HH:MM:SS"
    duration: float | None = None  # a video's length in seconds
    # a video's sampled frames: (ms, (pHash, dHash) in the eight poses); not stored as such
    frames: tuple[tuple[int, tuple[tuple[int, int], ...]], ...] = ()
    error: str | None = None
    warning: str | None = None  # read, but only its bytes are of use (an unplayable video)

    @property
    def pixels(self) -> int:
        return (self.width or 0) * (self.height or 0)


def is_image_name(path: str) -> bool:
    return path.rsplit(".", 1)[-1].lower() in IMAGE_EXTENSIONS if "." in path else False


def is_video_name(path: str) -> bool:
    return path.rsplit(".", 1)[-1].lower() in VIDEO_EXTENSIONS if "." in path else False


# The DCT-II matrix scipy.fftpack.dct applies (unnormalised): C[k, n] = 2 cos(pi k (2n+1) / 2N),
# its first eight rows only: pHash keeps the 8x8 lowest frequencies.
_N = HASH_SIDE
_DCT8 = 2 * np.cos(np.pi * np.outer(np.arange(8), 2 * np.arange(_N) + 1) / (2 * _N))


def _low_frequencies(smalls: np.ndarray) -> np.ndarray:
    """The 8x8 lowest DCT coefficients of each of n 32x32 pictures, (n, 64): C X C^T
    for the first eight rows of C only, as two products over the whole stack (a product
    per picture costs more in numpy's calls than in arithmetic)."""
    n = len(smalls)
    half = smalls.reshape(n * _N, _N) @ _DCT8.T  # X C^T: (n*32, 8)
    half = half.reshape(n, _N, 8).transpose(1, 0, 2).reshape(_N, n * 8)
    return (_DCT8 @ half).reshape(8, n, 8).transpose(1, 0, 2).reshape(n, 64)


def _packed(bits: np.ndarray) -> list[int]:
    """Rows of 64 booleans as integers, the first bit the highest (ImageHash's order)."""
    return np.packbits(bits, axis=1).view(">u8").ravel().tolist()


def hashes_of(smalls: np.ndarray) -> list[tuple[int, int]]:
    """pHash and dHash of 32x32 greyscale pictures (an (n, 32, 32) array of 0..255
    integers), the same bits as ImageHash's `phash` and `dhash` (hash size 8), computed
    for all of them at once.

    ImageHash costs about 150 us per picture in object overhead and two scipy calls; a
    photo needs some thirty hashes (eight poses, eleven regions, the trimmed content),
    so the DCT is done here as batched matrix products instead.
    """
    if not len(smalls):
        return []
    # rounded so that a flat picture's coefficients are zeros, not rounding noise
    low = np.round(_low_frequencies(smalls), 6)
    # the median of 64 values: the mean of the middle two, as np.median takes it
    middle = np.partition(low, (31, 32), axis=1)[:, 31:33]
    pbits = low > ((middle[:, 0] + middle[:, 1]) / 2)[:, np.newaxis]
    # dHash: each row of a 9x8 reduction, brighter to the right or not
    small = resample.shrink_many(smalls, 9, 8)
    dbits = (small[:, :, 1:] > small[:, :, :-1]).reshape(len(smalls), 64)
    return list(zip(_packed(pbits), _packed(dbits), strict=True))


def poses(small: np.ndarray) -> np.ndarray:
    """A square picture in the eight poses of TRANSFORMS, in that order: the arrays
    Pillow's `transpose` gives for each method.

    Turning the 32x32 image is the same as turning the photo and then shrinking it,
    because the shrink to a square treats both axes alike.
    """
    turned = small[::-1, ::-1]
    return np.stack(
        [
            small,  # identity
            small[:, ::-1],  # mirror
            np.rot90(small, 1),  # rotate90, counter-clockwise as Pillow's ROTATE_90
            turned,  # rotate180
            np.rot90(small, -1),  # rotate270
            small[::-1],  # flip
            small.T,  # transpose
            turned.T,  # transverse
        ]
    )


def _flatten_alpha(img: Image.Image) -> Image.Image:
    """Composite transparency over white: hidden pixels under alpha must not count."""
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        img = img.convert("RGBA")
        background = Image.new("RGBA", img.size, (255, 255, 255, 255))
        background.alpha_composite(img)
        return background.convert("RGB")
    return img


def decode_small(data: bytes | io.BufferedIOBase, max_pixels: int) -> tuple[Image.Image, dict]:
    """Decode an image just large enough for hashing, upright per its EXIF orientation.

    Returns a greyscale image at most BASE_SIDE pixels on its long side, from which the
    whole-picture and region hashes are taken, and facts (format, upright size).
    Raises ValueError with a user-facing reason for anything that is not a usable image.
    """
    fh = io.BytesIO(data) if isinstance(data, bytes) else data
    # `max_pixels` is the only limit: Pillow's own (a warning above 89.5 million pixels,
    # an error above twice that) refused the 108 and 200 MP pictures of today's phones.
    # It is a process-wide setting, and in a worker only this function decodes.
    Image.MAX_IMAGE_PIXELS = max_pixels
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        try:
            img = _open(fh)
        except UnidentifiedImageError:
            raise ValueError("not an image Pillow can read (wrong extension or corrupt)") from None
        except Image.DecompressionBombError as exc:
            raise ValueError(f"image too large: {exc}") from None
        with img:
            width, height = img.size
            if width * height > max_pixels:
                raise ValueError(
                    f"image too large: {width}x{height} pixels exceeds max_pixels={max_pixels}"
                )
            fmt = img.format
            orientation, taken = 1, None
            try:
                exif = img.getexif()
                orientation = int(exif.get(0x0112, 1) or 1)
                taken = _exif_date(exif)
            except Exception:  # a broken EXIF block must not cost us the picture
                pass
            if fmt == "JPEG":
                wide = width >= height
                img.draft("RGB", (THUMB_SIDE, DRAFT_SHORT) if wide else (DRAFT_SHORT, THUMB_SIDE))
            try:
                img.seek(0)  # first frame of GIF/WebP/TIFF animations
                img.load()
            except OSError as exc:
                raise ValueError(f"cannot decode image: {exc}") from None
            except Image.DecompressionBombError as exc:
                raise ValueError(f"image too large: {exc}") from None
            work = _flatten_alpha(img)
            if work.mode not in ("L", "RGB"):
                work = work.convert("RGB")
            base = work.convert("L")
            if max(base.size) > BASE_SIDE:  # averaged by whole blocks: a fifth of LANCZOS's cost
                base = base.reduce(math.ceil(max(base.size) / BASE_SIDE))
            thumbnail = _jpeg_thumbnail(work, orientation)
    method = _EXIF_ORIENTATION.get(orientation)
    if method is not None:
        base = base.transpose(method)
        if orientation >= 5:
            width, height = height, width
    facts = {"format": fmt, "width": width, "height": height, "taken_at": taken}
    return base, {**facts, "thumbnail": thumbnail}


def _jpeg_thumbnail(img: Image.Image, orientation: int, side: int = THUMB_SIDE) -> bytes:
    """An upright JPEG at most `side` pixels across, from a decoded L or RGB image.

    Box-averaged by a whole factor first (reducing_gap 1): a third cheaper than the
    finer default, and no different to the eye at this size; it is only a preview."""
    small = img.copy()
    small.thumbnail((side, side), Image.Resampling.BILINEAR, reducing_gap=1.0)
    method = _EXIF_ORIENTATION.get(orientation)
    if method is not None:
        small = small.transpose(method)
    out = io.BytesIO()
    small.save(out, "JPEG", quality=THUMB_QUALITY)
    return out.getvalue()


def grey_rendition(jpeg: bytes | None) -> Image.Image | None:
    """A stored thumbnail decoded to the grey picture verification compares (None:
    unusable). The same decode for a newcomer and for an indexed file, so that a
    copy of a file is compared with the file as the index has it."""
    if not jpeg:
        return None
    try:
        with Image.open(io.BytesIO(jpeg)) as im:
            im.draft("L", (THUMB_SIDE, THUMB_SIDE))
            return im.convert("L")
    except Exception:  # a damaged thumbnail: the caller reads the file instead
        return None


def thumbnail_of(path: str, side: int = THUMB_SIDE) -> bytes | None:
    """An upright JPEG thumbnail made from the file itself, or None if it cannot be read.

    For files fingerprinted before thumbnails were stored, and for bigger previews.
    """
    try:
        with _open(path) as im:
            if im.width * im.height > 250_000_000:
                return None
            im.draft("RGB", (side, side))
            orientation = int(im.getexif().get(0x0112, 1) or 1)
            small = _flatten_alpha(im)
            small = small.convert("RGB") if small.mode != "RGB" else small
            return _jpeg_thumbnail(small, orientation, side)
    except Exception:  # unreadable, not an image, a decoder error: no preview
        return None


def _exif_date(exif: Image.Exif) -> str | None:
    """DateTimeOriginal (else DateTime) as "YYYY-MM-DD HH:MM:SS", if it is a real date."""
    raw = exif.get_ifd(0x8769).get(0x9003) or exif.get(0x0132)
    if not isinstance(raw, str):
        return None
    raw = raw.strip("\x00 ")
    try:
        return datetime.strptime(raw[:19], "%Y:%m:%d %H:%M:%S").strftime("%Y-%m-%d %H:%M:%S")
    except ValueError:
        return None  # "0000:00:00 00:00:00" and other placeholders


def content_box(img: Image.Image) -> tuple[int, int, int, int]:
    """The picture without black or white bars and frames around it (letterboxing,
    borders), as a box of `img`; the whole of it when there is nothing to trim.

    A copy shown with bars added, and the original, then hash the same content. Only
    near-black or near-white uniform borders of at least 2% are removed, so a photo's
    own sky or wall is left alone.
    """
    w, h = img.size
    whole = (0, 0, w, h)
    if w < 16 or h < 16:
        return whole
    corners = [img.getpixel(xy) for xy in ((0, 0), (w - 1, 0), (0, h - 1), (w - 1, h - 1))]
    corner = corners[0]
    # all four corners the same near-black or near-white: the same in every pose, and
    # unchanged by a brightness edit, so a picture and its copies are trimmed alike
    if max(corners) - min(corners) > 8 or 12 < corner < 243:
        return whole
    mask = img.point(lambda v: 255 if abs(v - corner) > 24 else 0)
    box = mask.getbbox()
    if box is None:
        return whole  # uniform all over: nothing to trim to
    left, top, right, bottom = box
    if (right - left) * (bottom - top) < 0.3 * w * h:
        return whole  # mostly bar: more likely a dark or bright photo than a frame
    min_bar = 0.02
    left = left if left >= w * min_bar else 0
    top = top if top >= h * min_bar else 0
    right = right if w - right >= w * min_bar else w
    bottom = bottom if h - bottom >= h * min_bar else h
    return (left, top, right, bottom)


def region_boxes(base: Image.Image) -> dict[int, tuple[int, int, int, int]]:
    """The parts of a picture a cropped copy may keep, as boxes of `base` by region id.

    A copy cropped 5% on every side is the original's centre 90%; one cropped 15% off
    two sides is one of its 85% corners; one with a caption bar over the bottom keeps its
    top 85% unchanged. Hashing these regions of every picture lets such copies be found
    from either side.
    """
    w, h = base.size
    boxes = {
        rid: (round(w * left), round(h * top), round(w * right), round(h * bottom))
        for rid, (left, top, right, bottom) in REGIONS.items()
    }
    for rid, fraction in SQUARES.items():
        side = min(w, h) * fraction
        if rid == 7 and abs(w - h) < 0.1 * min(w, h):
            continue  # the picture is already square: its centre square is itself
        boxes[rid] = (round((w - side) / 2), round((h - side) / 2),
                      round((w + side) / 2), round((h + side) / 2))  # fmt: skip
    if w * 9 < h * 16 * 0.95:  # narrower than 16:9: keep the full width, a centred band
        band = w * 9 / 16
        boxes[WIDE] = (0, round((h - band) / 2), w, round((h + band) / 2))
    elif w * 9 > h * 16 * 1.05:
        band = h * 16 / 9
        boxes[WIDE] = (round((w - band) / 2), 0, round((w + band) / 2), h)
    content = content_box(base)
    if content != (0, 0, w, h):
        boxes[CONTENT] = content
    for rid, photo in zip((PHOTO, *PHOTO_TIGHT), photo_boxes(base), strict=False):
        boxes[rid] = photo
    return boxes


def _flat(pixels: np.ndarray, boxes: list[tuple[int, int, int, int]]) -> list[bool]:
    """Whether each box of a picture ((h, w) float64 array) is nearly uniform: the same
    standard deviation ImageStat gives the crop, from sums taken as matrix products
    (exact: integers far below 2**53)."""
    height, width = pixels.shape
    rows = np.zeros((len(boxes), height))
    cols = np.zeros((len(boxes), width))
    for i, (left, top, right, bottom) in enumerate(boxes):
        rows[i, top:bottom] = 1
        cols[i, left:right] = 1
    totals = ((rows @ pixels) * cols).sum(axis=1)
    squares = ((rows @ (pixels * pixels)) * cols).sum(axis=1)
    flat = []
    for (left, top, right, bottom), total, total2 in zip(boxes, totals, squares, strict=True):
        count = (right - left) * (bottom - top)
        total, total2 = int(total), int(total2)
        flat.append(math.sqrt((total2 - total**2 / count) / count) < FLAT_STDDEV)
    return flat


@dataclass(slots=True)
class PictureHashes:
    """What `picture_hashes` finds; see Fingerprint for each field."""

    variants: tuple[tuple[int, int], ...]
    regions: tuple[tuple[int, int, int], ...]
    content_variants: tuple[tuple[int, int], ...]


def picture_hashes(base: Image.Image) -> PictureHashes:
    """Every hash of a picture: the whole in eight poses, its regions, its trimmed
    content in eight poses.

    Nearly uniform regions (a white studio background, a frame) are left out: their
    hashes say nothing and would match every other blank region. All the shrinking to
    32x32 and the hashing are done in one batch each (see resample).
    """
    pixels = np.asarray(base, dtype=np.float64)
    w, h = base.size
    sized = {
        rid: (left, top, right, bottom)
        for rid, (left, top, right, bottom) in region_boxes(base).items()
        if right - left >= 8 and bottom - top >= 8
    }
    flat = _flat(pixels, list(sized.values())) if sized else []
    ids = [rid for rid, is_flat in zip(sized, flat, strict=True) if not is_flat]
    boxes = [(0, 0, w, h), *(sized[rid] for rid in ids)]
    smalls = resample.shrink_boxes(pixels, boxes, HASH_SIDE)
    stacks = [poses(smalls[0]), smalls[1:]]
    has_content = CONTENT in ids
    if has_content:
        stacks.append(poses(smalls[1 + ids.index(CONTENT)]))
    hashes = hashes_of(np.concatenate(stacks))
    whole, hashes = hashes[: len(TRANSFORMS)], hashes[len(TRANSFORMS) :]
    regions = tuple((rid, ph, dh) for rid, (ph, dh) in zip(ids, hashes, strict=False))
    content = tuple(hashes[len(ids) :]) if has_content else ()
    return PictureHashes(tuple(whole), regions, content)


def fingerprint_file(path: str, max_pixels: int = 250_000_000) -> Fingerprint:
    """Fingerprint one file; never raises for bad input (the reason goes into `error`)."""
    if os.environ.get("WATCHERD_STALL_READING") == os.path.basename(path):
        _stall(path)
    try:
        # O_NONBLOCK: a named pipe opens at once instead of waiting for a writer (for
        # regular files it changes nothing)
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_NOFOLLOW", 0))
    except OSError as exc:
        return _unread(path, f"cannot open: {exc.strerror or exc}")
    st = os.fstat(fd)
    if not stat_mod.S_ISREG(st.st_mode):  # checked before fdopen, which refuses folders
        os.close(fd)
        return Fingerprint(path, st.st_size, st.st_mtime_ns, st.st_ino, error="not a regular file")
    with os.fdopen(fd, "rb") as fh:
        fp = Fingerprint(path, st.st_size, st.st_mtime_ns, st.st_ino)
        if st.st_size == 0:
            fp.error = "empty file (0 bytes)"
            return fp
        image = is_image_name(path)
        if image and st.st_size > READ_WHOLE_LIMIT:
            # what cannot be decoded is refused from its header, before gigabytes of it
            # are hashed (a 10 GB file named .jpg)
            refusal = _refused_by_header(fh, max_pixels)
            if refusal is not None:
                fp.error = refusal
                return fp
            fh.seek(0)
        try:
            if image and st.st_size <= READ_WHOLE_LIMIT:
                data = fh.read()
                fp.sha256 = hashlib.sha256(data).hexdigest()
            else:
                digest = hashlib.sha256()
                while chunk := fh.read(CHUNK):
                    digest.update(chunk)
                fp.sha256 = digest.hexdigest()
                data = None
        except OSError as exc:
            fp.error = f"cannot read: {exc.strerror or exc}"
            return fp
    if not image:
        return _with_video(fp) if is_video_name(path) else fp  # others: exact matching only
    try:
        if data is None:  # a picture over READ_WHOLE_LIMIT: decoded from the file
            with open(path, "rb") as again:
                base, facts = decode_small(again, max_pixels)
        else:
            base, facts = decode_small(data, max_pixels)
        hashes = picture_hashes(base)
    except ValueError as exc:
        fp.error = str(exc)
        return fp
    except Exception as exc:  # any decoder bug is the file's error, never the daemon's
        fp.error = f"cannot decode image: {type(exc).__name__}: {exc}"
        return fp
    fp.format, fp.width, fp.height = facts["format"], facts["width"], facts["height"]
    fp.thumbnail, fp.taken_at = facts["thumbnail"], facts["taken_at"]
    grey = grey_rendition(fp.thumbnail)
    fp.grey = (*grey.size, grey.tobytes()) if grey is not None else None
    fp.variants = hashes.variants
    fp.phash, fp.dhash = fp.variants[0]
    fp.regions = hashes.regions
    fp.content_variants = hashes.content_variants
    return fp


def _with_video(fp: Fingerprint) -> Fingerprint:
    """A video's length, size and sampled frames (see video.py). One that cannot be
    played keeps its sha256: it is indexed, found again by its bytes, and the reason
    noted (`warning`), rather than an error that would lose its exact copies too."""
    from .video import read_video  # PyAV is loaded by the workers that meet a video

    try:
        facts = read_video(fp.path)
    except ValueError as exc:
        fp.warning = str(exc)
        return fp
    except Exception as exc:  # any decoder bug is the file's problem, never the daemon's
        fp.warning = f"cannot decode video: {type(exc).__name__}: {exc}"
        return fp
    fp.format, fp.width, fp.height = "video", facts.width, facts.height
    fp.duration, fp.frames, fp.thumbnail = facts.duration, facts.frames, facts.poster
    return fp


def _refused_by_header(fh, max_pixels: int) -> str | None:
    """Why a picture cannot be decoded, judged from its header alone (None: it can)."""
    Image.MAX_IMAGE_PIXELS = max_pixels  # see decode_small
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with _open(fh) as img:
                width, height = img.size
    except UnidentifiedImageError:
        return "not an image Pillow can read (wrong extension or corrupt)"
    except Image.DecompressionBombError as exc:
        return f"image too large: {exc}"
    except Exception as exc:
        return f"cannot decode image: {type(exc).__name__}: {exc}"
    if width * height > max_pixels:
        return f"image too large: {width}x{height} pixels exceeds max_pixels={max_pixels}"
    return None


def _stall(path: str) -> None:
    """Fault injection for the stop tests: WATCHERD_STALL_READING=<file name> makes the
    worker that reads that file hang, as a decoder would on a stalled network mount or
    a pathological image. It says so on stderr, as a JSON log line, then never returns.
    Unset in normal use."""
    os.write(2, (json.dumps({"event": "stalled", "path": path}) + "\n").encode())
    while True:
        time.sleep(3600)


def reader(max_pixels: int) -> Callable[[str], Fingerprint]:
    """The job each worker process runs per file (a partial of a module-level function,
    so it pickles), with the configured pixel limit."""
    return partial(fingerprint_file, max_pixels=max_pixels)


def crashed(path: str) -> Fingerprint:
    """The fingerprint of a file whose decoder killed its worker process."""
    # "cannot ..." errors are retried at the next scan: a crash may not be the file's fault
    return _unread(path, "cannot decode: the image decoder crashed on this file")


def timed_out(path: str, seconds: float) -> Fingerprint:
    """The fingerprint of a file its worker was still reading after `seconds`."""
    # "cannot ..." again: retried at the next scan, a stalled mount may have recovered
    return _unread(
        path,
        f"cannot read: still reading after {seconds:g} s (a stalled mount or a pathological image)",
    )


def _unread(path: str, error: str) -> Fingerprint:
    """A fingerprint with only what stat() tells, for a file that could not be read."""
    try:
        st = os.stat(path)
        size, mtime_ns, inode = st.st_size, st.st_mtime_ns, st.st_ino
    except OSError:
        size = mtime_ns = inode = 0
    return Fingerprint(path, size, mtime_ns, inode, error=error)
