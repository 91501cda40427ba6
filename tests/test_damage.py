"""Damage and exposure (issue 22): a truncated arrays file, a corrupt index, a full
disk, and files others could read."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

from conftest import mounted_tmpfs, run_cli
from helpers import photo, save


def test_a_truncated_arrays_file_is_rebuilt_not_fatal(tmp_path, daemons):
    pics = tmp_path / "pics"
    a = save(photo(1), pics / "a.jpg")
    d = daemons(tmp_path, [pics]).start()
    d.wait_decided(a)
    assert d.stop() == 0
    arrays = tmp_path / "index.sqlite3.arrays.npz"
    data = arrays.read_bytes()
    arrays.write_bytes(data[: len(data) // 2])  # a power cut after the rename
    d = daemons(tmp_path, [pics]).start()
    assert d.of("arrays")[0]["source"] == "index"  # built from the rows instead
    save(photo(1).resize((320, 240)), pics / "a small.jpg")
    assert d.wait_decided(pics / "a small.jpg")["event"] == "duplicate"
    assert d.stop() == 0


def test_a_corrupt_index_gets_a_few_clear_lines_and_its_own_exit_status(tmp_path):
    db = tmp_path / "index.sqlite3"
    run_cli("--db", str(db), "status")
    data = db.read_bytes()  # a disk error wrote over its pages (its header survived)
    db.write_bytes(data[:100] + b"a disk error wrote over it" * ((len(data) - 100) // 26 + 1))
    for args in (["status"], ["report"], ["scan", str(tmp_path)], ["run", str(tmp_path)]):
        proc = run_cli("--db", str(db), *args, check=False)
        assert proc.returncode == 65, (args, proc.stderr)
        assert "Traceback" not in proc.stderr
        assert "is damaged" in proc.stderr and "mv " in proc.stderr
        assert len(proc.stderr.strip().splitlines()) <= 8
    unit = (Path(__file__).parents[1] / "watcherd" / "data" / "watcherd.service").read_text()
    assert "RestartPreventExitStatus=65" in unit


def test_a_full_disk_is_said_once_and_the_daemon_carries_on_when_there_is_room(tmp_path, daemons):
    pics = tmp_path / "pics"
    pics.mkdir()
    with mounted_tmpfs(tmp_path / "small", size="1m") as small:
        d = daemons(tmp_path, [pics], db=small / "index.sqlite3", debug=True).start()
        fill(small / "filler")
        for k in range(3):
            save(photo(40 + k, (320, 240)), pics / f"p{k}.jpg")
        d.wait_for(lambda e: e.get("reason") == "disk full", what="disk full said")
        fill(small / "filler2")  # what a failed write gave back: full it stays
        # backing off: tried again and again, said once
        d.wait_for(lambda e: e["event"] == "retry", count=3, what="three retries")
        (small / "filler").unlink()
        (small / "filler2").unlink()
        for k in range(3):
            d.wait_decided(pics / f"p{k}.jpg")
        # said once the step that decided them is over: a moment after their own lines
        d.wait_for(lambda e: e["event"] == "recovered", what="the end of it said")
        said = [e for e in d.events if e["event"] == "error" and e.get("reason") == "disk full"]
        assert len(said) == 1, said
        assert d.stop() == 0


def fill(path: Path) -> None:
    """Fill the filesystem holding `path` to its last block."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT)
    try:
        while os.write(fd, b"\1" * 4096):
            pass
    except OSError:
        pass
    finally:
        os.close(fd)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_what_shows_the_photos_is_for_the_user_alone_whatever_the_umask(tmp_path):
    lib, q, home = tmp_path / "lib", tmp_path / "Q", tmp_path / "data"
    img = photo(2)
    save(img, lib / "a.jpg")
    save(img.resize((320, 240)), lib / "a small.jpg")
    cfg = tmp_path / "config.toml"
    cfg.write_text(f'roots = ["{lib}"]\naction = "quarantine"\nquarantine_dir = "{q}"\n')
    db = home / "watcherd" / "index.sqlite3"
    common = ["--config", str(cfg), "--db", str(db)]
    env = {**os.environ}
    umask = "import os, sys, runpy; os.umask(0o022); sys.argv[0] = 'watcherd';"
    run = "runpy.run_module('watcherd', run_name='__main__')"

    def watcherd(*args: str) -> None:
        subprocess.run(
            [sys.executable, "-c", umask + run, *common, *args], check=True, env=env,
            capture_output=True,
        )  # fmt: skip

    watcherd("scan")
    watcherd("report", "--format", "html", "-o", str(tmp_path / "report.html"))
    assert _mode(db) == 0o600 and _mode(db.parent) == 0o700
    for side in db.parent.glob("index.sqlite3-*"):  # -wal, -shm
        assert _mode(side) == 0o600, side
    assert _mode(tmp_path / "report.html") == 0o600
    assert _mode(q) == 0o700
    for folder in (p for p in q.rglob("*") if p.is_dir()):
        assert _mode(folder) == 0o700, folder
