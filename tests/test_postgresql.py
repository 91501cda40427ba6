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
