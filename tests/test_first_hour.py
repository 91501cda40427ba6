"""What a new user meets in the first hour must do what it says (issue 24)."""

from __future__ import annotations

import json

from conftest import run_cli
from helpers import photo, save


def test_a_protected_root_keeps_its_photo_against_a_better_copy_elsewhere(tmp_path):
    """keep = "best" preferred more pixels, so a PNG export in Downloads beat the camera
    original: the "duplicate" sat in the protected root, nothing moved, the clutter
    stayed. A file in a protected root is always the kept one."""
    camera, downloads, q = tmp_path / "Camera", tmp_path / "Downloads", tmp_path / "Q"
    img = photo(4, (640, 480))
    save(img, camera / "IMG_0001.jpg")
    save(img.resize((1280, 960)), downloads / "export.png")  # more pixels, larger file
    save(photo(5), camera / "IMG_0002.jpg")
    save(photo(5), camera / "IMG_0002 copy.jpg", quality=80)  # both protected: none moves
    cfg = tmp_path / "config.toml"
    cfg.write_text(
        f'roots = [{{ path = "{camera}", protect = true }}, "{downloads}"]\n'
        f'action = "quarantine"\nquarantine_dir = "{q}"\n'
    )
    common = ["--config", str(cfg), "--db", str(tmp_path / "index.sqlite3")]
    run_cli(*common, "scan")
    rows = json.loads(run_cli(*common, "report", "--format", "json").stdout)["duplicates"]
    by_path = {r["path"]: r for r in rows}
    assert by_path[str(downloads / "export.png")]["original"] == str(camera / "IMG_0001.jpg")
    assert by_path[str(downloads / "export.png")]["action"] == "quarantined"
    assert not (downloads / "export.png").exists()
    assert (camera / "IMG_0001.jpg").exists()
    assert (camera / "IMG_0002.jpg").exists() and (camera / "IMG_0002 copy.jpg").exists()


def test_ctrl_c_during_a_scan_keeps_what_was_decided_and_exits_130(tmp_path):
    """Ctrl-C printed `Aborted!`, exited 1 and threw away up to 499 files of work."""
    import signal
    import sqlite3
    import subprocess
    import sys

    lib = tmp_path / "lib"
    for k in range(300):
        save(photo(100 + k, (96, 72)), lib / f"p{k:03d}.jpg")
    db = tmp_path / "index.sqlite3"
    scan = subprocess.Popen(
        [sys.executable, "-m", "watcherd", "--db", str(db), "-v", "--log-format", "json",
         "scan", str(lib)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert scan.stderr is not None
    for line in scan.stderr:  # the first decision: the scan is under way
        if '"event": "indexed"' in line:
            break
    scan.send_signal(signal.SIGINT)
    out, _ = scan.communicate(timeout=120)
    assert scan.returncode == 130
    assert "Interrupted" in out and "Scanned" in out and "Aborted" not in out
    with sqlite3.connect(db) as con:
        kept = con.execute("SELECT count(*) FROM files").fetchone()[0]
    assert 0 < kept < 300  # decided files are committed, the rest were not read
    again = json.loads(run_cli("--db", str(db), "scan", "--json", str(lib)).stdout)
    assert (again["new"], again["skipped"]) == (300 - kept, kept)  # it goes on from there
