"""One quarantine per volume: a photo on another filesystem is quarantined at the top
of its own volume (one rename, nothing copied into the home partition), on real tmpfs
and bind mounts the test makes as root (skipped, and said, elsewhere)."""

from __future__ import annotations

import contextlib
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import mounted_tmpfs, unprivileged
from helpers import photo, save
from sqlalchemy import select

from watcherd import quarantine as q
from watcherd import volumes
from watcherd.actions import Mover
from watcherd.config import Config, Root, default_data_dir
from watcherd.index import Index
from watcherd.models import ACTIVE, QUARANTINED, Decision, File
from watcherd.scanner import scan

VOLUME_FOLDER = f".watcherd-quarantine-{os.getuid()}"


def pair(lib: Path) -> tuple[Path, Path]:
    img = photo(3, (640, 480))
    return save(img, lib / "big.jpg"), save(img.resize((320, 240)), lib / "sub" / "small.jpg")


def flagged(index: Index, cfg: Config, lib: Path) -> tuple[File, Decision]:
    scan([lib], cfg, index)
    d = index.session.scalar(select(Decision).where(Decision.current.is_(True)))
    return index.get(d.file_id), d


@contextlib.contextmanager
def bind_mount(path: Path):
    """`path` bind-mounted on itself: the same filesystem and device number, another
    mount (a rename out of it fails with EXDEV)."""
    subprocess.run(["mount", "--bind", str(path), str(path)], check=True)
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], capture_output=True)


def test_a_photo_on_another_volume_is_quarantined_at_its_top_by_a_rename(tmp_path):
    with mounted_tmpfs(tmp_path / "disk") as disk:
        lib = disk / "Photos"
        _, small = pair(lib)
        inode = small.stat().st_ino
        cfg = Config(workers=1, roots=(Root(disk),))
        with Index(tmp_path / "i.sqlite3") as index:
            f, d = flagged(index, cfg, disk)
            out = Mover(index, cfg).quarantine(f, d)
            moved = Path(out.path)
            assert out.moved and not small.exists() and out.note == ""
            assert moved.is_relative_to(disk / VOLUME_FOLDER), moved
            assert moved.stat().st_ino == inode  # renamed, not copied
            assert (disk / VOLUME_FOLDER).stat().st_mode & 0o777 == 0o700
            assert not default_data_dir().joinpath("quarantine").exists()
            # listed like any other, never indexed as a newcomer, and restored
            assert [e.path for e in q.entries(index)] == [str(moved)]
            scan([disk], cfg, index)
            assert index.session.scalar(select(File).where(File.path == str(moved))).status == (
                QUARANTINED
            )
            assert index.session.query(File).count() == 2
            back = Mover(index, cfg).restore(index.get(f.id))
            assert back.path == str(small) and small.stat().st_ino == inode
            assert index.get(f.id).status == ACTIVE


def test_a_photo_on_the_home_volume_goes_to_the_home_quarantine(tmp_path):
    lib = tmp_path / "lib"
    pair(lib)
    cfg = Config(workers=1, roots=(Root(lib),))
    with Index(tmp_path / "i.sqlite3") as index:
        f, d = flagged(index, cfg, lib)
        out = Mover(index, cfg).quarantine(f, d)
        assert Path(out.path).is_relative_to(default_data_dir() / "quarantine")
        assert not any(p.name == VOLUME_FOLDER for p in tmp_path.rglob("*"))


def test_quarantine_dir_set_sends_every_file_there(tmp_path):
    with mounted_tmpfs(tmp_path / "disk") as disk:
        pair(disk / "Photos")
        cfg = Config(workers=1, roots=(Root(disk),), quarantine_dir=tmp_path / "Q")
        with Index(tmp_path / "i.sqlite3") as index:
            f, d = flagged(index, cfg, disk)
            out = Mover(index, cfg).quarantine(f, d)
            assert Path(out.path).is_relative_to(tmp_path / "Q")
            assert not (disk / VOLUME_FOLDER).exists()


@pytest.mark.parametrize("squatter", ["symlink", "file", "other user"])
def test_a_planted_volume_folder_is_refused_and_the_home_quarantine_used(
    tmp_path, squatter, caplog
):
    with mounted_tmpfs(tmp_path / "disk") as disk:
        lib = disk / "Photos"
        pair(lib)
        bait = disk / "bait"
        bait.mkdir()
        planted = disk / VOLUME_FOLDER
        if squatter == "symlink":
            planted.symlink_to(bait)
        elif squatter == "file":
            planted.write_bytes(b"")
        else:
            planted.mkdir(mode=0o777)
            os.chown(planted, 4242, 4242)
        cfg = Config(workers=1, roots=(Root(lib),))
        volumes._said.clear()
        with Index(tmp_path / "i.sqlite3") as index, caplog.at_level(logging.WARNING):
            f, d = flagged(index, cfg, lib)
            out = Mover(index, cfg).quarantine(f, d)
        assert out.moved and Path(out.path).is_relative_to(default_data_dir() / "quarantine")
        assert "refused" in out.note and "quarantined in" in out.note
        assert [r for r in caplog.records if getattr(r, "event", "") == "quarantine_fallback"]
        assert list(bait.iterdir()) == []
        if squatter == "other user":
            assert list(planted.iterdir()) == []


def test_a_volume_top_the_user_cannot_write_falls_back_to_home(tmp_path, cli):
    """A NAS mount whose top belongs to root, the photo folder to the user: run in a
    real process without the capability that lets root write anywhere."""
    with mounted_tmpfs(tmp_path / "disk") as disk:
        lib = disk / "Photos"
        _, small = pair(lib)
        os.chmod(disk, 0o555)
        conf = tmp_path / "c.toml"
        conf.write_text(f'roots = ["{lib}"]\naction = "quarantine"\n')
        proc = subprocess.run(
            [*unprivileged(), sys.executable, "-m", "watcherd", "--config", str(conf),
             "--db", str(tmp_path / "i.sqlite3"), "scan"],
            capture_output=True, text=True, timeout=300,
        )  # fmt: skip
        assert proc.returncode == 0, proc.stderr
        assert "cannot be made" in proc.stdout + proc.stderr
        assert not small.exists() and not (disk / VOLUME_FOLDER).exists()
        home_q = default_data_dir() / "quarantine"
        assert [p.name for p in home_q.rglob("*.jpg")] == ["small.jpg"]


def test_a_bind_mounted_folder_is_a_volume_of_its_own(tmp_path):
    """One filesystem under two mounts: a rename between them fails with EXDEV, so the
    bind mount's own top takes the quarantine."""
    with mounted_tmpfs(tmp_path / "disk") as disk:
        lib = disk / "Photos"
        _, small = pair(lib)
        with bind_mount(lib):
            cfg = Config(workers=1, roots=(Root(lib),))
            with Index(tmp_path / "i.sqlite3") as index:
                f, d = flagged(index, cfg, lib)
                out = Mover(index, cfg).quarantine(f, d)
            assert Path(out.path).is_relative_to(lib / VOLUME_FOLDER), out.path
            assert not small.exists()


def test_a_move_between_two_mounts_of_one_filesystem_copies(tmp_path):
    """Same device number, yet rename() says EXDEV: the move copies, verifies, and
    unlinks, as across filesystems (it failed, "Invalid cross-device link")."""
    with mounted_tmpfs(tmp_path / "disk") as disk:
        lib = disk / "Photos"
        _, small = pair(lib)
        (disk / "Q").mkdir()
        with bind_mount(lib):
            cfg = Config(workers=1, roots=(Root(lib),), quarantine_dir=disk / "Q")
            with Index(tmp_path / "i.sqlite3") as index:
                f, d = flagged(index, cfg, lib)
                out = Mover(index, cfg).quarantine(f, d)
            assert out.moved and Path(out.path).is_relative_to(disk / "Q")
            assert not small.exists() and Path(out.path).is_file()


def test_purge_from_a_volume_quarantine_uses_that_volume_s_trash(tmp_path):
    """Purged, the photo goes to the trash of its own volume (as the file manager would
    put it), whose "Restore" puts it back where the user had it."""
    with mounted_tmpfs(tmp_path / "disk") as disk:
        lib = disk / "Photos"
        _, small = pair(lib)
        cfg = Config(workers=1, roots=(Root(lib),))
        with Index(tmp_path / "i.sqlite3") as index:
            f, d = flagged(index, cfg, lib)
            Mover(index, cfg).quarantine(f, d)
            done, failed = q.purge(index, q.entries(index))
        assert (done, failed) == (1, [])
        trash = disk / f".Trash-{os.getuid()}"
        assert [p.name for p in (trash / "files").iterdir()] == ["small.jpg"]
        info = (trash / "info" / "small.jpg.trashinfo").read_text()
        assert f"Path={small}" in info
        assert not any((disk / VOLUME_FOLDER).rglob("*.jpg"))
