"""The `watcherd` command in real subprocesses, as a user runs it."""

import csv
import io
import json
import os
import sys
from pathlib import Path

from conftest import invoke, run_cli, unprivileged
from helpers import copies, photo, save


def build_library(root: Path) -> dict[str, set[str]]:
    """Originals with every kind of copy, and unrelated pictures; returns the true groups."""
    groups: dict[str, set[str]] = {}
    for s in range(3):
        img = photo(100 + s, (720, 540))
        original = save(img, root / "camera" / f"IMG_{s:04}.jpg")
        made = copies(img, root / "whatsapp" / f"set{s}", f"IMG-{s}")
        groups[f"g{s}"] = {str(original), *map(str, made.values())}
    for s in range(8):
        save(photo(200 + s, (640, 480)), root / "camera" / f"unrelated_{s}.jpg")
    return groups


def test_scan_then_report_json_pair_by_pair(tmp_path):
    lib = tmp_path / "Pictures"
    groups = build_library(lib)
    db = tmp_path / "index.sqlite3"
    out = invoke("--db", str(db), "scan", str(lib), "--json")
    stats = json.loads(out.stdout)
    assert stats["seen"] == 3 * 8 + 8 and stats["errors"] == 0

    report = json.loads(invoke("--db", str(db), "report", "--format", "json").stdout)
    group_of = {p: g for g, members in groups.items() for p in members}
    linked: dict[str, set[str]] = {g: set() for g in groups}
    for d in report["duplicates"]:
        assert set(d) == {
            "path", "original", "kind", "distance", "detected_at", "action", "quarantined_path",
            "size", "group", "transform", "matched_with",  # added by issue 24, for scripts
            "duration",  # issue 26: a video's length
            "machine", "original_machine",  # issue 27: whose disk each is on
        }  # fmt: skip
        assert d["size"] == Path(d["path"]).stat().st_size and d["group"] > 0
        assert d["path"] in group_of, f"unrelated image linked: {d['path']}"
        assert group_of[d["original"]] == group_of[d["path"]], d
        assert d["kind"] == "near" and d["action"] == "flagged" and d["quarantined_path"] is None
        assert 0 <= d["distance"] <= 10
        linked[group_of[d["path"]]] |= {d["path"], d["original"]}
    for g, members in groups.items():
        assert linked[g] == members, f"group {g}: missing {members - linked[g]}"
    assert report["summary"]["duplicates"] == 3 * 7
    assert report["summary"]["groups"] == 3
    assert report["summary"]["reclaimable_bytes"] > 0


def test_second_scan_skips_everything(tmp_path):
    lib = tmp_path / "lib"
    build_library(lib)
    db = str(tmp_path / "i.sqlite3")
    invoke("--db", db, "scan", str(lib))
    stats = json.loads(invoke("--db", db, "scan", str(lib), "--json").stdout)
    assert stats["skipped"] == stats["seen"] == 32 and stats["new"] == 0


def test_db_from_environment_and_human_summary(tmp_path):
    save(photo(1), tmp_path / "lib" / "a.jpg")
    save(photo(1), tmp_path / "lib" / "b.jpg", quality=50)
    env = {"WATCHERD_DB": str(tmp_path / "env.sqlite3")}
    out = invoke("scan", str(tmp_path / "lib"), env=env)
    assert "Scanned 2 files" in out.stdout and "1 near duplicates" in out.stdout
    assert (tmp_path / "env.sqlite3").exists()


def test_default_db_location_is_platformdirs_data_dir(tmp_path, isolated_env):
    save(photo(1), tmp_path / "lib" / "a.jpg")
    invoke("scan", str(tmp_path / "lib"))
    assert (isolated_env / ".local/share/watcherd/index.sqlite3").exists()


def test_bad_files_reported_and_counted(tmp_path):
    lib = tmp_path / "lib"
    save(photo(1), lib / "good.jpg")
    (lib / "zero.jpg").touch()
    (lib / "fake.jpg").write_text("not a jpeg")
    data = save(photo(2), lib / "t.jpg").read_bytes()
    (lib / "t.jpg").write_bytes(data[:2000])
    locked = save(photo(3), lib / "locked.jpg")
    locked.chmod(0)
    db = str(tmp_path / "i.sqlite3")
    # run as a user the permissions apply to, so locked.jpg really cannot be opened
    proc = run_cli_prefixed(unprivileged(), "--db", db, "scan", str(lib))
    assert proc.returncode == 0, proc.stderr
    assert "4 errors" in proc.stdout
    for name, reason in [
        ("zero.jpg", "empty file"),
        ("fake.jpg", "not an image"),
        ("t.jpg", "truncated"),
        ("locked.jpg", "Permission denied"),
    ]:
        line = next(ln for ln in proc.stdout.splitlines() if name in ln)
        assert reason in line
    summary = json.loads(invoke("--db", db, "report", "--format", "json").stdout)["summary"]
    assert summary["errors"] == 4 and summary["files"] == 5


def run_cli_prefixed(prefix, *args):
    import subprocess

    return subprocess.run(
        [*prefix, sys.executable, "-m", "watcherd", *args],
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_report_formats_and_fail_on_duplicates(tmp_path):
    save(photo(1), tmp_path / "lib" / "a.jpg")
    save(photo(1).resize((320, 240)), tmp_path / "lib" / "b.jpg")
    db = str(tmp_path / "i.sqlite3")
    invoke("--db", db, "scan", str(tmp_path / "lib"))
    rows = list(csv.DictReader(io.StringIO(invoke("--db", db, "report", "--format", "csv").stdout)))
    assert [(Path(r["path"]).name, Path(r["original"]).name) for r in rows] == [("b.jpg", "a.jpg")]
    table = invoke("--db", db, "report").stdout
    assert "a.jpg" in table and "b.jpg" in table and "reclaimable" in table
    assert invoke("--db", db, "report", "--fail-on-duplicates", check=False).returncode == 1
    assert invoke("--db", db, "report", "--kind", "exact", "--fail-on-duplicates").returncode == 0
    assert json.loads(invoke("--db", db, "report", "--format", "json", "--since", "1h").stdout)[
        "duplicates"
    ]
    empty = tmp_path / "empty.sqlite3"
    assert invoke("--db", str(empty), "report", "--fail-on-duplicates").returncode == 0


def test_dry_run_writes_nothing(tmp_path):
    save(photo(1), tmp_path / "lib" / "a.jpg")
    save(photo(1), tmp_path / "lib" / "b.png")
    db = str(tmp_path / "i.sqlite3")
    out = invoke("--db", db, "scan", "--dry-run", str(tmp_path / "lib"))
    assert "would have found 0 exact and 1 near" in out.stdout
    assert json.loads(invoke("--db", db, "report", "--format", "json").stdout)["duplicates"] == []


def test_config_init_show_and_errors(tmp_path):
    cfg = tmp_path / "c.toml"
    invoke("--config", str(cfg), "config", "init")
    assert "phash_distance = 10" in cfg.read_text()
    again = invoke("--config", str(cfg), "config", "init", check=False)
    assert again.returncode == 1 and "already exists" in again.stderr
    shown = json.loads(invoke("--config", str(cfg), "config", "show", "--json").stdout)
    assert shown["config_file"] == str(cfg) and shown["action"] == "flag"
    cfg.write_text('action = "shred"\n')
    bad = invoke("--config", str(cfg), "config", "show", check=False)
    assert bad.returncode == 78  # a configuration error's own status (EX_CONFIG), issue 24
    assert str(cfg) in bad.stderr and "'action'" in bad.stderr
    assert "Traceback" not in bad.stderr


def test_missing_root_is_reported_not_a_crash(tmp_path):
    lib = tmp_path / "lib"
    save(photo(1), lib / "a.jpg")
    cfg = tmp_path / "c.toml"
    cfg.write_text(f'roots = ["{lib}", "{tmp_path / "gone"}"]\n')
    env = {"WATCHERD_CONFIG": str(cfg), "WATCHERD_DB": str(tmp_path / "i.sqlite3")}
    out = invoke("scan", env=env)
    assert "folder not found" in out.stderr and "gone" in out.stderr
    assert "Scanned 1 files" in out.stdout
    shown = invoke("config", "show", env=env)
    assert "root does not exist" in shown.stderr


def test_nothing_to_scan(tmp_path):
    proc = invoke("--db", str(tmp_path / "i.sqlite3"), "scan", check=False)
    assert proc.returncode == 2 and "nothing to scan" in proc.stderr


def test_quick_exit_keeps_output_exit_code_and_clean_up(tmp_path):
    """The command skips the interpreter's teardown (cli.entry): all its output still
    arrives, its exit code is kept, and multiprocessing's exit handlers still remove the
    forkserver's temporary folder (kept in TMPDIR here)."""
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    lib = tmp_path / "lib"
    for i in range(40):  # more output than one pipe write
        save(photo(i, (64, 48)), lib / f"p{i:02}.jpg")
    db = str(tmp_path / "i.sqlite3")
    out = run_cli("--db", db, "-v", "scan", "--json", str(lib), env={"TMPDIR": str(tmp)})
    assert json.loads(out.stdout)["new"] == 40
    assert sum("indexed" in line for line in out.stderr.splitlines()) >= 1
    assert list(tmp.iterdir()) == []
    proc = run_cli("--db", db, "scan", str(tmp_path / "gone"), check=False)
    assert proc.returncode == 1 and "none of the folders" in proc.stderr
    proc = run_cli("--db", db, "report", "--no-such-option", check=False)
    assert proc.returncode == 2 and "No such option" in proc.stderr


def test_json_log_line_per_decision(tmp_path):
    save(photo(1), tmp_path / "lib" / "a.jpg")
    save(photo(1).resize((300, 225)), tmp_path / "lib" / "b.jpg")
    proc = run_cli(
        "--db", str(tmp_path / "i.sqlite3"), "-v", "--log-format", "json", "scan",
        str(tmp_path / "lib"),
    )  # fmt: skip
    events = [json.loads(line) for line in proc.stderr.splitlines() if line.startswith("{")]
    dup = [e for e in events if e["event"] == "duplicate"]
    assert len(dup) == 1
    assert dup[0]["path"].endswith("b.jpg") and dup[0]["original"].endswith("a.jpg")
    assert dup[0]["kind"] == "near" and isinstance(dup[0]["ts"], float)
    assert [e["event"] for e in events].count("indexed") == 1


def test_env_is_clean():
    assert "WATCHERD_DB" not in os.environ


def test_the_command_module_imports_nothing_heavy():
    """`watcherd` run as its console script makes every decoding pool's forkserver import
    the command module before it can start a worker: SQLAlchemy, numpy and Pillow there
    cost a scan ~0.4 s before its first file. Commands import them when they run."""
    import subprocess

    code = (
        "import sys, watcherd.cli; "
        "print(sorted(m for m in ('sqlalchemy', 'numpy', 'PIL') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
