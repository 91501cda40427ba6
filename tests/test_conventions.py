"""The conventions of the command line a user expects from its neighbours (issue 28)."""

from __future__ import annotations

import json

from conftest import invoke
from helpers import photo, save


def test_dash_h_is_help_everywhere():
    for args in ([], ["scan"], ["quarantine", "apply"], ["service", "install"]):
        proc = invoke(*args, "-h")
        assert proc.stdout.startswith("Usage: "), args


def test_every_option_has_help_text():
    import click

    from watcherd.cli import main

    def walk(command, name):
        for param in command.params:
            if isinstance(param, click.Option) and not param.hidden:
                yield name, param
        for sub, child in getattr(command, "commands", {}).items():
            yield from walk(child, f"{name} {sub}")

    missing = [f"{name} {p.opts[0]}" for name, p in walk(main, "watcherd") if not p.help]
    assert missing == []


def test_format_json_is_one_spelling_on_every_command(tmp_path):
    save(photo(1), tmp_path / "lib" / "a.jpg")
    db = ["--db", str(tmp_path / "index.sqlite3")]
    assert json.loads(invoke(*db, "scan", "--format", "json", str(tmp_path / "lib")).stdout)
    assert json.loads(invoke(*db, "status", "--format", "json").stdout)["db"]
    assert json.loads(invoke(*db, "config", "show", "--format", "json").stdout)["db"]
    assert json.loads(invoke(*db, "status", "--json").stdout)["db"]  # the old spelling


def test_an_unknown_key_suggests_the_closest(tmp_path):
    cfg = tmp_path / "config.toml"
    cfg.write_text('acton = "quarantine"\n')
    bad = invoke("--config", str(cfg), "config", "show", check=False)
    assert bad.returncode == 78 and "did you mean 'action'?" in bad.stderr
    cfg.write_text("[near]\nphash_distanse = 8\n")
    bad = invoke("--config", str(cfg), "config", "show", check=False)
    assert "'near.phash_distanse'" in bad.stderr and "did you mean 'phash_distance'" in bad.stderr


def test_a_file_where_a_folder_is_expected_is_one_line(tmp_path):
    photo_file = save(photo(2), tmp_path / "a.jpg")
    proc = invoke("--db", str(tmp_path / "i.sqlite3"), "run", str(photo_file), check=False)
    assert proc.returncode == 2 and "is a file" in proc.stderr
    assert "Traceback" not in proc.stderr and len(proc.stderr.strip().splitlines()) == 1


def test_notify_test_with_a_bus_but_no_server_says_so_in_words(session_bus):
    out = invoke("notify-test", env={"DBUS_SESSION_BUS_ADDRESS": session_bus.address},
                  check=False)  # fmt: skip
    assert out.returncode == 1
    assert "no notification server is running in this session" in out.stderr


def _quarantined_library(tmp_path, count: int = 3):
    lib, q = tmp_path / "lib", tmp_path / "Q"
    for k in range(count):
        img = photo(80 + k)
        save(img, lib / f"a{k}.jpg")
        save(img.resize((320, 240)), lib / f"a{k} small.jpg")
    cfg = tmp_path / "config.toml"
    cfg.write_text(f'roots = ["{lib}"]\naction = "quarantine"\nquarantine_dir = "{q}"\n')
    common = ["--config", str(cfg), "--db", str(tmp_path / "index.sqlite3")]
    invoke(*common, "scan")
    return lib, common


def test_restore_previews_with_dry_run(tmp_path):
    lib, common = _quarantined_library(tmp_path)
    out = invoke(*common, "restore", "--all", "--dry-run").stdout
    assert "Would restore 3 files." in out
    assert f"would restore {lib / 'a0 small.jpg'}" in out
    assert not (lib / "a0 small.jpg").exists()  # nothing moved
    invoke(*common, "restore", "--all", "-y")
    assert (lib / "a0 small.jpg").exists()


def test_ignore_lists_removes_and_refuses_a_file_paired_with_itself(tmp_path):
    lib = tmp_path / "lib"
    img = photo(90)
    a, b = save(img, lib / "a.jpg"), save(img.resize((320, 240)), lib / "b.jpg")
    common = ["--db", str(tmp_path / "index.sqlite3")]
    invoke(*common, "scan", str(lib))
    same = invoke(*common, "ignore", str(a), str(a), check=False)
    assert same.returncode == 2 and "never a duplicate of itself" in same.stderr
    invoke(*common, "ignore", str(a), str(b))
    assert invoke(*common, "ignore", "--list").stdout.strip() == f"{a}\t{b}"
    removed = invoke(*common, "ignore", "--remove", str(b), str(a)).stdout
    assert "may be called duplicates again" in removed
    assert invoke(*common, "ignore", "--list").stdout.strip() == ""


def test_config_init_takes_the_folders_to_watch_and_writes_them_home_relative(
    tmp_path, isolated_env
):
    pictures = isolated_env / "Pictures"
    pictures.mkdir()
    cfg = tmp_path / "config.toml"
    invoke("--config", str(cfg), "config", "init", "--root", str(pictures))
    assert 'roots = ["~/Pictures"]' in cfg.read_text()
    shown = json.loads(invoke("--config", str(cfg), "config", "show", "--json").stdout)
    assert shown["roots"][0]["path"] == str(pictures)


def test_a_db_that_is_not_an_index_is_one_line_and_untouched(tmp_path):
    import sqlite3

    notes = tmp_path / "notes.txt"
    notes.write_text("shopping: milk, eggs\n")
    other = tmp_path / "other.sqlite"
    with sqlite3.connect(other) as con:
        con.execute("CREATE TABLE recipes (name TEXT)")
    cases = [
        (notes, "is not a watcherd index"),
        (other, "not a watcherd index"),
        (tmp_path, "is a folder"),
        (notes / "sub" / "index.sqlite3", "cannot create"),  # its folder cannot be made
    ]
    for db, words in cases:
        proc = invoke("--db", str(db), "status", check=False)
        assert proc.returncode == 2 and words in proc.stderr, (db, proc.stderr)
        assert "Traceback" not in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
    assert notes.read_text() == "shopping: milk, eggs\n"
    with sqlite3.connect(other) as con:  # nothing of watcherd's added to it
        assert [r[0] for r in con.execute("SELECT name FROM sqlite_master")] == ["recipes"]


def test_shell_completion_for_bash_completes_commands(tmp_path):
    """`watcherd completion bash` prints a script bash loads; completing `watcherd qu`
    through it offers `quarantine`."""
    import os
    import shutil
    import subprocess
    import sys

    import pytest

    bash = shutil.which("bash")
    if bash is None:
        pytest.skip("no bash here")
    script = invoke("completion", "bash").stdout
    assert "_WATCHERD_COMPLETE" in script
    env = {**os.environ, "_WATCHERD_COMPLETE": "bash_complete", "COMP_WORDS": "watcherd qu",
           "COMP_CWORD": "1"}  # fmt: skip
    offered = subprocess.run(
        [sys.executable, "-m", "watcherd"], env=env, capture_output=True, text=True
    ).stdout  # what the script asks for at each Tab
    assert "quarantine" in offered
    loaded = subprocess.run(
        [bash, "-c", f"{script}\ncomplete -p watcherd"], capture_output=True, text=True
    )
    assert "watcherd" in loaded.stdout, loaded.stderr
