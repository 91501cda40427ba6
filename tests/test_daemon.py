"""`watcherd run` as a real subprocess: real inotify events, real SQLite, real signals."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import time
from pathlib import Path

import pytest
from conftest import run_cli
from daemon_harness import poll_until
from helpers import busy_photo, copies, photo, save


def descendants(pid: int) -> list[int]:
    found, todo = [], [pid]
    while todo:
        p = todo.pop()
        try:
            for task in os.listdir(f"/proc/{p}/task"):
                with open(f"/proc/{p}/task/{task}/children") as fh:
                    kids = [int(c) for c in fh.read().split()]
                    found += kids
                    todo += kids
        except OSError:
            pass
    return found


def rows(db: Path) -> dict[str, tuple]:
    con = sqlite3.connect(db)
    try:
        return {
            r[0]: r[1:]
            for r in con.execute("SELECT path, id, status, sha256, phash, error FROM files")
        }
    finally:
        con.close()


def live_pairs(db: Path) -> set[tuple[str, str]]:
    con = sqlite3.connect(db)
    try:
        return {
            (Path(a).name, Path(b).name)
            for a, b in con.execute(
                "SELECT f.path, o.path FROM decisions d JOIN files f ON f.id = d.file_id "
                "JOIN files o ON o.id = d.original_id WHERE d.current = 1"
            )
        }
    finally:
        con.close()


def test_copies_are_decided_as_they_arrive(tmp_path, daemons):
    root = tmp_path / "WhatsApp Images"
    root.mkdir()
    d = daemons(tmp_path, [root]).start()
    original = save(photo(1), root / "IMG_0001.jpg")
    d.wait_path("indexed", original)
    made = copies(photo(1), root / "sent", "IMG-0001")
    for kind, path in made.items():
        if kind == "png":  # larger than the JPEG at the same size: the JPEG becomes the copy
            dup = d.wait_decided(path)
            assert (dup["event"], dup["path"]) == ("duplicate", str(original)), dup
            continue
        dup = d.wait_path("duplicate", path)[0]
        assert dup["original"] in (str(original), str(made["png"])), dup
        assert dup["kind"] == "near" and isinstance(dup["ts"], float)
    # an unrelated photo is just indexed
    other = save(photo(2), root / "other.jpg")
    d.wait_path("indexed", other)
    assert d.of("duplicate", other) == []
    assert d.stop() == 0


def test_same_decisions_as_scan(tmp_path, daemons):
    lib = tmp_path / "lib"
    for s in range(3):
        img = photo(10 + s)
        save(img, lib / f"{s}.jpg")
        copies(img, lib / f"c{s}", f"{s}")
    for s in range(4):
        save(photo(50 + s), lib / f"u{s}.jpg")
    run_cli("--db", str(tmp_path / "scan.sqlite3"), "scan", str(lib))
    d = daemons(tmp_path, [lib], db=tmp_path / "daemon.sqlite3").start()  # catch-up
    total = 3 * 8 + 4
    d.wait_for(
        lambda e: e["event"] in ("indexed", "duplicate", "similar"), count=total, what="all files"
    )
    d.stop()
    assert live_pairs(tmp_path / "daemon.sqlite3") == live_pairs(tmp_path / "scan.sqlite3")
    assert len(live_pairs(tmp_path / "scan.sqlite3")) == 3 * 7


def test_renames_moves_and_deletions(tmp_path, daemons):
    root = tmp_path / "Pictures"
    outside = tmp_path / "outside"
    (root / "album").mkdir(parents=True)
    outside.mkdir()
    d = daemons(tmp_path, [root]).start()
    a = save(photo(1), root / "album" / "a.jpg")
    d.wait_path("indexed", a)
    before = rows(d.db)[str(a)]

    # rename inside the tree: the row follows, no re-read, never a duplicate of itself
    b = root / "album" / "b.jpg"
    a.rename(b)
    d.wait_path("moved", b)
    assert rows(d.db)[str(b)][0] == before[0]
    assert d.of("indexed", b) == [] and d.of("duplicate", b) == []

    # a whole folder renamed: its files follow
    (root / "album").rename(root / "2024")
    moved = root / "2024" / "b.jpg"
    d.wait_for(lambda e: e["event"] == "moved" and e["path"] == str(root / "2024"), what="dir")
    assert rows(d.db)[str(moved)][0] == before[0]

    # moved in from outside: indexed once it holds still
    c = save(photo(3), outside / "c.jpg")
    shutil.move(c, root / "c.jpg")
    d.wait_path("indexed", root / "c.jpg")

    # a folder with photos moved in from outside
    save(photo(4), outside / "trip" / "x.jpg")
    save(photo(5), outside / "trip" / "deep" / "y.jpg")
    shutil.move(outside / "trip", root / "trip")
    d.wait_path("indexed", root / "trip" / "x.jpg")
    d.wait_path("indexed", root / "trip" / "deep" / "y.jpg")

    # moved out of the tree, deleted, folder deleted: missing
    shutil.move(root / "c.jpg", outside / "c.jpg")
    d.wait_path("missing", root / "c.jpg")
    moved.unlink()
    d.wait_path("missing", moved)
    shutil.rmtree(root / "trip")
    # the files and folders go one event at a time: wait until every one is marked
    trip = [str(root / "trip" / "x.jpg"), str(root / "trip" / "deep" / "y.jpg")]
    poll_until(lambda: all(rows(d.db)[p][1] == "missing" for p in trip), timeout=30)
    d.stop()
    status = {Path(p).name: r[1] for p, r in rows(d.db).items()}
    assert status == {
        "b.jpg": "missing",
        "c.jpg": "missing",
        "x.jpg": "missing",
        "y.jpg": "missing",
    }


def test_temporary_download_names_are_ignored_until_renamed(tmp_path, daemons):
    root = tmp_path / "Downloads"
    root.mkdir()
    d = daemons(tmp_path, [root]).start()
    data = save(photo(7), tmp_path / "src.jpg").read_bytes()
    for temp in ("img.jpg.part", "img2.jpg.crdownload", ".img3.jpg.XyZ123", "img4.jpg.tmp"):
        (root / temp).write_bytes(data[: len(data) // 2])
        with open(root / temp, "ab") as fh:
            fh.write(data[len(data) // 2 :])
    (root / "img.jpg.part").rename(root / "img.jpg")
    d.wait_path("indexed", root / "img.jpg")
    marker = save(photo(8), root / "marker.jpg")  # events are handled in order
    d.wait_path("indexed", marker)
    seen = {e.get("path") for e in d.events}
    assert not any(p and (".part" in p or ".crdownload" in p or ".tmp" in p or "XyZ" in p)
                   for p in seen)  # fmt: skip
    assert len(rows(d.db)) == 2


def test_half_written_file_is_indexed_once_with_its_final_content(tmp_path, daemons):
    root = tmp_path / "in"
    root.mkdir()
    d = daemons(tmp_path, [root]).start()
    data = save(photo(9), tmp_path / "src.jpg").read_bytes()
    target = root / "slow.jpg"
    with open(target, "wb") as fh:
        fh.write(data[: len(data) // 2])
        fh.flush()
        os.fsync(fh.fileno())
        time.sleep(1.0)  # the writer pauses (a slow phone sync): behaviour, not a wait
        fh.write(data[len(data) // 2 :])
    d.wait_path("indexed", target)
    marker = save(photo(8), root / "marker.jpg")
    d.wait_path("indexed", marker)
    assert len(d.of("indexed", target)) == 1 and d.of("error", target) == []
    assert rows(d.db)[str(target)][2] == hashlib.sha256(data).hexdigest()


def test_modified_in_place_is_refingerprinted(tmp_path, daemons):
    root = tmp_path / "in"
    root.mkdir()
    d = daemons(tmp_path, [root]).start()
    p = save(photo(1), root / "p.jpg")
    d.wait_path("indexed", p)
    first = rows(d.db)[str(p)]
    save(photo(2), p)  # overwritten with another picture
    d.wait_path("indexed", p, count=2)
    second = rows(d.db)[str(p)]
    assert second[0] == first[0] and second[2] != first[2] and second[3] != first[3]


def test_bad_files_are_errors_and_the_daemon_keeps_going(tmp_path, daemons):
    root = tmp_path / "in"
    root.mkdir()
    d = daemons(tmp_path, [root]).start()
    (root / "zero.jpg").touch()
    (root / "fake.jpg").write_text("hello")
    good = save(photo(3), root / "good.jpg")
    (root / "cut.jpg").write_bytes(good.read_bytes()[:3000])
    for name in ("zero.jpg", "fake.jpg", "cut.jpg"):
        d.wait_path("error", root / name)
    d.wait_path("indexed", good)
    later = save(photo(4), root / "later.jpg")
    d.wait_path("indexed", later)
    assert d.proc.poll() is None


def test_catch_up_after_downtime(tmp_path, daemons):
    root = tmp_path / "in"
    root.mkdir()
    keep = save(photo(1), root / "keep.jpg")
    gone = save(photo(2), root / "gone.jpg")
    renamed = save(photo(3), root / "old-name.jpg")
    d = daemons(tmp_path, [root]).start()
    for p in (keep, gone, renamed):
        d.wait_path("indexed", p)
    assert d.stop() == 0
    # while it is stopped
    gone.unlink()
    renamed.rename(root / "new-name.jpg")
    new = save(photo(4), root / "new.jpg")
    dup = save(photo(1), root / "keep-copy.png")
    d2 = daemons(tmp_path, [root]).start()
    d2.wait_path("indexed", new)
    d2.wait_decided(dup)
    d2.stop()
    r = rows(d.db)
    assert r[str(gone)][1] == "missing"
    assert str(root / "new-name.jpg") in r and str(renamed) not in r
    assert d2.of("indexed", keep) == [] and d2.of("indexed", root / "new-name.jpg") == []
    assert ("keep.jpg", "keep-copy.png") in live_pairs(d.db)  # the PNG is the better copy


def test_sigkill_mid_burst_then_restart_indexes_every_file_once(tmp_path, daemons):
    root = tmp_path / "burst"
    root.mkdir()
    d = daemons(tmp_path, [root]).start()
    src = tmp_path / "src"
    paths = [save(photo(100 + i, (320, 240)), src / f"p{i:03}.jpg") for i in range(60)]
    for p in paths:
        shutil.copy(p, root / p.name)
    d.wait_for(lambda e: e["event"] == "indexed", count=5, what="some decisions")
    helpers_of_daemon = descendants(d.proc.pid)
    assert helpers_of_daemon, "decoding runs in worker processes"
    d.kill()
    # its workers, forkserver and resource tracker go with it: no orphans left behind
    poll_until(lambda: not any(Path(f"/proc/{p}").exists() for p in helpers_of_daemon), 10)
    done_before = len(d.of("indexed"))
    assert done_before < 60, "the burst finished before the kill; the test proves nothing"
    d2 = daemons(tmp_path, [root]).start()
    expected = {str(root / p.name): hashlib.sha256(p.read_bytes()).hexdigest() for p in paths}
    poll_until(lambda: sum(v[1] == "active" for v in rows(d.db).values()) == 60)
    d2.stop()
    assert {p: v[2] for p, v in rows(d.db).items()} == expected
    assert all(v[1] == "active" for v in rows(d.db).values())


def test_sighup_reloads_roots(tmp_path, daemons):
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    b.mkdir()
    d = daemons(tmp_path, config=f'roots = ["{a}"]\n').start()
    d.config.write_text(f'settle_seconds = 0.3\nworkers = 2\nroots = ["{a}", "{b}"]\n')
    d.signal(signal.SIGHUP)
    d.wait_for(lambda e: e["event"] == "reload", what="reload")
    p = save(photo(1), b / "new.jpg")
    d.wait_path("indexed", p)
    d.config.write_text(f'settle_seconds = 0.3\nroots = ["{b}"]\n')
    d.signal(signal.SIGHUP)
    d.wait_for(lambda e: e["event"] == "reload", count=2, what="second reload")
    assert d.of("reload")[-1]["roots"] == [str(b)]
    d.config.write_text("action = 'bogus'\n")  # a broken edit must not stop the daemon
    d.signal(signal.SIGHUP)
    d.wait_for(lambda e: e["event"] == "error" and "action" in e["msg"], what="bad config")
    assert d.stop() == 0


def test_sigterm_and_sigint_stop_cleanly(tmp_path, daemons):
    root = tmp_path / "r"
    root.mkdir()
    for sig in (signal.SIGTERM, signal.SIGINT):
        d = daemons(tmp_path, [root]).start()
        d.signal(sig)
        assert d.proc.wait(timeout=20) == 0
        assert d.of("stopping")


def test_status_and_single_instance(tmp_path, daemons):
    root = tmp_path / "r"
    root.mkdir()
    d = daemons(tmp_path, [root]).start()
    p = save(photo(1), root / "a.jpg")
    d.wait_path("indexed", p)
    env = {"WATCHERD_DB": str(d.db)}
    state = {}

    def has_last_event() -> bool:
        state.update(json.loads(run_cli("status", "--json", env=env).stdout))
        return bool(state["last_event"])

    poll_until(has_last_event, timeout=10)
    st = state
    assert st["running"] is True and st["pid"] == d.proc.pid
    assert st["roots"] == [str(root)] and st["files"] == 1
    assert st["last_event"]["path"] == str(p)
    second = run_cli("--db", str(d.db), "run", str(root), check=False)
    assert second.returncode == 1 and "already running" in second.stderr
    d.stop()
    st = json.loads(run_cli("status", "--json", env=env).stdout)
    assert st["running"] is False


def test_report_reads_while_daemon_writes(tmp_path, daemons):
    root = tmp_path / "r"
    root.mkdir()
    d = daemons(tmp_path, [root]).start()
    for i in range(40):
        img = photo(300 + i, (240, 180))
        save(img, root / f"{i}.jpg")
        save(img, root / f"{i}-copy.png")
    for _ in range(10):  # reports during the burst: never "database is locked"
        out = run_cli("--db", str(d.db), "report", "--format", "json")
        json.loads(out.stdout)
    d.wait_for(lambda e: e["event"] in ("indexed", "duplicate", "similar"), count=80, what="burst")
    assert len(d.of("duplicate")) == 40


def test_polled_root(tmp_path, daemons):
    root = tmp_path / "nas"
    root.mkdir()
    d = daemons(
        tmp_path, config=f'poll_interval = 0.2\nroots = [{{ path = "{root}", poll = true }}]\n'
    ).start()
    assert d.of("ready")[0]["methods"][str(root)].startswith("polling")
    p = save(photo(1), root / "a.jpg")
    d.wait_path("indexed", p)


def test_sd_notify_protocol(tmp_path, daemons):
    import socket

    root = tmp_path / "r"
    root.mkdir()
    sock_path = tmp_path / "notify.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(sock_path))
    sock.settimeout(10)
    env = {"NOTIFY_SOCKET": str(sock_path), "WATCHDOG_USEC": "400000"}
    d = daemons(tmp_path, [root], env=env).start(wait_ready=False)
    seen: list[str] = []

    def until(prefix: str) -> str:
        while True:
            msg = sock.recv(4096).decode()
            seen.append(msg)
            if any(line.startswith(prefix) for line in msg.splitlines()):
                return msg

    ready = until("READY=1")
    assert f"MAINPID={d.proc.pid}" in ready
    until("WATCHDOG=1")
    save(photo(1), root / "a.jpg")
    status = until("STATUS=")
    assert "indexed" in status
    d.signal(signal.SIGTERM)
    until("STOPPING=1")
    assert d.proc.wait(timeout=20) == 0
    sock.close()


def _inotify_knob(name: str, purpose: str) -> Path:
    """The sysctl file fs.inotify.<name>, or a skip where it cannot be written."""
    knob = Path("/proc/sys/fs/inotify") / name
    if os.geteuid() != 0 or not os.access(knob, os.W_OK):
        pytest.skip(f"needs root to {purpose} (fs.inotify.{name})")
    return knob


def test_inotify_queue_overflow_triggers_a_rescan(tmp_path, daemons):
    knob = _inotify_knob("max_queued_events", "shrink the queue and force a real overflow")
    root = tmp_path / "r"
    root.mkdir()
    old = knob.read_text()
    try:
        knob.write_text("16\n")  # applies to inotify instances created from now on
        d = daemons(tmp_path, [root]).start()
    finally:
        knob.write_text(old)
    src = tmp_path / "src"
    paths = [save(photo(400 + i, (64, 48)), src / f"{i}.jpg") for i in range(150)]
    for p in paths:
        shutil.copy(p, root / p.name)
    d.wait_for(lambda e: e["event"] == "rescan" and e.get("reason") == "overflow", what="overflow")
    for p in paths:
        d.wait_path("indexed", root / p.name)


def _inotify_watches_in_use() -> int:
    """Watches held by every process of this user (what max_user_watches limits)."""
    total = 0
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            if os.stat(f"/proc/{pid}").st_uid != os.geteuid():
                continue
            for fd in os.listdir(f"/proc/{pid}/fdinfo"):
                with open(f"/proc/{pid}/fdinfo/{fd}") as fh:
                    total += sum(line.startswith("inotify wd:") for line in fh)
        except OSError:
            continue
    return total


def test_inotify_watch_limit_falls_back_to_polling(tmp_path, daemons):
    knob = _inotify_knob("max_user_watches", "lower the watch limit")
    root = tmp_path / "r"
    root.mkdir()
    d = daemons(tmp_path, [root], config="poll_interval = 0.2\n").start()
    old = knob.read_text()
    try:
        knob.write_text(f"{_inotify_watches_in_use()}\n")  # no new watch can be added
        deep = root / "new" / "deeper"
        deep.mkdir(parents=True)
        d.wait_for(
            lambda e: e["event"] == "rescan" and e.get("reason") == "watch_limit",
            what="watch limit noticed",
        )
    finally:
        knob.write_text(old)
    p = save(photo(1), deep / "a.jpg")
    d.wait_path("indexed", p)
    st = json.loads(run_cli("--db", str(d.db), "status", "--json").stdout)
    assert st["running"]


def _quarantine_config(lib: Path, qdir: Path) -> str:
    return f'roots = ["{lib}"]\naction = "quarantine"\nquarantine_dir = "{qdir}"\n'


@pytest.mark.parametrize(
    ("step", "cross_fs"),
    [("intent", False), ("placeholder", False), ("renamed", False),
     ("copied", True), ("renamed", True), ("verified", True), ("unlinked", True)],
)  # fmt: skip
def test_sigkill_at_each_step_of_a_quarantine(tmp_path, daemons, step, cross_fs):
    from conftest import mounted_tmpfs
    from test_quarantine import check_invariant

    lib, qdir = tmp_path / "lib", tmp_path / "Q"
    img = photo(5, (640, 480))
    save(img, lib / "big.jpg")
    save(img.resize((320, 240)), lib / "sub" / "small.jpg")
    expected = sorted(hashlib.sha256(p.read_bytes()).hexdigest() for p in lib.rglob("*.jpg"))
    ctx = mounted_tmpfs(qdir) if cross_fs else contextlib.nullcontext(qdir)
    with ctx:
        d = daemons(tmp_path, config=_quarantine_config(lib, qdir), env={"WATCHERD_CRASH_AT": step})
        d.start(wait_ready=False)
        assert d.proc.wait(timeout=60) == -signal.SIGKILL, d.dump()
        d2 = daemons(tmp_path, config=_quarantine_config(lib, qdir)).start()
        d2.wait_for(lambda e: e["event"] == "recovered", what="recovery of the interrupted move")
        # whether the move was finished or undone, the small copy ends up quarantined
        poll_until(lambda: not (lib / "sub" / "small.jpg").exists(), 30)
        assert d2.stop() == 0
        check_invariant(d.db, lib, qdir, expected)


def test_sigkill_mid_quarantine_burst(tmp_path, daemons):
    from test_quarantine import check_invariant

    lib, qdir = tmp_path / "lib", tmp_path / "Q"
    lib.mkdir()
    d = daemons(tmp_path, config=_quarantine_config(lib, qdir)).start()
    src = tmp_path / "src"
    pairs = []
    for i in range(25):
        img = photo(500 + i, (400, 300))
        pairs.append((save(img, src / f"{i}.jpg"), save(img.resize((200, 150)), src / f"{i}s.jpg")))
    expected = sorted(hashlib.sha256(p.read_bytes()).hexdigest() for pair in pairs for p in pair)
    for big, small in pairs:
        shutil.copy2(big, lib / big.name)
        shutil.copy2(small, lib / small.name)
    d.wait_for(lambda e: e.get("action") == "quarantined", count=3, what="some moves")
    d.kill()
    assert len(d.of("duplicate")) < 25, "the burst finished before the kill"
    d2 = daemons(tmp_path, config=_quarantine_config(lib, qdir)).start()
    poll_until(lambda: sorted(p.name for p in lib.iterdir()) == sorted(b.name for b, _ in pairs))
    d2.stop()
    check_invariant(d.db, lib, qdir, expected)
    assert sorted(p.name for p in qdir.rglob("*.jpg")) == sorted(s.name for _, s in pairs)


def test_run_dry_run_moves_nothing(tmp_path, daemons):
    lib, qdir = tmp_path / "lib", tmp_path / "Q"
    lib.mkdir()
    d = daemons(tmp_path, config=_quarantine_config(lib, qdir), run_args=["--dry-run"]).start()
    img = photo(9, (640, 480))
    save(img, lib / "big.jpg")
    small = save(img.resize((320, 240)), lib / "small.jpg")
    dup = d.wait_path("duplicate", small)[0]
    assert dup["action"] == "would quarantine"
    assert small.exists() and not qdir.exists()


def test_matcher_arrays_saved_at_stop_and_loaded_at_start(tmp_path, daemons):
    pics = tmp_path / "pics"
    pics.mkdir()
    a = save(photo(1), pics / "a.jpg")
    c = save(busy_photo(12), pics / "c.jpg")  # a picture only its regions match cropped
    d = daemons(tmp_path, [pics]).start()
    d.wait_decided(a)
    d.wait_decided(c)
    assert d.of("arrays")[0]["source"] == "index"
    assert d.stop() == 0
    arrays = tmp_path / "index.sqlite3.arrays.npz"
    assert arrays.exists()

    d = daemons(tmp_path, [pics]).start()
    assert (d.of("arrays")[0]["source"], d.of("arrays")[0]["changed"]) == ("saved", 0)
    (pics / "a copy.jpg").write_bytes(a.read_bytes())
    d.wait_path("duplicate", pics / "a copy.jpg")
    # a copy with 15% cut off two sides is found through c's region hashes, as loaded
    w, h = busy_photo(12).size
    save(busy_photo(12).crop((0, round(h * 0.15), round(w * 0.85), h)), pics / "c cut.jpg")
    found = d.wait_path("duplicate", pics / "c cut.jpg")[0]
    assert found["original"] == str(c) and found["transform"].startswith("crop:")
    assert d.stop() == 0


def test_a_running_daemon_matches_what_a_scan_beside_it_indexed(tmp_path, daemons):
    pics, other = tmp_path / "pics", tmp_path / "other"
    pics.mkdir()
    d = daemons(tmp_path, [pics]).start()
    b = save(photo(2), other / "b.jpg")
    run_cli("--db", str(d.db), "scan", str(other))  # another process writes to the index
    save(photo(2).resize((320, 240)), pics / "b small.jpg")
    assert d.wait_path("duplicate", pics / "b small.jpg")[0]["original"] == str(b)
    assert d.stop() == 0
    d = daemons(tmp_path, [pics]).start()  # the arrays it saved hold b, nothing to read
    assert (d.of("arrays")[0]["source"], d.of("arrays")[0]["changed"]) == ("saved", 0)
    save(photo(2).resize((300, 225)), pics / "b smaller.jpg")
    assert d.wait_path("duplicate", pics / "b smaller.jpg")[0]["original"] == str(b)
    assert d.stop() == 0


def test_saved_arrays_catch_up_with_what_was_written_while_no_daemon_ran(tmp_path, daemons):
    pics = tmp_path / "pics"
    pics.mkdir()
    save(photo(1), pics / "a.jpg")
    d = daemons(tmp_path, [pics]).start()
    assert d.stop() == 0
    b = save(photo(3), tmp_path / "elsewhere" / "b.jpg")
    # while no daemon runs; the scan itself starts from the saved arrays
    scan = run_cli("--db", str(d.db), "-v", "--log-format", "json", "scan", str(b.parent))
    logged = [json.loads(line) for line in scan.stderr.splitlines() if line.startswith("{")]
    assert [(e["source"], e["changed"]) for e in logged if e.get("event") == "arrays"] == [
        ("saved", 0)
    ]
    d = daemons(tmp_path, [pics]).start()
    assert (d.of("arrays")[0]["source"], d.of("arrays")[0]["changed"]) == ("saved", 1)
    (pics / "b copy.jpg").write_bytes(b.read_bytes())
    assert d.wait_path("duplicate", pics / "b copy.jpg")[0]["original"] == str(b)
    assert d.stop() == 0


def test_stop_does_not_wait_for_a_decoder_stuck_on_a_file(tmp_path, daemons):
    """A worker that never finishes a file (a stalled network mount, a pathological
    image) must not keep the daemon from stopping; the file is read at the next start."""
    root = tmp_path / "r"
    root.mkdir()
    d = daemons(tmp_path, [root], env={"WATCHERD_STALL_READING": "stuck.jpg"}).start()
    stuck = save(photo(3), root / "stuck.jpg")
    d.wait_path("stalled", stuck)
    assert d.stop() == 0
    d2 = daemons(tmp_path, [root]).start()
    assert d2.wait_decided(stuck)["event"] == "indexed"


def test_a_file_stuck_in_its_decoder_is_skipped_and_the_files_after_it_go_on(tmp_path, daemons):
    """Decisions are taken in arrival order: without a time limit, one file whose
    worker never finishes would hold up every file after it."""
    root = tmp_path / "r"
    root.mkdir()
    d = daemons(
        tmp_path, [root], config="read_timeout = 2\n", env={"WATCHERD_STALL_READING": "stuck.jpg"}
    ).start()
    stuck = save(photo(3), root / "stuck.jpg")
    d.wait_path("stalled", stuck)
    after = [save(photo(10 + i), root / f"after{i}.jpg") for i in range(3)]
    error = d.wait_path("error", stuck)[0]
    assert "still reading after 2 s" in error["reason"]
    for p in after:
        assert d.wait_decided(p)["event"] == "indexed"
    assert d.stop() == 0


def _other_threads(pid: int) -> list[int]:
    return sorted(int(t) for t in os.listdir(f"/proc/{pid}/task") if int(t) != pid)


def test_a_stop_signal_taken_by_another_thread_still_stops_an_idle_daemon(tmp_path, daemons):
    """The kernel hands a process's signal to any one of its threads, and Python runs
    its handler in the main thread only once that thread wakes: an idle daemon, asleep
    on its inbox with no deadline, never did (the intermittent stop hang). SIGTERM goes
    here to each other thread in turn (tgkill), as the kernel may choose; every daemon
    must stop."""
    import ctypes

    from watcherd.daemon_files import status_path

    libc = ctypes.CDLL(None, use_errno=True)
    if not hasattr(libc, "tgkill"):
        pytest.skip("no tgkill in this C library")
    root = tmp_path / "r"
    root.mkdir()
    status = status_path(tmp_path / "index.sqlite3")  # the harness's default index

    def asleep(pid: int) -> bool:  # its last status written, nothing left to wake it
        with contextlib.suppress(OSError, ValueError):
            if json.loads(status.read_text())["pid"] == pid:
                return time.time() - status.stat().st_mtime > 2
        return False

    turn = 0
    while True:
        d = daemons(tmp_path, [root]).start()
        assert d.db == status.parent / "index.sqlite3"
        poll_until(lambda: asleep(d.proc.pid), 30)  # noqa: B023 - called at once
        threads = _other_threads(d.proc.pid)
        assert threads, "the daemon runs watchdog's threads besides its main one"
        tid = threads[turn]
        assert libc.tgkill(d.proc.pid, tid, signal.SIGTERM) == 0, ctypes.get_errno()
        try:
            assert d.proc.wait(timeout=20) == 0
        except subprocess.TimeoutExpired:
            raise AssertionError(f"SIGTERM taken by thread {tid} left the daemon running") from None
        turn += 1
        if turn >= len(threads):
            break


def test_ctrl_c_stops_the_daemon_and_its_workers_without_a_traceback(tmp_path, daemons):
    """Ctrl-C in a terminal sends SIGINT to every process of the foreground group: the
    decoding workers too, which used to die with a KeyboardInterrupt traceback on the
    user's terminal. The daemon stops them itself."""
    root = tmp_path / "r"
    root.mkdir()
    d = daemons(tmp_path, [root], own_session=True).start()
    d.wait_path("indexed", save(photo(1), root / "a.jpg"))  # decoding workers running
    os.killpg(d.proc.pid, signal.SIGINT)
    assert d.proc.wait(timeout=20) == 0
    d.wait_for(lambda e: e["event"] == "stopping", what="stopping")
    d.reader.join(10)  # all of stderr read
    assert not d.reader.is_alive()
    assert not [line for line in d.other if "Traceback" in line or "KeyboardInterrupt" in line], (
        "".join(d.other)
    )
