"""What real folders hold must neither kill nor deafen watcherd (issue 22): names that
are not UTF-8, trees a thousand folders deep, roots deleted and made again, symbolic
links leading out of a root."""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path

import pytest
from conftest import invoke
from helpers import photo, save

from watcherd.config import Config, Root
from watcherd.index import Index
from watcherd.scanner import scan

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from deep_tree import deep_folder, remove_deep  # the stress script's own

sys.path.pop(0)

LATIN1 = os.fsdecode(b"caf\xe9 \xe0 la plage.jpg")  # a name from an old camera or a zip
OTHER = os.fsdecode(b"\xff\xfe copie.jpg")


def report_rows(*common: str) -> list[dict]:
    return json.loads(invoke(*common, "report", "--format", "json").stdout)["duplicates"]


def test_names_that_are_not_utf8_are_indexed_decided_and_shown(tmp_path, daemons):
    lib = tmp_path / "lib"
    img = photo(7)
    save(img, lib / LATIN1)
    save(img.resize((320, 240)), lib / "small.jpg")
    common = ["--db", str(tmp_path / "index.sqlite3")]
    first = invoke(*common, "scan", "--json", str(lib))
    assert json.loads(first.stdout)["near"] == 1
    again = json.loads(invoke(*common, "scan", "--json", str(lib)).stdout)
    assert (again["new"], again["skipped"], again["missing"]) == (0, 2, 0)  # found as it was
    # a name whose order as text differs from its order as the index stores it arrives
    # beside one that is not UTF-8: each must still be recognised for what it is
    save(photo(20, (96, 72)), lib / os.fsdecode(b"a\xe9.jpg"))
    invoke(*common, "scan", str(lib))
    save(photo(21, (96, 72)), lib / "a\ue000.jpg")
    again = json.loads(invoke(*common, "scan", "--json", str(lib)).stdout)
    assert (again["new"], again["skipped"], again["missing"]) == (1, 3, 0)
    rows = report_rows(*common)
    assert [r["original"] for r in rows] == [str(lib / LATIN1)]  # JSON keeps the real name
    table = invoke(*common, "report").stdout
    assert "caf\ufffd \ufffd la plage.jpg" in table  # shown with replacement characters
    # the daemon decides such a name on arrival, and starts again with it on disk
    d = daemons(tmp_path, roots=[lib], db=tmp_path / "index.sqlite3").start()
    shutil.copyfile(lib / LATIN1, lib / OTHER)
    event = d.wait_decided(lib / OTHER)
    assert event["event"] == "duplicate" and event["kind"] == "exact"
    assert d.stop() == 0
    d2 = daemons(tmp_path, roots=[lib], db=tmp_path / "index.sqlite3").start()
    assert d2.stop() == 0


def test_a_tree_a_thousand_folders_deep_is_scanned_and_watched(tmp_path, daemons):
    root = tmp_path / "root"
    root.mkdir()
    try:
        bottom = deep_folder(root, 1000)
        img = photo(11)
        save(img, Path(str(bottom) + "/deep.jpg"))
        stats = scan([root], Config(workers=1), Index(tmp_path / "scan.sqlite3"))
        assert (stats.seen, stats.new, stats.errors) == (1, 1, 0)
        # the daemon: watchdog's own walk of such a tree fails (RecursionError); watcherd
        # says so and keeps watching by rescanning, never deaf
        d = daemons(tmp_path, roots=[root], config="poll_interval = 1.0\n").start()
        save(img.resize((320, 240)), root / "top.jpg")
        save(photo(12), Path(str(bottom) + "/new.jpg"))
        assert d.wait_decided(root / "top.jpg")["event"] == "duplicate"
        assert d.wait_decided(Path(str(bottom) + "/new.jpg"))["event"] == "indexed"
        assert d.stop() == 0
    finally:
        remove_deep(root)


def test_a_root_deleted_and_made_again_is_watched_again(tmp_path, daemons):
    root = tmp_path / "WhatsApp Images"
    save(photo(1), root / "a.jpg")
    d = daemons(tmp_path, roots=[root]).start()
    shutil.rmtree(root)
    d.wait_for(lambda e: e.get("reason") == "root gone", what="the root noticed gone")
    root.mkdir()
    save(photo(2), root / "b.jpg")
    assert d.wait_decided(root / "b.jpg")["event"] == "indexed"
    save(photo(2).resize((320, 240)), root / "b small.jpg")
    assert d.wait_decided(root / "b small.jpg")["event"] == "duplicate"
    assert d.stop() == 0


def test_a_root_replaced_by_a_symlink_is_not_followed(tmp_path, daemons):
    root, outside = tmp_path / "Pictures", tmp_path / "elsewhere"
    save(photo(1), root / "a.jpg")
    save(photo(3), outside / "private.jpg")
    d = daemons(tmp_path, roots=[root]).start()
    shutil.rmtree(root)
    root.symlink_to(outside)
    d.wait_for(lambda e: e.get("reason") == "root gone", what="the root noticed replaced")
    save(photo(3).resize((320, 240)), outside / "private small.jpg")
    root.unlink()
    root.mkdir()  # a real folder again: watched again, and only what is in it
    save(photo(4), root / "c.jpg")
    assert d.wait_decided(root / "c.jpg")["event"] == "indexed"
    assert d.stop() == 0
    assert not d.of("indexed", root / "private small.jpg")
    assert not d.of("duplicate", root / "private small.jpg")


def test_a_symlinked_folder_on_the_command_line_is_not_followed(tmp_path):
    lib, outside = tmp_path / "lib", tmp_path / "outside"
    img = photo(5)
    save(img, lib / "a.jpg")
    save(img.resize((320, 240)), outside / "private.jpg")
    (lib / "link").symlink_to(outside)
    q = tmp_path / "Q"
    cfg = tmp_path / "config.toml"
    cfg.write_text(f'roots = ["{lib}"]\naction = "quarantine"\nquarantine_dir = "{q}"\n')
    common = ["--config", str(cfg), "--db", str(tmp_path / "index.sqlite3")]
    out = invoke(*common, "scan", str(lib / "link"))
    assert "symbolic link: not followed" in out.stdout
    assert "Scanned 0 files" in out.stdout
    invoke(*common, "scan", str(lib))  # the root itself: the link inside is skipped too
    assert (outside / "private.jpg").exists()  # never moved out from outside the roots
    assert not q.exists() or not any(q.rglob("*.jpg"))


def test_a_file_whose_real_place_is_outside_its_root_is_never_moved(tmp_path):
    """The mover checks where a file really is, not where its path says."""
    from sqlalchemy import select

    from watcherd.actions import Mover
    from watcherd.models import Decision

    lib, outside = tmp_path / "lib", tmp_path / "outside"
    img = photo(6)
    save(img, outside / "big.jpg")
    save(img.resize((320, 240)), outside / "small.jpg")
    lib.mkdir()
    (lib / "link").symlink_to(outside)
    cfg = Config(workers=1, roots=(Root(lib),), quarantine_dir=tmp_path / "Q")
    with Index(tmp_path / "i.sqlite3") as index:
        scan([outside], Config(workers=1), index)
        d = index.session.scalar(select(Decision).where(Decision.current.is_(True)))
        f = index.get(d.file_id)
        f.path = str(lib / "link" / Path(f.path).name)  # as if found through the link
        out = Mover(index, cfg).quarantine(f, d)
    assert not out.moved and "outside" in out.note
    assert (outside / "small.jpg").exists()


def test_restore_all_brings_back_what_a_scan_of_a_named_folder_quarantined(tmp_path):
    lib, q = tmp_path / "Downloads", tmp_path / "Q"
    img = photo(8)
    save(img, lib / "a.jpg")
    save(img.resize((320, 240)), lib / "a small.jpg")
    cfg = tmp_path / "config.toml"
    cfg.write_text(f'action = "quarantine"\nquarantine_dir = "{q}"\n')  # no roots configured
    common = ["--config", str(cfg), "--db", str(tmp_path / "index.sqlite3")]
    invoke(*common, "scan", str(lib))
    assert not (lib / "a small.jpg").exists()
    invoke(*common, "restore", "--all")
    assert (lib / "a small.jpg").exists()


QUEUE = Path("/proc/sys/fs/inotify/max_queued_events")


def test_event_queue_overflow_is_answered_by_rescans_that_end(tmp_path, daemons):
    """A kernel event queue of 16 for the daemon's inotify instance: 300 photos moved
    into 40 watched folders overflow it again and again. Before, each rescan's own
    listing and reading refilled the queue (open and close events): no decision, full
    CPU, SIGTERM ignored. Every photo must be decided and SIGTERM obeyed."""
    if os.geteuid() != 0 or not os.access(QUEUE, os.W_OK):
        pytest.skip("setting fs.inotify.max_queued_events needs root")
    root, staging = tmp_path / "root", tmp_path / "staging"
    for k in range(40):
        save(photo(1000 + k, (96, 72)), root / f"f{k:02d}" / "old.jpg")
    names = []
    for k in range(300):
        names.append(save(photo(2000 + k, (96, 72)), staging / f"p{k:03d}.jpg").name)
    before = QUEUE.read_text()
    QUEUE.write_text("16\n")
    try:  # the limit is read when an inotify instance is made: the daemon's, at start
        d = daemons(tmp_path, roots=[root]).start()
    finally:
        QUEUE.write_text(before)
    targets = [root / f"f{k % 40:02d}" / name for k, name in enumerate(names)]
    for name, target in zip(names, targets, strict=True):
        os.rename(staging / name, target)
    d.wait_for(lambda e: e["event"] == "rescan", what="a rescan after the overflow")
    for target in targets:
        d.wait_decided(target, timeout=120)
    assert d.stop(timeout=5) == 0


def test_restore_never_writes_through_a_root_or_folder_replaced_by_a_symlink(tmp_path):
    lib, q, outside = tmp_path / "lib", tmp_path / "Q", tmp_path / "outside"
    outside.mkdir()
    img = photo(9)
    save(img, lib / "a.jpg")
    save(img.resize((320, 240)), lib / "sub" / "a small.jpg")
    save(photo(10), lib / "b.jpg")
    save(photo(10).resize((320, 240)), lib / "b small.jpg")
    cfg = tmp_path / "config.toml"
    cfg.write_text(f'roots = ["{lib}"]\naction = "quarantine"\nquarantine_dir = "{q}"\n')
    common = ["--config", str(cfg), "--db", str(tmp_path / "index.sqlite3")]
    invoke(*common, "scan")
    assert not (lib / "sub" / "a small.jpg").exists() and not (lib / "b small.jpg").exists()
    # a folder below the root, then the root itself, replaced by links to elsewhere
    shutil.rmtree(lib / "sub")
    (lib / "sub").symlink_to(outside)
    invoke(*common, "restore", "--all", check=False)
    assert list(outside.iterdir()) == []
    assert (lib / "b small.jpg").exists()  # the file beside it went back as usual
    lib.rename(tmp_path / "lib.old")
    lib.symlink_to(outside)
    proc = invoke(*common, "restore", "--all", check=False)
    assert list(outside.iterdir()) == []  # nothing written, no folder made, out there
    assert "symbolic link" in proc.stdout + proc.stderr
    assert [p.name for p in q.rglob("*.jpg")] == ["a small.jpg"]  # still safe in quarantine
