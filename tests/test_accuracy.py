"""Each kind of copy the accuracy issue names, on generated pictures, and the hard
negatives: pictures on the same blank background or frame that differ inside it."""

from __future__ import annotations

import os

import pytest
from helpers import busy_photo, photo, save
from PIL import Image, ImageDraw, ImageEnhance, ImageFilter, ImageOps
from sqlalchemy import select

from watcherd import report
from watcherd.config import Config, Root
from watcherd.index import Index
from watcherd.models import Decision
from watcherd.scanner import scan


def crop(img, left, top, right, bottom):
    w, h = img.size
    return img.crop((int(w * left), int(h * top), int(w * (1 - right)), int(h * (1 - bottom))))


def caption(img):
    img = img.copy()
    w, h = img.size
    ImageDraw.Draw(img).rectangle((0, int(h * 0.88), w, h), fill=(15, 15, 15))
    return img


def letterbox(img):
    w, h = img.size
    out = Image.new("RGB", (w, int(h * 1.35)), (0, 0, 0))
    out.paste(img, (0, int(h * 0.175)))
    return out


def square_crop(img):
    w, h = img.size
    side = int(min(w, h) * 0.7)
    return img.crop(((w - side) // 2, (h - side) // 2, (w + side) // 2, (h + side) // 2))


EDITS = {
    "whatsapp": lambda i: i.resize((i.width * 3 // 5, i.height * 3 // 5)),
    "grey": ImageOps.grayscale,
    "bright25": lambda i: ImageEnhance.Brightness(i).enhance(1.25),
    "blur": lambda i: i.filter(ImageFilter.GaussianBlur(1.5)),
    "rot180": lambda i: i.transpose(Image.Transpose.ROTATE_180),
    "crop5": lambda i: crop(i, 0.05, 0.05, 0.05, 0.05),
    "crop15": lambda i: crop(i, 0.15, 0.0, 0.0, 0.15),
    "crop15-other-corner": lambda i: crop(i, 0.0, 0.15, 0.15, 0.0),
    "caption": caption,
    "letterbox": letterbox,
    "square": square_crop,
}


def linked(
    tmp_path, first: Image.Image, second: Image.Image, config: Config | None = None
) -> list[tuple[str, str, str]]:
    folder = tmp_path / "lib"
    save(first, folder / "a.jpg", quality=92)
    os.utime(folder / "a.jpg", ns=(10**18, 10**18))
    save(second.convert("RGB"), folder / "b.jpg", quality=88)
    with Index(tmp_path / "i.sqlite3") as index:
        scan([folder], config or Config(workers=1), index)
        rows = index.session.scalars(select(Decision).where(Decision.current.is_(True))).all()
        return [(d.file.path, d.original.path, d.kind) for d in rows]


@pytest.mark.parametrize("edit", EDITS)
@pytest.mark.parametrize("seed", [11, 12, 13])
def test_each_kind_of_copy_is_found(tmp_path, edit, seed):
    original = busy_photo(seed)
    links = linked(tmp_path, original, EDITS[edit](original))
    assert len(links) == 1, f"{edit} copy of photo {seed} not linked"
    assert links[0][2] == "near"


def _object_on_white(seed: int, shape: str) -> Image.Image:
    """A product shot: one dark object on a white studio background."""
    img = Image.new("RGB", (800, 600), (255, 255, 255))
    draw = ImageDraw.Draw(img)
    if shape == "bar":
        draw.rectangle((150, 270, 650, 330), fill=(40, 40, 50))
        draw.ellipse((560, 230, 700, 370), fill=(60, 60, 70))
    else:
        draw.ellipse((300, 180, 500, 420), fill=(40, 40, 50))
        draw.rectangle((380, 60, 420, 560), fill=(60, 60, 70))
    return img


def _framed(seed: int) -> Image.Image:
    """A photo in a wide white frame (a scanned print, a framed screenshot)."""
    out = Image.new("RGB", (800, 600), (255, 255, 255))
    out.paste(photo(seed, (480, 340)), (160, 130))
    return out


@pytest.mark.parametrize(
    ("a", "b"),
    [
        (lambda: _object_on_white(1, "bar"), lambda: _object_on_white(2, "round")),
        (lambda: _framed(31), lambda: _framed(32)),
        (lambda: photo(41), lambda: photo(42)),
    ],
    ids=["objects-on-white", "different-photos-in-same-frame", "unrelated"],
)
def test_same_background_or_frame_different_inside_is_not_linked(tmp_path, a, b):
    assert linked(tmp_path, a(), b()) == []


def test_framed_photo_matches_itself_unframed(tmp_path):
    inner = photo(33, (480, 340))
    framed = Image.new("RGB", (800, 600), (255, 255, 255))
    framed.paste(inner, (160, 130))
    assert len(linked(tmp_path, inner, framed)) == 1


def _burst(seed: int) -> tuple[Image.Image, Image.Image]:
    """Two shots a moment apart: same scene, the subject has moved."""
    base = busy_photo(seed)
    a, b = base.copy(), base.copy()
    ImageDraw.Draw(a).ellipse((100, 150, 300, 450), fill=(200, 40, 40))
    ImageDraw.Draw(b).ellipse((420, 150, 620, 450), fill=(200, 40, 40))
    return a, b


@pytest.mark.parametrize("seed", [11, 12, 13, 14, 15])
def test_burst_shots_are_similar_never_near(tmp_path, seed):
    a, b = _burst(seed)
    links = linked(tmp_path, a, b)
    assert [kind for _, _, kind in links] in ([], ["similar"])
    assert all(kind != "near" for _, _, kind in links)


def test_similar_is_reported_not_moved(tmp_path):
    a, b = _burst(11)
    lib = tmp_path / "lib"
    save(a, lib / "a.jpg")
    save(b, lib / "b.jpg")
    cfg = Config(workers=1, roots=(Root(lib),), action="quarantine", quarantine_dir=tmp_path / "Q")
    with Index(tmp_path / "i.sqlite3") as index:
        stats = scan([lib], cfg, index)
        data = report.build(index)
    assert (stats.similar, stats.near, stats.quarantined) == (1, 0, 0)
    assert (lib / "a.jpg").exists() and (lib / "b.jpg").exists()
    [entry] = data["duplicates"]
    assert entry["kind"] == "similar" and {entry["path"], entry["original"]} == {
        str(lib / "a.jpg"),
        str(lib / "b.jpg"),
    }
    assert data["summary"]["duplicates"] == 0 and data["summary"]["similar"] == 1
    assert data["summary"]["reclaimable_bytes"] == 0


def _turned_more_contrast(img):
    return ImageEnhance.Contrast(img.transpose(Image.Transpose.ROTATE_90)).enhance(1.5)


@pytest.mark.parametrize(
    ("edit", "setting"),
    [
        (lambda i: crop(i, 0.13, 0.0, 0.0, 0.13), "crop_phash_distance"),  # no region's box
        (lambda i: crop(i, 0.13, 0.0, 0.0, 0.13), "crop_dhash_distance"),  # read from SQLite
        (_turned_more_contrast, "turned_phash_distance"),  # 2 bits away when turned back
    ],
    ids=["crop", "crop-dhash", "turned"],
)
def test_each_limit_is_a_setting(tmp_path, edit, setting):
    """The crop and turned limits come from the configuration: at 0 bits, copies that
    need them (not a bit-exact region or pose) are no longer linked as near copies."""
    original = busy_photo(12)
    copy = edit(original)
    assert [k for _, _, k in linked(tmp_path / "default", original, copy)] == ["near"]
    strict = Config(workers=1, **{setting: 0})
    assert "near" not in [k for _, _, k in linked(tmp_path / "strict", original, copy, strict)]
