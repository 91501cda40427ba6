"""The index on a PostgreSQL server (the tests start their own: tests/pg_cluster.py):
the commands and the daemon as on SQLite, paths compared as bytes whatever the
database's collation, this machine's files (lock, status) kept on this machine."""

from __future__ import annotations

import json

import platformdirs
import pytest
from conftest import run_cli
from helpers import photo, save

from watcherd.index import Index


@pytest.fixture
def pg_url(pg_server) -> str:
    return pg_server.new_database()


def pair(lib):
    img = photo(21, (640, 480))
    return save(img, lib / "big.jpg"), save(img.resize((320, 240)), lib / "sub" / "small.jpg")


def test_scan_report_and_status_on_a_server(tmp_path, pg_url):
    lib = tmp_path / "lib"
    big, small = pair(lib)
    run_cli("--db", pg_url, "scan", str(lib))
    report = json.loads(run_cli("--db", pg_url, "report", "--format", "json").stdout)
    assert [(d["path"], d["original"], d["kind"]) for d in report["duplicates"]] == [
        (str(small), str(big), "near")
    ]
    status = json.loads(run_cli("--db", pg_url, "status", "--json").stdout)
    assert status["files"] == 2 and not status["running"]
    page = tmp_path / "report.html"  # the thumbnails, stored as bytea, in the page
    run_cli("--db", pg_url, "report", "--format", "html", "-o", str(page))
    assert page.read_text().count("data:image/jpeg;base64,") >= 2
    assert not any(p.suffix == ".sqlite3" for p in tmp_path.rglob("*"))  # no file made


def test_a_daemon_on_a_server_decides_and_quarantines(tmp_path, pg_url, daemons):
    lib, qdir = tmp_path / "lib", tmp_path / "Q"
    lib.mkdir()
    config = f'roots = ["{lib}"]\naction = "quarantine"\nquarantine_dir = "{qdir}"\n'
    d = daemons(tmp_path, config=config, db=pg_url).start()
    img = photo(22, (640, 480))
    save(img, tmp_path / "in" / "big.jpg").rename(lib / "big.jpg")
    d.wait_path("indexed", lib / "big.jpg")
    save(img.resize((320, 240)), tmp_path / "in" / "small.jpg").rename(lib / "small.jpg")
    dup = d.wait_path("duplicate", lib / "small.jpg")[0]
    assert dup["action"] == "quarantined" and not (lib / "small.jpg").exists()
    # the lock and the status live in this machine's state folder, not beside a file
    state = platformdirs.user_state_path("watcherd")
    assert any(p.name.endswith(".lock") for p in state.iterdir())
    status = json.loads(run_cli("--db", pg_url, "status", "--json").stdout)
    assert status["running"]
    assert d.stop() == 0
    out = run_cli("--db", pg_url, "restore", "--all")
    assert (lib / "small.jpg").exists(), out.stdout


def test_folder_ranges_compare_bytes_under_a_language_collation(pg_server):
    """On a database whose default collation is ICU's English, `/ph/A/...` and
    `/ph/a#b/...` sort inside the range of `/ph/a/` unless paths are compared as bytes:
    a rename of /ph/a rewrote its neighbours' rows."""
    url = pg_server.new_database(locale_provider="icu", icu_locale="en")
    with Index(url, writer=True) as idx:
        for i, path in enumerate(["/ph/a/x.jpg", "/ph/A/y.jpg", "/ph/a#b/z.jpg", "/ph/a-b/w.jpg"]):
            idx.upsert_file(None, path=path, root="/ph", size=1, mtime_ns=i, inode=i)
        idx.commit()
        assert [p for _, p in idx.live_under("/ph/a")] == ["/ph/a/x.jpg"]
        idx.move_folder("/ph/a", "/ph/c", "/ph")
        idx.commit()
        paths = sorted(p for _, p in idx.live_under("/ph"))
    assert paths == ["/ph/A/y.jpg", "/ph/a#b/z.jpg", "/ph/a-b/w.jpg", "/ph/c/x.jpg"]


def test_two_machines_share_one_index_and_each_moves_only_its_own_files(tmp_path, pg_url, daemons):
    """Two daemons with their own `machine`, roots, quarantine and state folder (as on
    two machines) on one PostgreSQL index. A copy arriving on the laptop is found
    against the NAS's photo; when the laptop's copy is the better one, the NAS's copy
    is flagged by the laptop and quarantined by the NAS's own daemon."""
    sides = {}
    for name in ("nas", "laptop"):
        home = tmp_path / name
        lib = home / "Pictures"
        lib.mkdir(parents=True)
        config = (f'machine = "{name}"\nroots = ["{lib}"]\naction = "quarantine"\n'
                  f'quarantine_dir = "{home / "Q"}"\npoll_interval = 0.5\n')  # fmt: skip
        env = {"XDG_STATE_HOME": str(home / "state")}
        sides[name] = (lib, home / "Q", daemons(home, config=config, db=pg_url, env=env))
    (nas_lib, nas_q, nas), (lap_lib, lap_q, laptop) = sides["nas"], sides["laptop"]
    a, b = photo(41, (640, 480)), photo(42, (640, 480))
    save(a, tmp_path / "in" / "a.jpg").rename(nas_lib / "a.jpg")
    save(b.resize((320, 240)), tmp_path / "in" / "b.jpg").rename(nas_lib / "b.jpg")
    nas.start()
    laptop.start()
    # a worse copy of the NAS's photo arrives on the laptop: the laptop moves its own
    save(a.resize((320, 240)), tmp_path / "in" / "a2.jpg").rename(lap_lib / "a2.jpg")
    dup = laptop.wait_path("duplicate", lap_lib / "a2.jpg")[0]
    assert dup["action"] == "quarantined" and dup["original"] == str(nas_lib / "a.jpg")
    # a better copy of the NAS's b.jpg: the NAS's copy is redundant, and the NAS moves it
    save(b, tmp_path / "in" / "b2.jpg").rename(lap_lib / "b2.jpg")
    dup = laptop.wait_path("duplicate", nas_lib / "b.jpg")[0]
    assert dup["action"] == "flagged" and "another machine" in dup["note"]
    moved = nas.wait_for(lambda e: e["event"] == "quarantined" and e.get("decided_on"),
                         what="the NAS applying the laptop's verdict")[0]  # fmt: skip
    assert moved["path"] == str(nas_lib / "b.jpg") and moved["moved_to"].startswith(str(nas_q))
    assert sorted(p.name for p in nas_lib.iterdir()) == ["a.jpg"]
    assert sorted(p.name for p in lap_lib.iterdir()) == ["b2.jpg"]
    assert [p.name for p in lap_q.rglob("*.jpg")] == ["a2.jpg"]
    assert nas.stop() == 0 and laptop.stop() == 0
    report = json.loads(run_cli("--db", pg_url, "report", "--format", "json").stdout)
    assert report["summary"]["quarantined"] == 2
    assert report["summary"]["machines"] == ["laptop", "nas"]
    row = next(d for d in report["duplicates"] if d["path"] == str(nas_lib / "b.jpg"))
    assert (row["machine"], row["original_machine"]) == ("nas", "laptop")
    table = run_cli("--db", pg_url, "report").stdout
    assert f"nas:{nas_lib / 'b.jpg'}" in table and f"laptop:{lap_lib / 'b2.jpg'}" in table
    conf = tmp_path / "nas" / "config.toml"
    status = json.loads(run_cli("--config", str(conf), "--db", pg_url, "status", "--json").stdout)
    assert status["machine"] == "nas" and status["machines"] == {"laptop": 2, "nas": 2}
    text = run_cli("--config", str(conf), "--db", pg_url, "status").stdout
    assert "files per machine: laptop 2, nas 2 (this one)" in text


@pytest.fixture
def own_server():
    """A PostgreSQL server of this test's own, to stop and start again."""
    from pg_cluster import Cluster, bindir

    cluster = Cluster(bindir()).start()
    yield cluster
    cluster.stop()


def test_a_daemon_rides_out_its_server_going_away(tmp_path, pg_server, own_server, daemons):
    """The server is stopped under a running daemon (a NAS rebooting): the daemon says
    so once, keeps running, and decides what arrived meanwhile once it is back."""
    url = own_server.new_database()
    lib = tmp_path / "lib"
    lib.mkdir()
    d = daemons(tmp_path, config=f'roots = ["{lib}"]\npoll_interval = 0.5\n', db=url).start()
    img = photo(51, (640, 480))
    save(img, tmp_path / "in" / "a.jpg").rename(lib / "a.jpg")
    d.wait_path("indexed", lib / "a.jpg")
    own_server.halt()
    save(img.resize((320, 240)), tmp_path / "in" / "b.jpg").rename(lib / "b.jpg")
    d.wait_for(lambda e: e.get("reason") == "index server unreachable", what="the loss said")
    own_server.launch()
    dup = d.wait_path("duplicate", lib / "b.jpg", timeout=90)[0]
    assert dup["original"] == str(lib / "a.jpg")
    said = [e for e in d.events if e.get("reason") == "index server unreachable"]
    assert len([e for e in said if e["event"] == "error"]) == 1, said
    assert d.stop() == 0


def test_a_video_copy_is_found_on_a_server(tmp_path, pg_url):
    """A video's sampled frames are stored as bytea and read back for matching."""
    pytest.importorskip("av")
    from helpers import video

    lib = tmp_path / "lib"
    video(lib / "a-original.mp4", 1)
    copy = video(lib / "b-whatsapp.mp4", 1, size=(160, 120), bit_rate=200_000)
    run_cli("--db", pg_url, "scan", str(lib))
    report = json.loads(run_cli("--db", pg_url, "report", "--format", "json").stdout)
    assert [(d["path"], d["kind"]) for d in report["duplicates"]] == [(str(copy), "near")]
    assert report["duplicates"][0]["duration"] > 2.5
