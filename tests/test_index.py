import sqlite3

import pytest
from sqlalchemy import select, text

from watcherd import db
from watcherd.index import Index
from watcherd.models import File, to_signed, to_unsigned


def test_fresh_index_is_stamped_latest(tmp_path):
    path = tmp_path / "sub" / "i.sqlite3"
    with Index(path) as idx:
        v = idx.session.execute(text("SELECT version FROM schema_version")).scalar()
        assert v == db.LATEST
    assert path.exists()


def test_sqlite_settings(tmp_path):
    with Index(tmp_path / "index.sqlite3") as index:
        conn = index.session.connection()
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
        assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() >= 5000


def test_newer_schema_is_refused(tmp_path):
    path = tmp_path / "i.sqlite3"
    Index(path).close()
    con = sqlite3.connect(path)
    con.execute("UPDATE schema_version SET version = 999")
    con.commit()
    con.close()
    with pytest.raises(db.SchemaTooNew, match="999"):
        Index(path)


def test_migration_runner_applies_steps_in_order(tmp_path, monkeypatch):
    path = tmp_path / "i.sqlite3"
    Index(path).close()
    applied = []

    def step2(conn):
        applied.append(2)
        conn.exec_driver_sql("ALTER TABLE files ADD COLUMN note TEXT")

    nxt = db.LATEST + 1
    monkeypatch.setitem(db.MIGRATIONS, nxt, step2)
    monkeypatch.setattr(db.migrations, "LATEST", nxt)
    engine = db.make_engine(path)
    assert db.migrate(engine) == nxt - 1
    assert applied == [2]
    with engine.connect() as conn:
        cols = [r[1] for r in conn.exec_driver_sql("PRAGMA table_info(files)")]
        assert "note" in cols
        assert conn.exec_driver_sql("SELECT version FROM schema_version").scalar() == nxt
    assert db.migrate(engine) == nxt  # nothing left to do
    assert applied == [2]
    engine.dispose()


def test_version_5_index_gains_the_original_id_index(tmp_path):
    path = tmp_path / "i.sqlite3"
    Index(path).close()
    con = sqlite3.connect(path)
    con.execute("DROP INDEX ix_decisions_original_id")
    con.execute("UPDATE schema_version SET version = 5")
    con.commit()
    con.close()
    Index(path).close()
    con = sqlite3.connect(path)
    names = {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type = 'index'")}
    plan = " ".join(
        str(r) for r in con.execute(
            "EXPLAIN QUERY PLAN SELECT id FROM decisions WHERE file_id = 1 OR original_id = 1"
        )
    )  # fmt: skip
    assert con.execute("SELECT version FROM schema_version").fetchone()[0] == db.LATEST
    con.close()
    assert "ix_decisions_original_id" in names and "ix_decisions_original_id" in plan


def test_failed_migration_keeps_old_version(tmp_path, monkeypatch):
    path = tmp_path / "i.sqlite3"
    Index(path).close()

    def broken(conn):
        conn.exec_driver_sql("ALTER TABLE files ADD COLUMN half TEXT")
        raise RuntimeError("boom")

    nxt = db.LATEST + 1
    monkeypatch.setitem(db.MIGRATIONS, nxt, broken)
    monkeypatch.setattr(db.migrations, "LATEST", nxt)
    engine = db.make_engine(path)
    with pytest.raises(RuntimeError):
        db.migrate(engine)
    with engine.connect() as conn:
        assert conn.exec_driver_sql("SELECT version FROM schema_version").scalar() == nxt - 1
        cols = [r[1] for r in conn.exec_driver_sql("PRAGMA table_info(files)")]
        assert "half" not in cols
    engine.dispose()


@pytest.mark.parametrize("value", [0, 1, 2**63 - 1, 2**63, 2**64 - 1])
def test_hash_round_trip_through_signed_int64(index, value):
    index.upsert_file(
        None, path=f"/p/{value}.jpg", root="/p", size=1, mtime_ns=1, inode=1, phash=value, dhash=0
    )
    index.commit()
    f = index.session.query(File).one()
    assert -(2**63) <= f.phash < 2**63
    assert to_unsigned(f.phash) == value
    assert to_signed(value) == f.phash
    assert [(r[1] & (2**64 - 1)) for r in index.hash_rows()] == [value]


def test_region_dhashes_are_read_back_unsigned_for_the_pairs_asked(index):
    f = index.upsert_file(None, path="/p/a.jpg", root="/p", size=1, mtime_ns=1, inode=1)
    g = index.upsert_file(None, path="/p/b.jpg", root="/p", size=1, mtime_ns=1, inode=1)
    index.session.flush()
    index.set_regions(f.id, [(1, 5, 2**64 - 1), (2, 6, 7)], fresh=True)
    index.set_regions(g.id, [(1, 8, 9)], fresh=True)
    got = index.region_dhashes([(f.id, 1), (g.id, 1), (g.id, 2)])
    assert got == {(f.id, 1): 2**64 - 1, (g.id, 1): 9}


def test_a_new_file_rolled_back_leaves_no_object_behind(index):
    """New rows skip the ORM's unit of work; a rollback must still forget them, as the
    ORM does its own, or the next row given the same id clashes with a stale object."""
    index.upsert_file(None, path="/p/keep.jpg", root="/p", size=1, mtime_ns=1, inode=1)
    index.commit()
    gone = index.upsert_file(None, path="/p/gone.jpg", root="/p", size=2, mtime_ns=1, inode=2)
    gone_id = gone.id
    index.rollback()
    assert gone not in index.session
    again = index.upsert_file(None, path="/p/new.jpg", root="/p", size=3, mtime_ns=1, inode=3)
    if index.session.get_bind().dialect.name == "sqlite":
        assert again.id == gone_id  # SQLite hands out the rolled-back id again
    index.commit()
    assert index.get(again.id).path == "/p/new.jpg"
    assert index.file_by_path("/p/gone.jpg") is None


def test_new_file_objects_are_not_kept_alive_until_commit(index):
    """A dry-run scan inserts every file in one transaction it then rolls back: holding
    each File object until then would grow with the scan."""
    import gc
    import weakref

    refs = [
        weakref.ref(index.upsert_file(None, path=f"/p/{i}.jpg", root="/p", size=1, mtime_ns=1))
        for i in range(200)
    ]
    gc.collect()
    assert sum(r() is not None for r in refs) == 0
    index.rollback()
    assert index.file_by_path("/p/3.jpg") is None


def test_new_file_objects_read_as_loaded_rows(index):
    f = index.upsert_file(
        None, path="/p/a.jpg", root="/p", size=5, mtime_ns=7, inode=9, sha256="ab", phash=3
    )
    index.record_decision(f, f, "exact", 0, None)  # a partner set by statement, not object
    assert (f.status, f.size, f.sha256, f.duplicate_of_id) == ("active", 5, "ab", f.id)
    index.commit()
    assert (f.status, f.size, f.sha256, f.duplicate_of_id) == ("active", 5, "ab", f.id)


def test_known_in_order_is_prefix_exact_and_ordered_across_pages(index):
    for p in ("/a/b/c/2.jpg", "/a/bc/3.jpg", "/a/b", "/a/b/1.jpg", "/a/b/a b.jpg"):
        index.upsert_file(None, path=p, root="/a", size=1, mtime_ns=1, inode=1)
    want = ["/a/b", "/a/b/1.jpg", "/a/b/a b.jpg", "/a/b/c/2.jpg"]
    for page in (1, 2, 3, 5000):
        assert [p for p, _ in index.known_in_order("/a/b", page=page)] == want
    assert index.known_by_path(["/a/bc/3.jpg", "/nowhere"]).keys() == {"/a/bc/3.jpg"}


def test_reader_sees_committed_rows_while_writer_holds_transaction(tmp_path):
    path = tmp_path / "i.sqlite3"
    writer = Index(path)
    writer.upsert_file(None, path="/x/1.jpg", root="/x", size=1, mtime_ns=1, inode=1)
    writer.commit()
    writer.upsert_file(None, path="/x/2.jpg", root="/x", size=1, mtime_ns=1, inode=2)  # open txn
    reader = Index(path)
    assert reader.counts()["files"] == 1  # WAL: readers never wait for the writer
    reader.close()
    writer.commit()
    writer.close()


def test_version_1_index_is_upgraded_without_losing_rows(tmp_path):
    """An index written by the first release (schema 1) opens, gains the quarantine
    tables, and keeps every file and decision."""
    path = tmp_path / "v1.sqlite3"
    engine = db.make_engine(path)
    with engine.begin() as conn:
        db.MIGRATIONS[1](conn)
        conn.exec_driver_sql("INSERT INTO schema_version (id, version) VALUES (1, 1)")
        conn.exec_driver_sql(
            "INSERT INTO files (id, path, root, size, mtime_ns, status, first_seen, indexed_at)"
            " VALUES (1, '/p/a.jpg', '/p', 10, 1, 'active', '2026-01-01', '2026-01-01')"
        )
    engine.dispose()
    with Index(path) as idx:
        conn = idx.session.connection()
        assert conn.exec_driver_sql("SELECT version FROM schema_version").scalar() == db.LATEST
        tables = {r[0] for r in conn.exec_driver_sql("SELECT name FROM sqlite_master")}
        assert {"moves", "ignored_pairs"} <= tables
        assert idx.file_by_path("/p/a.jpg").size == 10


def test_version_3_index_gains_thumbnails_and_dates(tmp_path):
    path = tmp_path / "v3.sqlite3"
    engine = db.make_engine(path)
    with engine.begin() as conn:
        for step in (1, 2, 3):
            db.MIGRATIONS[step](conn)
        conn.exec_driver_sql("ALTER TABLE files DROP COLUMN taken_at")  # as version 3 had it
        conn.exec_driver_sql("INSERT INTO schema_version (id, version) VALUES (1, 3)")
        conn.exec_driver_sql(
            "INSERT INTO files (id, path, root, size, mtime_ns, status, first_seen, indexed_at)"
            " VALUES (1, '/p/a.jpg', '/p', 10, 1, 'active', '2026-01-01', '2026-01-01')"
        )
    engine.dispose()
    with Index(path, writer=True) as idx:
        f = idx.file_by_path("/p/a.jpg")
        assert f.taken_at is None
        idx.set_thumbnail(f.id, b"jpeg")
        idx.commit()
        assert idx.thumbnails([f.id, 99]) == {f.id: b"jpeg"}


def test_mark_missing_many_ends_every_pairing_of_those_files_only(index):
    """A deleted folder's files, marked at once: their pairings end in both directions,
    copies kept because of them stop being redundant, objects already loaded read the
    new state, and files outside the batch keep theirs."""
    from watcherd.models import Decision

    f = {
        n: index.upsert_file(None, path=f"/r/{n}.jpg", root="/r", size=1, mtime_ns=1, inode=i)
        for i, n in enumerate("abcde")
    }
    index.record_decision(f["b"], f["a"], "near", 3, None)  # b copy of a (a goes)
    index.record_decision(f["c"], f["d"], "exact", 0, None)  # c copy of d (c goes)
    index.record_decision(f["e"], f["d"], "near", 2, None)  # untouched pair
    index.commit()
    loaded = index.get(f["b"].id)
    index.mark_missing_many(x.id for x in (f["a"], f["c"]))
    index.commit()
    assert {n: index.get(x.id).status for n, x in f.items()} == {
        "a": "missing", "b": "active", "c": "missing", "d": "active", "e": "active",
    }  # fmt: skip
    assert loaded.duplicate_of_id is None  # b is no longer redundant: a is gone
    assert index.get(f["c"].id).duplicate_of_id is None
    assert index.get(f["e"].id).duplicate_of_id == f["d"].id
    live = index.session.query(Decision.file_id).filter(Decision.current.is_(True)).all()
    assert [fid for (fid,) in live] == [f["e"].id]
    assert sorted(index.live_under("/r")) == [(x.id, x.path) for n, x in f.items() if n in "bde"]


def test_a_recent_unfinished_move_into_a_path_is_under_way(index):
    """The daemon waits for a restore another process has journalled but not recorded
    (it would index the file as new); a finished or old intent is not waited for."""
    from datetime import timedelta

    from watcherd.models import DONE, Move, utcnow

    f = index.upsert_file(None, path="/q/a.jpg", root="/r", size=1, mtime_ns=1, inode=1)
    move = Move(machine=index.machine, file_id=f.id, kind="restore", src="/q/a.jpg",
                dest="/r/a.jpg", sha256="ab", size=1, mtime_ns=1)  # fmt: skip
    index.session.add(move)
    index.commit()
    assert index.move_under_way_to("/r/a.jpg")
    assert not index.move_under_way_to("/r/b.jpg")
    move.created_at = utcnow() - timedelta(minutes=5)  # left by a crash: recovery's job
    index.commit()
    assert not index.move_under_way_to("/r/a.jpg")
    move.created_at, move.state = utcnow(), DONE
    index.commit()
    assert not index.move_under_way_to("/r/a.jpg")


def test_statements_on_the_driver_match_sqlalchemys_own_execution(sqlite_index):
    """_OnDriver writes the positional values in SQLAlchemy's order, one per item of
    each IN list, and keeps the values a statement binds itself (current=False)."""
    from watcherd import index_sql as index_mod

    index = sqlite_index  # the driver path is SQLite's (elsewhere: Core)
    ids = []
    for i in range(6):
        values = dict(root="/p", size=i, mtime_ns=i, inode=i, phash=i, dhash=i, status="active")
        ids.append(index.upsert_file(None, path=f"/p/{i}.jpg", sha256=f"s{i % 2}", **values).id)
    for a, b in [(1, 0), (2, 0), (3, 4), (5, 4)]:
        index.record_decision(index.get(ids[a]), index.get(ids[b]), "near", 1, None)
    conn = index._core()
    for chosen in ([ids[0]], ids[:3], ids):
        params = {"ids": list(chosen)}
        assert sorted(index_mod._STATES.run(conn, params)) == sorted(
            tuple(r) for r in conn.execute(index_mod._STATES._stmt, params)
        )
    for n in range(1, 70):  # one SQL text per power of two, not per length
        assert len(index_mod._STATES.run(conn, {"ids": (ids * 12)[:n]}).fetchall()) == min(n, 6)
    assert len(index_mod._STATES._sql) <= 8  # 1, 2, 4 ... 128
    ended = index_mod._OnDriver(index_mod._END_PAIRINGS_OF)
    ended.run(conn, {"ids": [ids[1]], "same_ids": [ids[4], ids[0]]})
    live = conn.execute(text("SELECT file_id FROM decisions WHERE current = 1")).scalars()
    assert sorted(live) == []  # 1 as the copy; 4 and 0 as the originals of the rest
    assert index_mod._SAME_BYTES.run(conn, {"sha": "s1"}).fetchall() == [
        (ids[1], "active", ids[0]), (ids[3], "active", ids[4]), (ids[5], "active", ids[4])
    ]  # fmt: skip


def test_rows_written_and_read_on_the_driver_convert_as_sqlalchemy_does(sqlite_index):
    """The insert of a new file and of a decision, and Index.get, run on the driver:
    their datetimes are stored in SQLAlchemy's text format and read back as aware UTC
    datetimes, equal to what the ORM itself reads; a column not given takes its
    default; an insert missing a column it names is refused, not written as NULL."""
    from datetime import timezone

    from watcherd import index_sql as index_mod
    from watcherd.models import Decision

    index = sqlite_index  # the driver path is SQLite's (elsewhere: Core)
    a = index.upsert_file(None, path="/p/a.jpg", root="/p", size=1, mtime_ns=1)
    b = index.upsert_file(None, path="/p/b.jpg", root="/p", size=2, mtime_ns=2, sha256="x")
    decision_id = index.record_decision(b, a, "near", 3, "mirror")
    index.commit()
    stored = (
        index.session.connection()
        .exec_driver_sql("SELECT first_seen, indexed_at, status FROM files WHERE id = ?", (a.id,))
        .one()
    )
    assert stored[0] == a.first_seen.replace(tzinfo=None).isoformat(sep=" ")
    assert stored[2] == "active" and a.status == "active"
    index.session.expunge_all()
    got = index.get(b.id)
    assert got.first_seen.tzinfo is timezone.utc and got.sha256 == "x"
    assert got.duplicate_of_id == a.id
    orm = index.session.get(Decision, decision_id)
    assert (orm.kind, orm.distance, orm.transform, orm.current) == ("near", 3, "mirror", True)
    assert orm.decided_at.tzinfo is not None and orm.quarantined_path is None
    index.session.expunge_all()
    again = index.session.get(File, b.id)
    assert again.first_seen == got.first_seen and again.indexed_at == got.indexed_at
    with pytest.raises(KeyError, match="size"):
        index_mod._INSERT_FILE.run(index._core(), {"path": "/p/c.jpg", "root": "/p"})


def test_version_6_index_gains_a_change_log_from_its_generation_on(tmp_path):
    path = tmp_path / "i.sqlite3"
    with Index(path, writer=True) as idx:
        idx.upsert_file(None, path="/p/a.jpg", root="/p", size=1, mtime_ns=1, inode=1, phash=5)
        idx.commit()
    con = sqlite3.connect(path)  # back to version 6: the counter's triggers, no log
    con.execute("DROP TABLE changes")
    con.execute("DELETE FROM meta WHERE key = 'logged_from'")
    for name in ("files_ins", "files_del", "files_upd"):
        con.execute(f"DROP TRIGGER generation_{name}")
        con.execute(
            f"CREATE TRIGGER generation_{name} {db._GENERATION_TRIGGERS[name]} BEGIN "
            "UPDATE meta SET value = value + 1 WHERE key = 'generation'; END"
        )
    con.execute("UPDATE schema_version SET version = 6")
    con.commit()
    con.close()
    with Index(path, writer=True) as idx:
        start = idx.generation()
        assert idx.changed_since(start - 1) is None, "nothing was logged before it"
        assert idx.changed_since(start) == []
        b = idx.upsert_file(None, path="/p/b.jpg", root="/p", size=2, mtime_ns=1, inode=2)
        c = idx.upsert_file(None, path="/p/c.jpg", root="/p", size=3, mtime_ns=1, inode=3)
        idx.commit()
        a = idx.file_by_path("/p/a.jpg")
        idx.mark_missing_many([a.id])
        idx.drop_file(c)
        idx.commit()
        assert sorted(idx.changed_since(start)) == sorted([a.id, b.id, c.id])
        assert idx.changed_since(idx.generation()) == []
        idx.forget_changes(idx.generation() - 1)
        idx.commit()
        assert idx.changed_since(start) is None
        assert idx.changed_since(idx.generation() - 1) == [c.id], "its latest change is kept"
        assert db.schema_version(idx.session.connection()) == db.LATEST


def test_a_path_is_one_machines_and_each_recovers_only_its_own_moves(index_target, tmp_path):
    """Two machines on one index: the same path on each is two files; a scan on one
    never marks the other's files missing; a move one of them left unfinished (its
    owner's lock is on that machine) is never resolved by the other."""
    from helpers import photo, save

    from watcherd.actions import Mover
    from watcherd.config import Config, Root
    from watcherd.models import INTENT, Move
    from watcherd.scanner import scan

    lib = tmp_path / "lib"
    save(photo(31), lib / "a.jpg")
    cfg = Config(workers=1, roots=(Root(lib),))
    with Index(index_target, writer=True, machine="nas") as nas:
        scan([lib], cfg, nas)
        theirs = nas.file_by_path(str(lib / "a.jpg"))
        nas.session.add(Move(machine="nas", file_id=theirs.id, kind="quarantine",
                             src=theirs.path, dest="/q/a.jpg", sha256="x", size=1,
                             mtime_ns=1, state=INTENT, owner="1-gone"))  # fmt: skip
        nas.commit()
    (lib / "a.jpg").unlink()
    save(photo(32), lib / "b.jpg")
    with Index(index_target, writer=True, machine="laptop") as laptop:
        assert laptop.file_by_path(str(lib / "a.jpg")) is None  # the NAS's, not ours
        scan([lib], cfg, laptop)  # a.jpg is gone here: nothing of ours to mark missing
        assert Mover(laptop, cfg).recover() == []
        laptop.commit()
        assert [p for _, p in laptop.live_under(str(lib))] == [str(lib / "b.jpg")]
    with Index(index_target, machine="nas") as nas:
        f = nas.file_by_path(str(lib / "a.jpg"))
        assert f is not None and f.status == "active" and f.machine == "nas"
        assert nas.session.scalar(select(Move.state)) == INTENT
