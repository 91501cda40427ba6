"""Quarantine never loses a photo: journalled moves, crash recovery, restore, ignore."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from types import SimpleNamespace
from urllib.parse import quote

import pytest
from conftest import invoke, mounted_tmpfs, read_only_folder
from helpers import busy_photo, copies, photo, save
from sqlalchemy import select

from watcherd import actions, moving, owners
from watcherd.actions import ActionError, Mover
from watcherd.config import Config, Root
from watcherd.index import Index
from watcherd.models import DONE, QUARANTINED, ROLLED_BACK, Decision, File, Move
from watcherd.scanner import scan


def tree_hashes(*folders: Path) -> dict[str, str]:
    out = {}
    for folder in folders:
        for p in sorted(folder.rglob("*")):
            if p.is_file():
                out[str(p.relative_to(folder))] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


def all_contents(*folders: Path) -> list[str]:
    return sorted(
        hashlib.sha256(p.read_bytes()).hexdigest()
        for folder in folders
        if folder.exists()
        for p in folder.rglob("*")
        if p.is_file()
    )


def check_invariant(db: Path, lib: Path, qdir: Path, expected: list[str]) -> None:
    """Every file exactly once (in place or in quarantine) and the index agrees."""
    assert all_contents(lib, qdir) == sorted(expected)
    with Index(db) as index:
        for f in index.session.scalars(select(File)):
            if f.status == "active":
                assert Path(f.path).is_file() and f.path.startswith(str(lib)), f.path
            elif f.status == QUARANTINED:
                assert Path(f.path).is_file() and f.path.startswith(str(qdir)), f.path
            assert (
                f.sha256 is None
                or not Path(f.path).exists()
                or (hashlib.sha256(Path(f.path).read_bytes()).hexdigest() == f.sha256)
            )
        known = {f.path for f in index.session.scalars(select(File))}
        for p in qdir.rglob("*") if qdir.exists() else []:
            if p.is_file():
                assert str(p) in known, f"stray file in quarantine: {p}"
        assert index.session.scalar(select(Move).where(Move.state == "intent")) is None


def setup_pair(tmp_path: Path, qdir: Path | None = None, size=(640, 480), small_size=(320, 240)):
    """lib/big.jpg and its smaller copy lib/sub/small.jpg (the one to quarantine)."""
    lib = tmp_path / "lib"
    img = photo(1, size)
    big = save(img, lib / "big.jpg")
    small = save(img.resize(small_size), lib / "sub" / "small.jpg")
    os.chmod(small, 0o640)
    os.utime(small, ns=(1_600_000_000 * 10**9, 1_600_000_000 * 10**9))
    qdir = qdir or tmp_path / "Q"
    cfg = Config(workers=1, roots=(Root(lib),), quarantine_dir=qdir, action="flag")
    return SimpleNamespace(lib=lib, big=big, small=small, qdir=qdir, cfg=cfg)


def flagged(index: Index, cfg: Config, lib: Path) -> tuple[File, Decision]:
    scan([lib], cfg, index)
    d = index.session.scalar(select(Decision).where(Decision.current.is_(True)))
    return index.get(d.file_id), d


def test_quarantine_moves_keeps_mtime_mode_and_journals(tmp_path):
    t = setup_pair(tmp_path)
    lib, small, qdir, cfg = t.lib, t.small, t.qdir, t.cfg
    st = small.stat()
    with Index(tmp_path / "i.sqlite3") as index:
        f, d = flagged(index, cfg, lib)
        assert f.path == str(small)
        out = Mover(index, cfg).quarantine(f, d)
        assert out.moved and not small.exists()
        moved = Path(out.path)
        assert moved.parent.name == "sub" and moved.name == "small.jpg"
        assert qdir in moved.parents
        assert moved.stat().st_mtime_ns == st.st_mtime_ns
        assert moved.stat().st_mode & 0o777 == 0o640
        assert (f.status, f.path, d.action, d.quarantined_path) == (
            QUARANTINED, str(moved), "quarantined", str(moved)
        )  # fmt: skip
        move = index.session.scalar(select(Move))
        assert (move.state, move.src, move.dest) == (DONE, str(small), str(moved))


def test_never_overwrites_a_name_in_quarantine(tmp_path):
    t = setup_pair(tmp_path)
    lib, cfg = t.lib, t.cfg
    with Index(tmp_path / "i.sqlite3") as index:
        f, d = flagged(index, cfg, lib)
        mover = Mover(index, cfg)
        squatter = mover.quarantine_target(f)
        squatter.parent.mkdir(parents=True)
        squatter.write_bytes(b"already here")
        out = mover.quarantine(f, d)
    assert Path(out.path).name == "small (2).jpg"
    assert squatter.read_bytes() == b"already here"


SAME_FS_STEPS = ("intent", "placeholder", "renamed")  # a rename has no copy to verify
STEP_CASES = [(s, False) for s in SAME_FS_STEPS] + [(s, True) for s in actions.STEPS]


@pytest.mark.parametrize(
    ("step", "cross_fs"), STEP_CASES, ids=[f"{s}-{'cross' if c else 'same'}" for s, c in STEP_CASES]
)
def test_failure_between_any_two_steps_loses_nothing(tmp_path, monkeypatch, step, cross_fs):
    qdir = tmp_path / "Q"
    ctx = mounted_tmpfs(qdir) if cross_fs else _nullcontext(qdir)
    with ctx:
        t = setup_pair(tmp_path, qdir)
        lib, qdir, cfg = t.lib, t.qdir, t.cfg
        expected = all_contents(lib)
        db = tmp_path / "i.sqlite3"
        index = Index(db)
        f, d = flagged(index, cfg, lib)

        def fail(name):
            if name == step:
                raise RuntimeError(f"injected failure after {name}")

        monkeypatch.setattr(moving, "fault_hook", fail)
        with pytest.raises(RuntimeError, match="injected"):
            Mover(index, cfg).quarantine(f, d)
        index.session.close()  # the process 'dies': nothing more of its session is written
        owners.release()  # and the kernel lets go of its owner lock
        monkeypatch.setattr(moving, "fault_hook", None)
        with Index(db) as fresh:
            done = Mover(fresh, cfg).recover()
            fresh.commit()
        # finished where the copy was complete, else undone and carried out again: the
        # decision still stands either way
        assert [outcome for _, outcome in done] in (["finished"], ["undone, then moved again"])
        assert not (lib / "sub" / "small.jpg").exists()
        check_invariant(db, lib, qdir, expected)
        # and whichever way it went, a restore brings the folder back byte for byte
        before = tree_hashes(lib) | {"sub/small.jpg": hashlib.sha256(b"").hexdigest()}
        with Index(db) as again:
            for q in again.session.scalars(select(File).where(File.status == QUARANTINED)):
                Mover(again, cfg).restore(q)
        after = tree_hashes(lib)
        assert set(after) == {"big.jpg", "sub/small.jpg"}
        assert after["big.jpg"] == before["big.jpg"]


class _nullcontext:
    def __init__(self, value):
        self.value = value

    def __enter__(self):
        return self.value

    def __exit__(self, *exc):
        return False


def test_cross_filesystem_move_for_real(tmp_path):
    with mounted_tmpfs(tmp_path / "Q") as qdir:
        t = setup_pair(tmp_path, qdir)
        lib, small, qdir, cfg = t.lib, t.small, t.qdir, t.cfg
        data = small.read_bytes()
        with Index(tmp_path / "i.sqlite3") as index:
            f, d = flagged(index, cfg, lib)
            assert os.stat(small).st_dev != os.stat(qdir).st_dev
            out = Mover(index, cfg).quarantine(f, d)
            assert out.moved and not small.exists()
            assert Path(out.path).read_bytes() == data
            assert Path(out.path).stat().st_mtime_ns == 1_600_000_000 * 10**9
            assert not list(qdir.rglob(".*.tmp"))
            back = Mover(index, cfg).restore(f)
            assert back.path == str(small) and small.read_bytes() == data


def test_restore_all_returns_the_tree_byte_identical(tmp_path):
    lib = tmp_path / "Pictures"
    for s in range(3):
        img = photo(20 + s)
        save(img, lib / f"IMG_{s}.jpg")
        copies(img, lib / "WhatsApp" / f"{s}", f"IMG-{s}")
    save(photo(40), lib / "unrelated.jpg")
    before = tree_hashes(lib)
    cfg = tmp_path / "c.toml"
    cfg.write_text(
        f'roots = ["{lib}"]\naction = "quarantine"\nquarantine_dir = "{tmp_path / "Q"}"\n'
    )
    env = {"WATCHERD_CONFIG": str(cfg), "WATCHERD_DB": str(tmp_path / "i.sqlite3")}
    out = invoke("scan", env=env)
    assert "Quarantine: moved 21 files" in out.stdout
    assert len(tree_hashes(lib)) == len(before) - 21
    listed = json.loads(invoke("quarantine", "list", "--format", "json", env=env).stdout)
    assert len(listed) == 21
    assert all(e["original"].startswith(str(lib)) and e["kind"] == "near" for e in listed)
    assert all(e["restore_command"] == f"watcherd restore {e['id']}" for e in listed)
    report = json.loads(invoke("report", "--format", "json", env=env).stdout)
    q = [d for d in report["duplicates"] if d["action"] == "quarantined"]
    assert len(q) == 21
    assert all(d["path"].startswith(str(lib)) and Path(d["quarantined_path"]).exists() for d in q)
    invoke("restore", "--all", env=env)
    assert tree_hashes(lib) == before
    assert json.loads(invoke("quarantine", "list", "--format", "json", env=env).stdout) == []
    # restored files are 'not duplicates' of their partners: a rescan leaves them alone
    for p in lib.rglob("*.jpg"):
        os.utime(p)  # force a re-read of every file
    again = invoke("scan", env=env)
    assert "moved 0 files" in again.stdout
    assert tree_hashes(lib) == before


def test_restore_beside_a_taken_name_and_by_path(tmp_path):
    t = setup_pair(tmp_path)
    lib, small, qdir, cfg = t.lib, t.small, t.qdir, t.cfg
    with Index(tmp_path / "i.sqlite3") as index:
        f, d = flagged(index, cfg, lib)
        Mover(index, cfg).quarantine(f, d)
    small.write_bytes(b"a new file took the name")
    conf = tmp_path / "c.toml"
    conf.write_text(f'roots = ["{lib}"]\nquarantine_dir = "{qdir}"\n')
    env = {"WATCHERD_CONFIG": str(conf), "WATCHERD_DB": str(tmp_path / "i.sqlite3")}
    out = invoke("restore", str(small), env=env)
    assert f"restored {lib / 'sub' / 'small (2).jpg'}" in out.stdout
    assert "is taken: restored beside it" in out.stdout
    assert small.read_bytes() == b"a new file took the name"
    missing = invoke("restore", "999", env=env, check=False)
    assert missing.returncode == 1 and "nothing in quarantine matches 999" in missing.stderr


def test_restore_refuses_paths_outside_roots(tmp_path):
    t = setup_pair(tmp_path)
    lib, cfg = t.lib, t.cfg
    outside = tmp_path / "outside"
    outside.mkdir()
    (lib / "escape").symlink_to(outside)
    with Index(tmp_path / "i.sqlite3") as index:
        f, d = flagged(index, cfg, lib)
        mover = Mover(index, cfg)
        mover.quarantine(f, d)
        move = index.session.scalar(select(Move))
        for crafted in ("/etc/cron.d/evil.jpg", f"{lib}/../outside/x.jpg", f"{lib}/escape/x.jpg"):
            move.src = crafted
            index.commit()
            with pytest.raises(ActionError, match="refusing"):
                mover.restore(f)
        assert not list(outside.iterdir())
        assert Path(f.path).exists() and f.status == QUARANTINED


def test_protected_root_and_outside_roots_are_never_moved(tmp_path):
    camera, downloads = tmp_path / "camera", tmp_path / "downloads"
    img = photo(5, (640, 480))
    save(img.resize((320, 240)), camera / "small.jpg")  # protected: kept, though smaller
    save(img, downloads / "big.jpg")  # the copy outside protected roots: the one to move
    other = tmp_path / "elsewhere"
    save(img.resize((160, 120)), other / "tiny.jpg")
    cfg = Config(
        workers=1,
        roots=(Root(camera, protect=True), Root(downloads)),
        quarantine_dir=tmp_path / "Q",
        action="quarantine",
    )
    with Index(tmp_path / "i.sqlite3") as index:
        scan([other], Config(workers=1), index)  # indexed earlier, outside any root
        stats = scan([camera, downloads], cfg, index)
    # since issue 24 a protected copy is the kept one: the copy in downloads moves; the
    # protected one and the one outside every root never do
    assert stats.near == 2 and stats.quarantined == 1
    assert (camera / "small.jpg").exists() and (other / "tiny.jpg").exists()
    assert not (downloads / "big.jpg").exists()
    assert [p.name for p in (tmp_path / "Q").rglob("*.jpg")] == ["big.jpg"]


def test_dry_run_moves_nothing(tmp_path):
    t = setup_pair(tmp_path)
    lib, small, qdir = t.lib, t.small, t.qdir
    conf = tmp_path / "c.toml"
    conf.write_text(f'roots = ["{lib}"]\naction = "quarantine"\nquarantine_dir = "{qdir}"\n')
    env = {"WATCHERD_CONFIG": str(conf), "WATCHERD_DB": str(tmp_path / "i.sqlite3")}
    out = invoke("-v", "scan", "--dry-run", env=env)
    assert "Quarantine: would move 1 files" in out.stdout
    assert "would quarantine" in out.stderr
    assert small.exists() and not qdir.exists()


def test_ignore_command(tmp_path):
    t = setup_pair(tmp_path)
    lib, big, small = t.lib, t.big, t.small
    env = {"WATCHERD_DB": str(tmp_path / "i.sqlite3")}
    invoke("scan", str(lib), env=env)
    assert json.loads(invoke("report", "--format", "json", env=env).stdout)["duplicates"]
    invoke("ignore", str(big), str(small), env=env)
    assert json.loads(invoke("report", "--format", "json", env=env).stdout)["duplicates"] == []
    os.utime(small)  # changed: read again, and still not called a duplicate
    invoke("scan", str(lib), env=env)
    assert json.loads(invoke("report", "--format", "json", env=env).stdout)["duplicates"] == []
    bad = invoke("ignore", str(big), str(tmp_path / "nope.jpg"), env=env, check=False)
    assert bad.returncode == 1 and "not in the index" in bad.stderr


def test_read_only_source_folder_is_a_clear_error(tmp_path):
    t = setup_pair(tmp_path)
    lib, qdir, cfg = t.lib, t.qdir, t.cfg
    expected = all_contents(lib)
    db = tmp_path / "i.sqlite3"
    with Index(db) as index:
        f, d = flagged(index, cfg, lib)
        with read_only_folder(lib / "sub"), pytest.raises(ActionError, match="cannot quarantine"):
            Mover(index, cfg).quarantine(f, d)
        assert index.session.scalar(select(Move)).state == ROLLED_BACK
    check_invariant(db, lib, qdir, expected)


@pytest.mark.parametrize(
    ("mount", "pair", "error"),
    [
        # a 16 KB filesystem and a copy bigger than that
        ({"size": "16k"}, {"size": (1600, 1200), "small_size": (1200, 900)}, "No space left"),
        ({"readonly": True}, {}, "Read-only"),
    ],
    ids=["full", "read-only"],
)
def test_quarantine_filesystem_that_refuses_loses_nothing(tmp_path, mount, pair, error):
    with mounted_tmpfs(tmp_path / "Q", **mount) as qdir:
        t = setup_pair(tmp_path, qdir, **pair)
        lib, qdir, cfg = t.lib, t.qdir, t.cfg
        expected = all_contents(lib)
        db = tmp_path / "i.sqlite3"
        with Index(db) as index:
            f, d = flagged(index, cfg, lib)
            with pytest.raises(ActionError, match=error):
                Mover(index, cfg).quarantine(f, d)
        check_invariant(db, lib, qdir, expected)


def _env(tmp_path: Path, lib: Path, qdir: Path) -> dict:
    conf = tmp_path / "c.toml"
    conf.write_text(f'roots = ["{lib}"]\naction = "quarantine"\nquarantine_dir = "{qdir}"\n')
    return {"WATCHERD_CONFIG": str(conf), "WATCHERD_DB": str(tmp_path / "i.sqlite3")}


def test_purge_sends_old_entries_to_the_trash_after_asking(tmp_path, isolated_env):
    t = setup_pair(tmp_path)
    env = _env(tmp_path, t.lib, t.qdir)
    invoke("scan", env=env)
    [entry] = json.loads(invoke("quarantine", "list", "--format", "json", env=env).stdout)
    none_old = invoke("quarantine", "purge", "--older-than", "1d", "--yes", env=env)
    assert "Nothing in quarantine is that old" in none_old.stdout
    # asked, and answered no: nothing happens
    import subprocess
    import sys

    no = subprocess.run(
        [sys.executable, "-m", "watcherd", "quarantine", "purge", "--older-than", "0s"],
        input="n\n", capture_output=True, text=True, env={**os.environ, **env},
    )  # fmt: skip
    assert "Nothing purged" in no.stdout and Path(entry["path"]).exists()
    out = invoke("quarantine", "purge", "--older-than", "0s", "--yes", env=env)
    assert "Moved 1 files to the trash" in out.stdout
    trash = isolated_env / ".local/share/Trash/files"
    assert [p.name for p in trash.iterdir()] == ["small.jpg"]
    # the trash's "Restore" puts it back where the user had it, not in the quarantine
    info = (isolated_env / ".local/share/Trash/info/small.jpg.trashinfo").read_text()
    assert f"Path={quote(str(t.small))}\n" in info, info
    assert not Path(entry["path"]).exists()
    assert json.loads(invoke("quarantine", "list", "--format", "json", env=env).stdout) == []
    assert t.big.exists()


def test_restore_since(tmp_path):
    t = setup_pair(tmp_path)
    env = _env(tmp_path, t.lib, t.qdir)
    invoke("scan", env=env)
    assert not t.small.exists()
    out = invoke("restore", "--since", "1h", env=env)
    assert f"restored {t.small}" in out.stdout and t.small.exists()


def test_restored_file_is_matched_again_by_the_running_daemon(tmp_path):
    """After a restore the daemon must match new copies against the restored file,
    through its whole-picture and its region hashes, without reading it again."""
    from daemon_harness import Daemon

    lib, qdir = tmp_path / "lib", tmp_path / "Q"
    img = busy_photo(12)
    save(img, lib / "big.jpg")
    save(img.resize((400, 300)), lib / "small.jpg")
    d = Daemon(
        tmp_path, config=f'roots = ["{lib}"]\naction = "quarantine"\nquarantine_dir = "{qdir}"\n'
    )
    try:
        d.start()
        d.wait_for(lambda e: e.get("action") == "quarantined", what="quarantined")
        env = {"WATCHERD_CONFIG": str(d.config), "WATCHERD_DB": str(d.db)}
        invoke("restore", "--all", env=env)
        assert (lib / "small.jpg").exists()
        (lib / "big.jpg").rename(tmp_path / "big-away.jpg")  # the kept copy leaves
        d.wait_path("missing", lib / "big.jpg")
        crop = img.resize((400, 300)).crop((20, 15, 380, 285))  # a 5% crop of small.jpg
        new = save(crop, lib / "new-crop.jpg")
        dup = d.wait_path("duplicate", new)[0]
        assert dup["original"] == str(lib / "small.jpg")
    finally:
        d.close()
