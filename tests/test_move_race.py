"""A move is its owner's alone while the owner lives (issue 22: the data loss).

A `watcherd scan` that quarantines is stopped (SIGSTOP) at each step of a move; while
it is stopped, other commands run against the same index (readers and a writer that
recovers), then the scan goes on. Before, any command that found no daemon treated the
scan's live intent as a crash and resolved it, and the scan's own roll-back then
unlinked the only copy. Every file must end up exactly once, and the index must agree.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import mounted_tmpfs, run_cli
from test_quarantine import SAME_FS_STEPS, all_contents, check_invariant, setup_pair

from watcherd import actions

CASES = [(s, False) for s in SAME_FS_STEPS] + [(s, True) for s in actions.STEPS]


def _stopped(pid: int) -> bool:
    with open(f"/proc/{pid}/stat") as fh:
        return fh.read().rsplit(")", 1)[1].split()[0] == "T"


def wait_until_stopped(proc: subprocess.Popen, deadline: float = 60.0) -> None:
    end = time.monotonic() + deadline
    while not _stopped(proc.pid):
        if proc.poll() is not None:
            raise AssertionError(f"the scan ended before pausing:\n{proc.stderr.read()}")
        if time.monotonic() > end:
            raise AssertionError("the scan never reached the step")
        time.sleep(0.02)


def write_config(tmp_path: Path, lib: Path, qdir: Path) -> Path:
    cfg = tmp_path / "config.toml"
    cfg.write_text(
        f'roots = ["{lib}"]\naction = "quarantine"\nquarantine_dir = "{qdir}"\nworkers = 1\n'
    )
    return cfg


@pytest.mark.parametrize(
    ("step", "cross_fs"), CASES, ids=[f"{s}-{'cross' if c else 'same'}" for s, c in CASES]
)
def test_commands_during_a_paused_move_lose_nothing(tmp_path, step, cross_fs):
    qdir = tmp_path / "Q"
    ctx = mounted_tmpfs(qdir) if cross_fs else contextlib.nullcontext(qdir)
    with ctx:
        t = setup_pair(tmp_path, qdir)
        expected = all_contents(t.lib)
        db = tmp_path / "index.sqlite3"
        common = ["--config", str(write_config(tmp_path, t.lib, qdir)), "--db", str(db)]
        scan = subprocess.Popen(
            [sys.executable, "-m", "watcherd", *common, "scan", str(t.lib)],
            env={**os.environ, "WATCHERD_PAUSE_AT": step},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            wait_until_stopped(scan)
            run_cli(*common, "quarantine", "list")
            run_cli(*common, "status")
            run_cli(*common, "restore", "--all", check=False)  # a writer: it recovers
        finally:
            scan.send_signal(signal.SIGCONT)
        out, err = scan.communicate(timeout=120)
        assert scan.returncode == 0, err
        assert "moved 1 files" in out, out
        check_invariant(db, t.lib, qdir, expected)
        assert not t.small.exists()


def test_a_new_file_indexed_meanwhile_by_another_process_is_not_inserted_twice(tmp_path):
    """`scan` judged a path new, then a daemon (or a restore) put a row there and
    committed before the scan's next transaction: the scan's insert died with
    `UNIQUE constraint failed: files.path` (issue 22), and the scan with it."""
    from helpers import photo, save
    from sqlalchemy import func, select

    from watcherd.config import Config
    from watcherd.fingerprint import fingerprint_file
    from watcherd.index import Index
    from watcherd.models import File
    from watcherd.pipeline import Pipeline

    db, cfg = tmp_path / "index.sqlite3", Config(workers=1)
    path = save(photo(3), tmp_path / "lib" / "a.jpg")
    fp = fingerprint_file(str(path))
    with Index(db, writer=True) as mine, Index(db, writer=True) as theirs:
        scanning = Pipeline(mine, cfg)
        mine.commit()  # the scan looked ("no row at this path") in a transaction now over
        Pipeline(theirs, cfg).process(fp, str(path.parent))
        theirs.commit()
        out = scanning.process(fp, str(path.parent), new=True)
        mine.commit()
        assert out.status == "indexed"
        assert mine.session.scalar(select(func.count()).select_from(File)) == 1


def test_a_file_moved_away_after_it_was_read_is_not_recorded_where_it_was(tmp_path):
    """A scan (or a daemon) read a file; before its decision, another process moved it
    (a daemon's quarantine, a restore: the row went with the file). Recorded as read,
    it became a row saying "active" where nothing is: the stress test below caught it
    once in a CI run (2026-12-07, fifth session). Now the decision looks, under the
    write lock, whether the file is still there as it was read."""
    from helpers import photo, save
    from sqlalchemy import select

    from watcherd.config import Config
    from watcherd.fingerprint import fingerprint_file
    from watcherd.index import Index
    from watcherd.models import File
    from watcherd.pipeline import GONE, Pipeline

    path = save(photo(3), tmp_path / "lib" / "a.jpg")
    fp = fingerprint_file(str(path))
    os.rename(path, tmp_path / "elsewhere.jpg")  # moved by another process meanwhile
    with Index(tmp_path / "index.sqlite3", writer=True) as index:
        out = Pipeline(index, Config(workers=1)).process(fp, str(path.parent), new=True)
        index.commit()
        assert out.status == GONE
        assert index.session.scalars(select(File.path)).all() == []


def test_a_file_a_restore_is_putting_back_is_left_to_the_restore(tmp_path):
    """A restore renamed the file back and has yet to record it; a daemon watching the
    folder read it meanwhile. Recorded, it was a second row for the file, which that
    daemon could quarantine again onto the name the restore's row still held, dropping
    that row (the restore then died with StaleDataError: the stress test below caught
    it in CI, 2026-12-07). The restore records it, with its history."""
    from helpers import photo, save
    from sqlalchemy import func, select

    from watcherd.config import Config
    from watcherd.fingerprint import fingerprint_file
    from watcherd.index import Index
    from watcherd.models import QUARANTINED, File, Move
    from watcherd.pipeline import GONE, Pipeline

    db, cfg = tmp_path / "index.sqlite3", Config(workers=1)
    back = save(photo(3), tmp_path / "lib" / "a.jpg")  # already renamed back
    fp = fingerprint_file(str(back))
    quarantined = str(tmp_path / "Q" / "a.jpg")
    with Index(db, writer=True) as theirs:  # the restore's row and its intent
        Pipeline(theirs, cfg).process(fp, str(back.parent))
        row = theirs.file_by_path(str(back))
        row.path, row.status = quarantined, QUARANTINED
        theirs.session.add(
            Move(machine=theirs.machine, file_id=row.id, kind="restore", src=quarantined,
                 dest=str(back), sha256=fp.sha256, size=fp.size, mtime_ns=fp.mtime_ns)
        )  # fmt: skip
        theirs.commit()
    with Index(db, writer=True) as mine:
        out = Pipeline(mine, cfg).process(fp, str(back.parent))
        mine.commit()
        assert out.status == GONE
        assert mine.session.scalar(select(func.count()).select_from(File)) == 1


def test_a_quarantine_name_a_row_still_holds_is_not_moved_onto(tmp_path):
    """Free on disk is not enough: another file's row may still be at that name (its
    restore has moved it out and not yet recorded it)."""
    from functools import partial

    from helpers import photo, save

    from watcherd import moving
    from watcherd.config import Config
    from watcherd.fingerprint import fingerprint_file
    from watcherd.index import Index
    from watcherd.models import QUARANTINED
    from watcherd.pipeline import Pipeline

    q = tmp_path / "Q"
    q.mkdir()
    a = save(photo(3), tmp_path / "lib" / "a.jpg")
    b = save(photo(4), tmp_path / "other" / "a.jpg")
    with Index(tmp_path / "index.sqlite3", writer=True) as index:
        pipeline = Pipeline(index, Config(workers=1))
        for path in (a, b):
            pipeline.process(fingerprint_file(str(path)), str(path.parent))
        held = index.file_by_path(str(a))
        held.path, held.status = str(q / "a.jpg"), QUARANTINED  # its file: moved out again
        newcomer = index.file_by_path(str(b))
        folder = os.open(q, os.O_RDONLY | os.O_DIRECTORY)
        try:
            taken = partial(index.held_by_another, q / "a.jpg", newcomer)
            assert moving.free_name(folder, "a.jpg", taken) == "a (2).jpg"
            its_own = partial(index.held_by_another, q / "a.jpg", held)
            assert moving.free_name(folder, "a.jpg", its_own) == "a.jpg"
        finally:
            os.close(folder)


def test_stress_a_quarantining_scan_raced_by_twenty_commands_and_a_daemon(tmp_path):
    """benchmarks/move_race.py, one small round: a scan that quarantines, 20 commands
    (status, quarantine list, restore --all) and a daemon start on the same index."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    try:
        import move_race
    finally:
        sys.path.pop(0)
    result = move_race.race(tmp_path, pairs=24, commands=20)
    assert result["problems"] == []
    assert result["command failures"] == []
    assert result["moves done"] >= 24
