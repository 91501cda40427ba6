"""What a new user meets in the first hour must do what it says (issue 24)."""

from __future__ import annotations

import json

from conftest import invoke
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
    invoke(*common, "scan")
    rows = json.loads(invoke(*common, "report", "--format", "json").stdout)["duplicates"]
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
    again = json.loads(invoke("--db", str(db), "scan", "--json", str(lib)).stdout)
    assert (again["new"], again["skipped"]) == (300 - kept, kept)  # it goes on from there


def test_nothing_to_watch_is_a_configuration_error_the_service_does_not_retry(
    tmp_path, isolated_env
):
    """Right after the quick start, with no `roots`, `watcherd run` exited 2 and
    Restart=on-failure restarted it every 5 s for ever; `service install` went ahead."""
    from pathlib import Path

    cfg = tmp_path / "config.toml"
    cfg.write_text("")  # no roots
    common = ["--config", str(cfg), "--db", str(tmp_path / "index.sqlite3")]
    run = invoke(*common, "run", check=False)
    assert run.returncode == 78 and "nothing to watch" in run.stderr
    unit = (Path(__file__).parents[1] / "watcherd" / "data" / "watcherd.service").read_text()
    prevent = next(line for line in unit.splitlines() if line.startswith("RestartPrevent"))
    assert {"65", "78"} <= set(prevent.split("=", 1)[1].split())
    install = invoke(*common, "service", "install", check=False)
    assert install.returncode == 78 and "nothing to watch" in install.stderr
    assert not (isolated_env / ".config/systemd/user/watcherd.service").exists()


def test_service_install_fails_when_it_could_not_enable_anything(tmp_path, isolated_env):
    pictures = tmp_path / "Pictures"
    pictures.mkdir()
    cfg = tmp_path / "config.toml"
    cfg.write_text(f'roots = ["{pictures}"]\n')
    no_systemctl = {"PATH": str(tmp_path / "empty")}  # no systemd user manager to reach
    proc = invoke("--config", str(cfg), "service", "install", "--enable", "--now",
                   env=no_systemctl, check=False)  # fmt: skip
    assert proc.returncode == 1
    assert "no systemd user manager reachable" in proc.stderr
    assert (isolated_env / ".config/systemd/user/watcherd.service").exists()  # but written


def test_report_rows_say_what_a_script_needs_and_label_what_they_mean(tmp_path):
    from pathlib import Path

    from helpers import copies

    from watcherd.index import Index

    lib = tmp_path / "lib"
    img = photo(7)
    save(img, lib / "a.jpg")
    made = copies(img, lib / "copies", "a")
    save(photo(8), lib / "b.jpg")
    save(photo(9), lib / "c.jpg")
    db = tmp_path / "index.sqlite3"
    invoke("--db", str(db), "scan", str(lib))
    with Index(db, writer=True) as index:  # a similar shot, as the pipeline records one
        b, c = index.file_by_path(str(lib / "b.jpg")), index.file_by_path(str(lib / "c.jpg"))
        index.record_similar(c, b, 14)
        index.commit()
    rows = json.loads(invoke("--db", str(db), "report", "--format", "json").stdout)
    rows = rows["duplicates"]
    copies_rows = [r for r in rows if r["kind"] != "similar"]
    assert len(copies_rows) == len(made) and len({r["group"] for r in copies_rows}) == 1
    for r in copies_rows:
        assert r["size"] == Path(r["path"]).stat().st_size
        assert r["matched_with"]  # the file the distance was measured to
    turned = next(r for r in rows if r["path"] == str(made["rotated90"]))
    assert turned["transform"] in ("rotate90", "rotate270")
    similar = next(r for r in rows if r["kind"] == "similar")
    assert similar["action"] == "reported"  # neither flagged nor moved
    csv_text = invoke("--db", str(db), "report", "--format", "csv").stdout
    assert csv_text.splitlines()[0].endswith(
        ",size,group,transform,matched_with,machine,original_machine"  # issue 27: machines
    )
    table = invoke("--db", str(db), "report").stdout
    assert f"[{len(made)} copies, " in table and " reclaimable]" in table
    assert "[1 similar shot]" in table


def test_logs_into_the_journal_carry_syslog_priorities_and_no_timestamp(tmp_path):
    """Under systemd each line had its own timestamp, a level word and no priority, so
    `journalctl -p warning` showed nothing."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    lib = tmp_path / "lib"
    lib.mkdir()
    (lib / "empty.jpg").write_bytes(b"")  # a warning: cannot index it
    err = tmp_path / "stderr"
    with open(err, "w") as fh:
        st = os.fstat(fh.fileno())
        st_err = f"{st.st_dev}:{st.st_ino}"
        subprocess.run(
            [sys.executable, "-m", "watcherd", "--db", str(tmp_path / "i.sqlite3"), "-v",
             "scan", str(lib)],
            stderr=fh, stdout=subprocess.DEVNULL, env={**os.environ, "JOURNAL_STREAM": st_err},
            check=True,
        )  # fmt: skip
    lines = err.read_text().splitlines()
    warning = next(line for line in lines if "empty.jpg" in line)
    assert warning.startswith("<4>cannot index "), warning
    unit = (Path(__file__).parents[1] / "watcherd" / "data" / "watcherd.service").read_text()
    assert "SyslogIdentifier=watcherd" in unit
    plain = subprocess.run(
        [sys.executable, "-m", "watcherd", "--db", str(tmp_path / "j.sqlite3"), "scan", str(lib)],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    assert not plain.stderr.startswith("<")  # a terminal or a file: readable lines


def test_global_options_work_after_the_command_too(tmp_path):
    lib = tmp_path / "lib"
    save(photo(3), lib / "a.jpg")
    db = tmp_path / "index.sqlite3"
    out = invoke("scan", "--db", str(db), "--log-format", "json", "--json", str(lib))
    assert json.loads(out.stdout)["new"] == 1 and db.exists()
    listed = invoke("quarantine", "list", "--db", str(db), "-v")
    assert listed.returncode == 0
    report = invoke("report", "--format", "json", f"--db={db}")
    assert json.loads(report.stdout)["summary"]["files"] == 1


def test_quarantine_apply_moves_what_was_flagged_before_quarantine_was_on(tmp_path):
    """After a week of `action = "flag"` a user turns quarantine on: nothing applied it
    to the duplicates already flagged."""
    camera, lib, q = tmp_path / "Camera", tmp_path / "Pictures", tmp_path / "Q"
    for k in range(3):
        img = photo(60 + k)
        save(img, lib / f"a{k}.jpg")
        save(img.resize((320, 240)), lib / "sent" / f"a{k} small.jpg")
    img = photo(70)
    save(img.resize((320, 240)), camera / "protected small.jpg")  # kept: protected
    save(img, lib / "big.jpg")  # flagged against the protected copy
    cfg = tmp_path / "config.toml"
    roots = f'roots = [{{ path = "{camera}", protect = true }}, "{lib}"]\n'
    cfg.write_text(roots + 'action = "flag"\n')
    common = ["--config", str(cfg), "--db", str(tmp_path / "index.sqlite3")]
    invoke(*common, "scan")
    cfg.write_text(roots + f'action = "quarantine"\nquarantine_dir = "{q}"\n')
    again = json.loads(invoke(*common, "scan", "--json").stdout)
    assert again["quarantined"] == 0  # a scan decides new files only
    preview = invoke(*common, "quarantine", "apply", "--dry-run").stdout
    assert "Would move 4 of 4 flagged duplicates" in preview and not q.exists()
    only_sent = invoke(*common, "quarantine", "apply", "--root", str(lib / "sent")).stdout
    assert "Moved 3 of 3 flagged duplicates" in only_sent
    assert not list((lib / "sent").glob("*.jpg")) and (lib / "big.jpg").exists()
    rest = invoke(*common, "quarantine", "apply").stdout
    assert "Moved 1 of 1" in rest and not (lib / "big.jpg").exists()
    listed = json.loads(invoke(*common, "quarantine", "list", "--format", "json").stdout)
    assert len(listed) == 4  # journalled moves, each restorable
    assert (camera / "protected small.jpg").exists()


def test_a_scan_error_is_printed_once_in_the_summary(tmp_path):
    """Each error was logged as it happened and listed again at the end."""
    lib = tmp_path / "lib"
    save(photo(1), lib / "a.jpg")
    (lib / "empty.jpg").write_bytes(b"")
    proc = invoke("--db", str(tmp_path / "i.sqlite3"), "scan", str(lib))
    both = proc.stdout + proc.stderr
    assert both.count("empty.jpg") == 1, both
    assert "error: " in proc.stdout and "empty file" in proc.stdout


def test_the_html_page_shows_video_copies_without_a_rehash_warning(tmp_path):
    lib = tmp_path / "lib"
    lib.mkdir()
    clip = bytes(range(256)) * 4000  # a "video" watcherd matches by its bytes only
    (lib / "VID-1.mp4").write_bytes(clip)
    (lib / "VID-1 copy.mp4").write_bytes(clip)
    db = tmp_path / "i.sqlite3"
    invoke("--db", str(db), "scan", str(lib))
    out = tmp_path / "r.html"
    proc = invoke("--db", str(db), "report", "--format", "html", "-o", str(out))
    assert "indexed before thumbnails" not in proc.stderr
    page = out.read_text()
    assert page.count('<div class="none">video</div>') == 2


def test_output_into_a_pipe_is_never_wrapped(tmp_path):
    """`status`, error messages and `quarantine list` broke lines mid-path even at 120
    columns when their output went into a pipe or a file."""
    deep = tmp_path / ("a-rather-long-folder-name-" * 3) / "WhatsApp Images" / "Sent"
    q = tmp_path / "Q"
    img = photo(12)
    save(img, deep / "IMG-20260101-WA0001-with-a-long-name.jpg")
    save(img.resize((320, 240)), deep / "IMG-20260101-WA0002-with-a-long-name.jpg")
    cfg = tmp_path / "config.toml"
    cfg.write_text(f'roots = ["{tmp_path}"]\naction = "quarantine"\nquarantine_dir = "{q}"\n')
    common = ["--config", str(cfg), "--db", str(tmp_path / "index.sqlite3")]
    invoke(*common, "scan")
    listed = invoke(*common, "quarantine", "list", env={"COLUMNS": "80"}).stdout
    assert str(deep / "IMG-20260101-WA0002-with-a-long-name.jpg") in listed.splitlines()[0]
    status = invoke(*common, "status", env={"COLUMNS": "80"}).stdout
    assert any(str(tmp_path) in line for line in status.splitlines())
    bad = invoke(*common, "restore", str(deep / "no-such-file-with-a-long-name.jpg"),
                  env={"COLUMNS": "80"}, check=False)  # fmt: skip
    missing = str(deep / "no-such-file-with-a-long-name.jpg")
    assert bad.returncode != 0 and any(missing in line for line in bad.stderr.splitlines())


def test_a_large_first_catch_up_is_summed_up_in_one_line(tmp_path, daemons):
    """A first start on a folder full of photos wrote one info line per photo to the
    journal; it says what it did in one summary line (a small catch-up still lists)."""
    pics = tmp_path / "pics"
    for k in range(120):
        save(photo(300 + k, (96, 72)), pics / f"p{k:03d}.jpg")
    d = daemons(tmp_path, [pics]).start()
    summary = d.wait_for(lambda e: e["event"] == "caught_up", what="the summary")[0]
    assert summary["indexed"] + summary["duplicates"] + summary["errors"] == 120
    assert not d.of("indexed")  # not one line per photo
    new = save(photo(999, (96, 72)), pics / "new.jpg")
    assert d.wait_decided(new)["event"] == "indexed"  # arrivals are listed as ever
    assert d.stop() == 0
