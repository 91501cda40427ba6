import hashlib
import io
import os
import subprocess
import sys

import pytest
from conftest import unprivileged
from helpers import copies, exif_rotated, photo, save
from PIL import Image

from watcherd.fingerprint import TRANSFORM_NAMES, fingerprint_file


def hamming(a: int, b: int) -> int:
    return (a ^ b).bit_count()


def best_pose_distance(original, copy) -> tuple[int, str]:
    return min(
        (hamming(original.phash, vp), name)
        for (vp, _), name in zip(copy.variants, TRANSFORM_NAMES, strict=True)
    )


def test_sha256_and_facts(tmp_path):
    p = save(photo(1, (300, 200)), tmp_path / "a.jpg")
    fp = fingerprint_file(str(p))
    assert fp.error is None
    assert fp.sha256 == hashlib.sha256(p.read_bytes()).hexdigest()
    assert (fp.width, fp.height, fp.format) == (300, 200, "JPEG")
    assert fp.size == p.stat().st_size
    assert fp.inode == p.stat().st_ino
    assert 0 <= fp.phash < 2**64 and 0 <= fp.dhash < 2**64
    assert len(fp.variants) == 8 and fp.variants[0] == (fp.phash, fp.dhash)


def test_phash_is_imagehash_phash_of_the_upright_picture(tmp_path):
    import imagehash

    img = photo(2)
    p = save(img, tmp_path / "a.png")
    expected = int(str(imagehash.phash(img)), 16)
    # Our pipeline shrinks to 32x32 first, exactly what imagehash.phash does internally.
    assert hamming(fingerprint_file(str(p)).phash, expected) <= 2


@pytest.mark.parametrize(
    "kind", ["resized", "recompressed", "png", "rotated90", "mirrored", "exif_rotated", "brighter"]
)
def test_copies_are_close_in_some_pose(tmp_path, kind):
    img = photo(3)
    original = fingerprint_file(str(save(img, tmp_path / "orig.jpg")))
    copy = fingerprint_file(str(copies(img, tmp_path / "c", "x")[kind]))
    distance, _pose = best_pose_distance(original, copy)
    assert distance <= 4


def test_unrelated_pictures_are_far_in_every_pose(tmp_path):
    fps = [fingerprint_file(str(save(photo(s), tmp_path / f"{s}.jpg"))) for s in range(12)]
    for i, a in enumerate(fps):
        for b in fps[i + 1 :]:
            assert best_pose_distance(a, b)[0] > 12


def test_exif_orientation_is_applied(tmp_path):
    img = photo(4, (400, 300))
    fp = fingerprint_file(str(exif_rotated(img, tmp_path / "r.jpg")))
    plain = fingerprint_file(str(save(img, tmp_path / "p.jpg")))
    assert (fp.width, fp.height) == (400, 300)  # upright size, though stored 300x400
    assert hamming(fp.phash, plain.phash) <= 4


@pytest.mark.parametrize(
    "fmt,ext", [("WEBP", "webp"), ("GIF", "gif"), ("BMP", "bmp"), ("TIFF", "tif"), ("PNG", "png")]
)
def test_formats(tmp_path, fmt, ext):
    img = photo(5, (200, 150))
    plain = fingerprint_file(str(save(img, tmp_path / "p.png")))
    fp = fingerprint_file(str(save(img, tmp_path / f"x.{ext}", format=fmt)))
    assert fp.error is None and fp.format == fmt
    assert hamming(fp.phash, plain.phash) <= 8


def test_heic(tmp_path):
    pillow_heif = pytest.importorskip("pillow_heif")
    img = photo(6, (320, 240))
    p = tmp_path / "x.heic"
    pillow_heif.from_pillow(img).save(str(p), quality=80)
    fp = fingerprint_file(str(p))
    plain = fingerprint_file(str(save(img, tmp_path / "p.png")))
    assert fp.error is None and fp.format == "HEIF"
    assert hamming(fp.phash, plain.phash) <= 6


def test_transparent_png_hashes_what_is_visible(tmp_path):
    img = photo(7, (200, 200)).convert("RGBA")
    img.putalpha(255)
    p1 = save(img, tmp_path / "opaque.png")
    # same visible picture, but the hidden colour under a transparent border differs
    img2 = img.copy()
    img2.paste((0, 0, 0, 0), (0, 0, 200, 20))
    img3 = img.copy()
    img3.paste((255, 0, 0, 0), (0, 0, 200, 20))
    a = fingerprint_file(str(save(img2, tmp_path / "a.png")))
    b = fingerprint_file(str(save(img3, tmp_path / "b.png")))
    assert a.phash == b.phash
    assert fingerprint_file(str(p1)).error is None


def test_gif_first_frame(tmp_path):
    frames = [photo(8, (160, 120)), photo(9, (160, 120))]
    p = tmp_path / "anim.gif"
    frames[0].save(p, save_all=True, append_images=frames[1:], duration=100)
    first = fingerprint_file(str(save(frames[0], tmp_path / "f0.gif")))
    fp = fingerprint_file(str(p))
    assert hamming(fp.phash, first.phash) <= 2


# -- bad input: an error with a reason, never an exception -----------------------------


def test_zero_byte(tmp_path):
    p = tmp_path / "empty.jpg"
    p.touch()
    fp = fingerprint_file(str(p))
    assert fp.error == "empty file (0 bytes)"


def test_truncated_jpeg(tmp_path):
    p = save(photo(10), tmp_path / "full.jpg")
    t = tmp_path / "trunc.jpg"
    t.write_bytes(p.read_bytes()[: p.stat().st_size // 2])
    fp = fingerprint_file(str(t))
    assert fp.error is not None and "truncated" in fp.error
    assert fp.sha256 is not None  # still known byte-for-byte


def test_text_named_jpg(tmp_path):
    p = tmp_path / "notes.jpg"
    p.write_text("this is not a picture\n" * 10)
    assert "not an image" in fingerprint_file(str(p)).error


def test_mislabelled_but_real_image_is_read(tmp_path):
    p = tmp_path / "really-a-png.jpg"
    photo(11, (100, 80)).save(p, format="PNG")
    fp = fingerprint_file(str(p))
    assert fp.error is None and fp.format == "PNG"


def test_unreadable(tmp_path):
    p = save(photo(12), tmp_path / "secret.jpg")
    p.chmod(0)
    code = (
        "import sys; from watcherd.fingerprint import fingerprint_file as f; "
        "print(f(sys.argv[1]).error)"
    )
    out = subprocess.run(
        [*unprivileged(), sys.executable, "-c", code, str(p)],
        capture_output=True,
        text=True,
        check=True,
    )
    assert out.stdout.strip() == "cannot open: Permission denied"


def test_unreadable_as_root_via_directory(tmp_path):
    # root can read any file, but not open a path through a non-directory: still an error
    p = tmp_path / "not-a-dir"
    p.write_text("x")
    fp = fingerprint_file(str(p / "child.jpg"))
    assert fp.error.startswith("cannot open")


def test_a_folder_where_a_file_was_is_an_error(tmp_path):
    # a photo replaced by a folder of the same name between the event and the read
    p = tmp_path / "was-a-photo.jpg"
    p.mkdir()
    assert fingerprint_file(str(p)).error == "not a regular file"
    # a named pipe with no writer: opening it must not wait for one
    fifo = tmp_path / "pipe.jpg"
    os.mkfifo(fifo)
    assert fingerprint_file(str(fifo)).error == "not a regular file"


def test_decompression_bomb_is_refused(tmp_path):
    p = tmp_path / "huge.png"
    Image.new("L", (5000, 5000)).save(p)
    fp = fingerprint_file(str(p), max_pixels=1_000_000)
    assert "too large" in fp.error


def test_video_gets_sha_only(tmp_path):
    p = tmp_path / "clip.mp4"
    p.write_bytes(os.urandom(5000))
    fp = fingerprint_file(str(p))
    assert fp.error is None and fp.sha256 and fp.phash is None


def test_avif_where_pillow_reads_it(tmp_path):
    from PIL import features

    if not features.check("avif"):
        pytest.skip("this Pillow build has no AVIF codec")
    img = photo(13, (320, 240))
    fp = fingerprint_file(str(save(img, tmp_path / "x.avif", quality=70)))
    plain = fingerprint_file(str(save(img, tmp_path / "p.png")))
    assert fp.error is None and fp.format == "AVIF"
    assert hamming(fp.phash, plain.phash) <= 6


def test_streamed_sha256_of_a_video_matches(tmp_path, monkeypatch):
    import watcherd.fingerprint as fpmod

    monkeypatch.setattr(fpmod, "CHUNK", 1000)
    p = tmp_path / "clip.mov"
    data = os.urandom(10_500)
    p.write_bytes(data)
    fp = fpmod.fingerprint_file(str(p))
    assert fp.sha256 == hashlib.sha256(data).hexdigest()


def test_thumbnail_is_small_upright_and_in_colour(tmp_path):
    img = photo(3, (640, 480))
    exif = Image.Exif()
    exif[0x0112] = 6
    exif.get_ifd(0x8769)[0x9003] = "2024:07:14 18:03:22"
    path = save(img.transpose(Image.Transpose.ROTATE_90), tmp_path / "sideways.jpg", exif=exif)
    fp = fingerprint_file(str(path))
    assert fp.taken_at == "2024-07-14 18:03:22"
    thumb = Image.open(io.BytesIO(fp.thumbnail))
    assert thumb.format == "JPEG" and thumb.size == (128, 96), "upright, like the photo"
    assert len(fp.thumbnail) < 8000
    upright = img.resize((128, 96)).convert("RGB")
    diff = sum(abs(a - b) for a, b in zip(thumb.convert("RGB").tobytes(), upright.tobytes(),
                                          strict=True)) / (128 * 96 * 3)  # fmt: skip
    assert diff < 20, "the same picture, in colour and the right way up"


def test_placeholder_exif_date_is_no_date(tmp_path):
    exif = Image.Exif()
    exif.get_ifd(0x8769)[0x9003] = "0000:00:00 00:00:00"
    path = save(photo(4), tmp_path / "a.jpg", exif=exif)
    assert fingerprint_file(str(path)).taken_at is None
    assert fingerprint_file(str(save(photo(4), tmp_path / "b.png"))).taken_at is None
