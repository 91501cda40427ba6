"""`action = "link"`: an exact copy becomes a link of the kept file, its path staying;
journalled, recovered after a SIGKILL at every step, undone by `watcherd restore`."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

import pytest
from conftest import invoke, mounted_reflink_fs, mounted_tmpfs, run_cli
from helpers import photo, save
from sqlalchemy import select

from watcherd import linking
from watcherd.actions import ActionError, Mover
from watcherd.config import Config, Root
from watcherd.index import Index
from watcherd.models import ACTIVE, INTENT, ROLLED_BACK, Decision, File, Move
from watcherd.scanner import scan

LIST_JSON = ("quarantine", "list", "--format", "json")


def sha(p: Path) -> str:
    return hashlib.sha256(p.read_bytes()).hexdigest()


def library(lib: Path) -> tuple[Path, Path, Path]:
    """kept.jpg, an exact copy sub/copy.jpg (newer, its own mode), and a resized copy."""
    img = photo(11, (640, 480))
    kept = save(img, lib / "kept.jpg")
    os.utime(kept, ns=(1_500_000_000 * 10**9,) * 2)
    copy = lib / "sub" / "copy.jpg"
    copy.parent.mkdir(parents=True)
    shutil.copyfile(kept, copy)
    os.utime(copy, ns=(1_600_000_000 * 10**9,) * 2)
    os.chmod(copy, 0o640)
    small = save(img.resize((320, 240)), lib / "small.jpg")
    return kept, copy, small


def link_config(lib: Path, **kw) -> Config:
    return Config(workers=1, roots=(Root(lib),), action="link", **kw)


def inodes(*paths: Path) -> set[int]:
    return {p.stat().st_ino for p in paths}


def test_an_exact_copy_becomes_a_link_and_a_near_copy_is_only_flagged(tmp_path):
    with mounted_tmpfs(tmp_path / "disk") as lib:  # no reflink on tmpfs: a hard link
        kept, copy, small = library(lib)
        before = {p: sha(p) for p in (kept, copy, small)}
        with Index(tmp_path / "i.sqlite3") as index:
            stats = scan([lib], link_config(lib), index)
            assert (stats.linked, stats.quarantined) == (1, 0)
            assert {p: sha(p) for p in (kept, copy, small)} == before  # every path, same bytes
            assert len(inodes(kept, copy)) == 1 and len(inodes(kept, small)) == 2
            decisions = {
                index.get(d.file_id).path: d.action
                for d in index.session.scalars(select(Decision).where(Decision.current))
            }
            assert decisions == {str(copy): "linked", str(small): "flagged"}
            # the index follows the file, so a scan finds nothing changed
            again = scan([lib], link_config(lib), index)
            assert (again.changed, again.skipped) == (0, 3)
        report = json.loads(
            invoke("--db", str(tmp_path / "i.sqlite3"), "report", "--format", "json").stdout
        )
        assert report["summary"]["linked"] == 1
        assert report["summary"]["linked_bytes"] == copy.stat().st_size


def test_a_reflink_keeps_the_copy_a_file_of_its_own(tmp_path):
    """Where the filesystem shares extents (XFS, btrfs), the copy becomes a clone: no
    bytes twice on disk, yet its own inode, permissions and time, and an edit to the
    kept file later does not reach it."""
    with mounted_reflink_fs(tmp_path / "xfs") as lib:
        kept, copy, _ = library(lib)
        copy_bytes, st = copy.read_bytes(), copy.stat()
        with Index(tmp_path / "i.sqlite3") as index:
            assert scan([lib], link_config(lib), index).linked == 1
            d = index.session.scalar(select(Decision).where(Decision.kind == "exact"))
            assert d.action == "linked"
        now = copy.stat()
        assert len(inodes(kept, copy)) == 2 and now.st_ino != st.st_ino  # a new file, cloned
        assert (now.st_mode & 0o777, now.st_mtime_ns) == (0o640, st.st_mtime_ns)
        save(photo(98, (640, 480)), kept)
        assert copy.read_bytes() == copy_bytes


def test_restore_gives_a_linked_copy_its_own_bytes_back(tmp_path):
    with mounted_tmpfs(tmp_path / "disk") as lib:
        kept, copy, _ = library(lib)
        db = tmp_path / "i.sqlite3"
        with Index(db) as index:
            scan([lib], link_config(lib), index)
            file_id = index.file_by_path(str(copy)).id
        listed = json.loads(invoke("--db", str(db), *LIST_JSON).stdout)
        assert [(e["id"], e["linked"]) for e in listed] == [(file_id, True)]
        out = invoke("--db", str(db), "restore", str(file_id))
        assert "own bytes" in out.stdout
        assert len(inodes(kept, copy)) == 2 and sha(copy) == sha(kept)
        assert copy.stat().st_mtime_ns == 1_600_000_000 * 10**9  # its own time again
        with Index(db) as index:
            f = index.file_by_path(str(copy))
            assert f.status == ACTIVE and f.duplicate_of_id is None
            assert not index.session.scalar(
                select(Decision).where(Decision.current, Decision.file_id == f.id)
            )
        assert json.loads(invoke("--db", str(db), *LIST_JSON).stdout) == []


def test_a_kept_file_changed_since_it_was_read_is_never_linked_and_nothing_is_lost(tmp_path):
    lib = tmp_path / "lib"
    kept, copy, _ = library(lib)
    copy_bytes = copy.read_bytes()
    cfg = Config(workers=1, roots=(Root(lib),), action="flag")
    with Index(tmp_path / "i.sqlite3") as index:
        scan([lib], cfg, index)
        d = index.session.scalar(select(Decision).where(Decision.kind == "exact"))
        f, partner = index.get(d.file_id), index.get(d.original_id)
        save(photo(99, (640, 480)), kept)  # edited in place, after it was indexed
        os.utime(kept, ns=(1_500_000_000 * 10**9,) * 2)
        with pytest.raises(ActionError, match="no longer has the same bytes"):
            linking.link(Mover(index, cfg), f, partner, d)
        move = index.session.scalar(select(Move))
        assert move.state == ROLLED_BACK
    assert copy.read_bytes() == copy_bytes and kept.exists()
    assert [p.name for p in copy.parent.iterdir()] == ["copy.jpg"]  # no temporary left


def test_a_copy_on_another_filesystem_than_its_kept_file_is_left_alone(tmp_path):
    with mounted_tmpfs(tmp_path / "disk") as disk:
        lib = tmp_path / "lib"
        kept, copy, _ = library(lib)
        other = disk / "copy.jpg"
        shutil.copy2(copy, other)
        os.unlink(copy)
        cfg = Config(workers=1, roots=(Root(lib), Root(disk)), action="link")
        with Index(tmp_path / "i.sqlite3") as index:
            stats = scan([lib, disk], cfg, index)
            assert stats.linked == 0
        assert len(inodes(kept, other)) == 2 and sha(other) == sha(kept)


@pytest.mark.parametrize("step", ["intent", "linked", "renamed"])
def test_sigkill_at_each_step_of_a_link_leaves_every_path_whole(tmp_path, step):
    with mounted_tmpfs(tmp_path / "disk") as lib:
        kept, copy, small = library(lib)
        before = {p: sha(p) for p in (kept, copy, small)}
        conf = tmp_path / "c.toml"
        conf.write_text(f'roots = ["{lib}"]\naction = "link"\nworkers = 1\n')
        args = ["--config", str(conf), "--db", str(tmp_path / "i.sqlite3"), "scan"]
        crashed = run_cli(*args, env={"WATCHERD_CRASH_AT": step}, check=False)
        assert crashed.returncode == -9, crashed.stderr
        assert {p: sha(p) for p in (kept, copy, small)} == before
        invoke(*args)  # opens the index as a writer: recovers, then links again
        assert {p: sha(p) for p in (kept, copy, small)} == before
        assert len(inodes(kept, copy)) == 1
        names = sorted(p.name for p in lib.rglob("*"))
        assert names == ["copy.jpg", "kept.jpg", "small.jpg", "sub"]  # no temporary left
        with Index(tmp_path / "i.sqlite3") as index:
            assert index.session.scalar(select(Move).where(Move.state == INTENT)) is None
            f = index.session.scalar(select(File).where(File.path == str(copy)))
            d = index.session.scalar(select(Decision).where(Decision.file_id == f.id))
            assert (f.status, d.action) == (ACTIVE, "linked")


def test_a_daemon_links_an_exact_copy_dropped_into_a_watched_folder(tmp_path, daemons):
    lib = tmp_path / "lib"
    kept = save(photo(12, (640, 480)), lib / "kept.jpg")
    d = daemons(tmp_path, config=f'roots = ["{lib}"]\naction = "link"\n').start()
    copy = tmp_path / "copy.jpg"
    shutil.copyfile(kept, copy)
    os.rename(copy, lib / "copy.jpg")
    dup = d.wait_path("duplicate", lib / "copy.jpg")[0]
    assert dup["action"] == "linked"
    assert d.stop() == 0
    # ext4 or tmpfs here: a hard link; a reflink on btrfs or XFS (a file of its own)
    same = (lib / "copy.jpg").stat().st_ino == kept.stat().st_ino
    assert same == ("hard link" in (dup.get("note") or "")), dup
    assert (lib / "copy.jpg").read_bytes() == kept.read_bytes()


def test_a_kept_copy_on_another_machine_is_never_linked_to(tmp_path):
    """In an index several machines share, the kept file's path names a file on its own
    machine's disk: the same path here is another file, even with the same bytes."""
    lib = tmp_path / "lib"
    kept, copy, _ = library(lib)
    cfg = link_config(lib)
    with Index(tmp_path / "i.sqlite3", writer=True) as index:
        scan([lib], Config(workers=1, roots=(Root(lib),), action="flag"), index)
        d = index.session.scalar(select(Decision).where(Decision.kind == "exact"))
        f, partner = index.get(d.file_id), index.get(d.original_id)
        partner.machine = "nas"
        out = linking.link(Mover(index, cfg), f, partner, d)
    assert not out.moved and "another machine (nas)" in out.note
    assert len(inodes(kept, copy)) == 2
