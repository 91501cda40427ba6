"""Sizes real files come in: pictures of 108 and 200 megapixels, huge files named like
photos (issue 22)."""

from __future__ import annotations

from helpers import photo, save
from PIL import Image

from watcherd.config import Config
from watcherd.fingerprint import fingerprint_file
from watcherd.index import Index
from watcherd.scanner import scan


def test_a_108_megapixel_photo_is_decoded_and_linked_to_its_smaller_copy(tmp_path):
    """Pillow's own limit (89.5 MP warns, 179 MP fails) refused them although
    max_pixels says 250 million: max_pixels must be the only limit."""
    big = photo(3, (1200, 900)).resize((12000, 9000), Image.Resampling.BILINEAR)
    save(big, tmp_path / "lib" / "IMG_108MP.jpg", quality=85)
    save(big.resize((4000, 3000)), tmp_path / "lib" / "shared.jpg", quality=85)
    fp = fingerprint_file(str(tmp_path / "lib" / "IMG_108MP.jpg"))
    assert fp.error is None and (fp.width, fp.height) == (12000, 9000)
    stats = scan([tmp_path / "lib"], Config(workers=1), Index(tmp_path / "i.sqlite3"))
    assert (stats.errors, stats.near) == (0, 1)


def test_max_pixels_still_refuses_what_is_over_it(tmp_path):
    path = save(photo(4, (1200, 900)), tmp_path / "a.jpg")
    fp = fingerprint_file(str(path), max_pixels=1_000_000)
    assert fp.error is not None and "max_pixels=1000000" in fp.error


def test_a_name_of_240_bytes_is_quarantined_across_filesystems(tmp_path):
    """The temporary copy beside the target was named after the file and went over
    NAME_MAX (255 bytes) for names of 229 bytes or more."""
    from conftest import mounted_tmpfs, run_cli

    lib = tmp_path / "lib"
    name = "IMG_" + "x" * 232 + ".jpg"  # 240 bytes
    img = photo(9)
    save(img, lib / "a.jpg")
    save(img.resize((320, 240)), lib / name)
    with mounted_tmpfs(tmp_path / "Q") as q:
        cfg = tmp_path / "config.toml"
        cfg.write_text(f'roots = ["{lib}"]\naction = "quarantine"\nquarantine_dir = "{q}"\n')
        out = run_cli("--config", str(cfg), "--db", str(tmp_path / "i.sqlite3"), "scan").stdout
        assert "moved 1 files" in out and "not moved" not in out
        assert not (lib / name).exists() and len(list(q.rglob(name))) == 1


def test_every_move_that_fails_is_printed_without_verbose(tmp_path):
    from conftest import read_only_folder, run_cli

    lib = tmp_path / "lib"
    for k in range(3):
        img = photo(30 + k)
        save(img, lib / f"a{k}.jpg")
        save(img.resize((320, 240)), lib / "sent" / f"copy{k}.jpg")
    q = tmp_path / "Q"
    q.mkdir()
    cfg = tmp_path / "config.toml"
    cfg.write_text(f'roots = ["{lib}"]\naction = "quarantine"\nquarantine_dir = "{q}"\n')
    with read_only_folder(q):
        out = run_cli("--config", str(cfg), "--db", str(tmp_path / "i.sqlite3"), "scan").stdout
    assert "moved 0 files" in out and "3 could not be moved" in out
    for k in range(3):
        assert f"not moved: {lib / 'sent' / f'copy{k}.jpg'}: " in out


def sparse(path, size: int):
    """A file of `size` bytes that takes no room on disk (all zeros)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as fh:
        fh.truncate(size)
    return path


def test_a_10_gb_file_named_jpg_is_refused_from_its_header_before_it_is_hashed(tmp_path):
    fp = fingerprint_file(str(sparse(tmp_path / "huge.jpg", 10 * 1024**3)))
    assert fp.error is not None and "not an image" in fp.error
    assert fp.sha256 is None  # refused without reading ten gigabytes first


def test_photos_behind_a_huge_video_are_not_held_up_by_it(tmp_path, daemons):
    """The daemon decides in arrival order; a file that takes seconds to read (here a
    4 GB video, hashed whole for exact copies) went first and every photo behind it
    waited. Large files are read in a lane of their own and decided when done."""
    pics = tmp_path / "pics"
    pics.mkdir()
    d = daemons(tmp_path, [pics]).start()
    video = sparse(pics / "holiday.mp4", 4 * 1024**3)
    photos = [save(photo(50 + k, (320, 240)), pics / f"p{k}.jpg") for k in range(3)]
    for p in photos:
        d.wait_decided(p)
    assert not d.of("indexed", video)  # still being read: it held nothing up
    assert d.wait_decided(video, timeout=180)["event"] == "indexed"
    assert d.stop() == 0
