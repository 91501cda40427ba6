"""Engine setup and schema migrations: the only module that knows it talks to SQLite.

Everything else uses plain SQLAlchemy, so another backend (PostgreSQL for an index
shared by several machines) only needs a branch here.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from sqlalchemy import Connection, Engine, create_engine, event, inspect, select
from sqlalchemy.orm import Session, sessionmaker

from . import private
from .models import (
    Base,
    Decision,
    File,
    IgnoredPair,
    Move,
    RegionHash,
    SchemaVersion,
    Thumbnail,
    Video,
)

BUSY_TIMEOUT_MS = 30_000


# Migrations from version N-1 to N, in order. A fresh index is created from the models
# and stamped with the latest version; an older one is brought forward step by step,
# inside one transaction per step, so an interrupted upgrade leaves the old version.
def _v2_quarantine(conn: Connection) -> None:
    """Version 2: the move journal and ignored pairs (quarantine and restore)."""
    Base.metadata.create_all(conn, tables=[Move.__table__, IgnoredPair.__table__])


def _v3_regions(conn: Connection) -> None:
    """Version 3: region hashes for cropped copies. Images indexed before have none
    until they are read again; they still match by their whole-picture hashes."""
    Base.metadata.create_all(conn, tables=[RegionHash.__table__])


def _v4_thumbnails(conn: Connection) -> None:
    """Version 4: thumbnails and the date a photo was taken, for the HTML report.
    Files indexed before have neither until they are read again; the report makes
    their thumbnails from the files themselves."""
    # Version 1 creates `files` from today's model, which has the column already.
    if "taken_at" not in {c["name"] for c in inspect(conn).get_columns("files")}:
        conn.exec_driver_sql("ALTER TABLE files ADD COLUMN taken_at VARCHAR(19)")
    Base.metadata.create_all(conn, tables=[Thumbnail.__table__])


# The matcher's arrays are saved beside the index when the daemon stops and loaded at
# its next start instead of being rebuilt from millions of rows, but only if nothing
# they depend on changed meanwhile, whoever changed it (a scan, a restore, another
# version). These triggers count every such change in one row.
_GENERATION_TRIGGERS = {
    "files_ins": "AFTER INSERT ON files",
    "files_del": "AFTER DELETE ON files",
    "files_upd": "AFTER UPDATE OF phash, dhash, status ON files",
    "regions_ins": "AFTER INSERT ON region_hashes",
    "regions_del": "AFTER DELETE ON region_hashes",
}


def _generation(conn: Connection) -> None:
    """Version 5: a change counter for the saved matcher arrays."""
    conn.exec_driver_sql(
        "CREATE TABLE IF NOT EXISTS meta (key VARCHAR(32) PRIMARY KEY, value INTEGER NOT NULL)"
    )
    conn.exec_driver_sql("INSERT OR IGNORE INTO meta (key, value) VALUES ('generation', 0)")
    # commits by anything but the daemon (read until version 7, which logs what changed)
    conn.exec_driver_sql("INSERT OR IGNORE INTO meta (key, value) VALUES ('foreign', 0)")
    for name, when in _GENERATION_TRIGGERS.items():
        conn.exec_driver_sql(
            f"CREATE TRIGGER IF NOT EXISTS generation_{name} {when} BEGIN "
            "UPDATE meta SET value = value + 1 WHERE key = 'generation'; END"
        )


def _v6_original_index(conn: Connection) -> None:
    """Version 6: an index on decisions.original_id. Ending a file's pairings (it was
    deleted, changed or restored) looks for it on both sides of every decision; without
    this index each such file read the whole table: 21.8 ms at a million files with
    200,000 decisions, 1.9 ms with it."""
    conn.exec_driver_sql(
        "CREATE INDEX IF NOT EXISTS ix_decisions_original_id ON decisions (original_id)"
    )


# Which files each change touched, so that matcher arrays saved or held at an older
# generation catch up by re-reading those files alone (Pipeline.catch_up): one row per
# file, with the generation of its latest change. Changes to a file's regions need no
# row of their own: they are only ever written together with the file's row.
_LOGGED = {"files_ins": "NEW.id", "files_del": "OLD.id", "files_upd": "NEW.id"}


def _v7_changes(conn: Connection) -> None:
    """Version 7: the change log behind the generation counter. It starts empty, so it
    reaches back to the generation it was made at (`logged_from`)."""
    conn.exec_driver_sql(
        "CREATE TABLE IF NOT EXISTS changes "
        "(file_id INTEGER PRIMARY KEY, generation INTEGER NOT NULL)"
    )
    conn.exec_driver_sql(
        "INSERT OR IGNORE INTO meta (key, value) "
        "SELECT 'logged_from', value FROM meta WHERE key = 'generation'"
    )
    for name, file_id in _LOGGED.items():
        conn.exec_driver_sql(f"DROP TRIGGER IF EXISTS generation_{name}")
        conn.exec_driver_sql(
            f"CREATE TRIGGER generation_{name} {_GENERATION_TRIGGERS[name]} BEGIN "
            "UPDATE meta SET value = value + 1 WHERE key = 'generation'; "
            "INSERT INTO changes (file_id, generation) VALUES "
            f"({file_id}, (SELECT value FROM meta WHERE key = 'generation')) "
            "ON CONFLICT (file_id) DO UPDATE SET generation = excluded.generation; END"
        )


def _v8_move_owner(conn: Connection) -> None:
    """Version 8: each journalled move names the process that owns it (only that
    process acts on it while it lives) and the root its file was moved out of, as
    configured and as it really was (a restore opens no folder through a link)."""
    have = {c["name"] for c in inspect(conn).get_columns("moves")}
    for column in ("owner VARCHAR(64)", "root TEXT", "root_real TEXT"):
        if column.split()[0] not in have:
            conn.exec_driver_sql(f"ALTER TABLE moves ADD COLUMN {column}")


def _v9_videos(conn: Connection) -> None:
    """Version 9: sampled frames of videos, for near-duplicate videos. Videos indexed
    before are matched by their bytes only until they are read again (scan --rehash)."""
    Base.metadata.create_all(conn, tables=[Video.__table__])


def counter(conn: Connection, key: str) -> int:
    return int(conn.exec_driver_sql(f"SELECT value FROM meta WHERE key = '{key}'").scalar())


MIGRATIONS: dict[int, Callable[[Connection], None]] = {
    1: lambda conn: Base.metadata.create_all(
        conn, tables=[SchemaVersion.__table__, File.__table__, Decision.__table__]
    ),
    2: _v2_quarantine,
    3: _v3_regions,
    4: _v4_thumbnails,
    5: _generation,
    6: _v6_original_index,
    7: _v7_changes,
    8: _v8_move_owner,
    9: _v9_videos,
}
LATEST = max(MIGRATIONS)


def is_damaged(exc: BaseException) -> bool:
    """Whether `exc` says the index file itself is unreadable (not merely busy)."""
    import sqlite3

    from sqlalchemy.exc import DatabaseError

    orig = getattr(exc, "orig", exc) if isinstance(exc, DatabaseError) else exc
    if not isinstance(orig, sqlite3.DatabaseError) or isinstance(orig, sqlite3.OperationalError):
        return False
    text = str(orig).lower()
    return any(s in text for s in ("not a database", "malformed", "encrypted"))


class NotAnIndex(Exception):
    """`--db` names something that is not (and cannot become) a watcherd index: the
    message says what, in one line."""


_SQLITE_HEADER = b"SQLite format 3\x00"


def _check_file(path: Path) -> None:
    """Refuse a file that is not a SQLite database, before SQLite is asked to open it
    (`--db notes.txt`): it is somebody's file, not a damaged index."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(len(_SQLITE_HEADER))
    except OSError:
        return  # missing or unreadable: SQLite's own error says which
    if head and head != _SQLITE_HEADER:
        raise NotAnIndex(f"{path} is not a watcherd index (not a SQLite database)")


class SchemaTooNew(Exception):
    """The index was written by a newer watcherd; refusing protects the user's data."""


def _sqlite_pragmas(dbapi_conn, _record) -> None:
    # Let SQLAlchemy, not the sqlite3 module, decide where transactions begin: the module
    # would otherwise run DDL outside any transaction, so a failed migration could leave
    # half its changes behind.
    dbapi_conn.isolation_level = None
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.close()


def make_engine(target: str | Path, writer: bool = False) -> Engine:
    """An engine for a database URL or a SQLite file path (parent folders are created).

    A `writer` engine takes SQLite's write lock when its transaction begins (BEGIN
    IMMEDIATE): a deferred transaction that reads and then writes can fail with
    "database is locked" at once when another process wrote in between, while an
    immediate one waits its turn under the busy timeout.
    """
    url = str(target)
    if "://" not in url:
        path = Path(target).expanduser().absolute()
        if path.is_dir():
            raise NotAnIndex(f"{path} is a folder: --db names the index file")
        _check_file(path)
        try:
            private.folder(path.parent)
        except OSError as exc:
            raise NotAnIndex(
                f"cannot create {path.parent} for the index: {exc.strerror or exc}"
            ) from None
        # SQLite gives its -wal and -shm files the mode of the index: 0600, as it is
        if not path.exists():
            os.close(private.create(path, os.O_RDWR))
        private.tighten(path)
        url = f"sqlite:///{path}"
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"timeout": BUSY_TIMEOUT_MS / 1000})
        event.listen(engine, "connect", _sqlite_pragmas)
        begin = "BEGIN IMMEDIATE" if writer else "BEGIN"
        event.listen(engine, "begin", lambda conn: conn.exec_driver_sql(begin))
        return engine
    return create_engine(url)


def schema_version(conn: Connection) -> int:
    if not inspect(conn).has_table(SchemaVersion.__tablename__):
        return 0
    return conn.execute(select(SchemaVersion.version)).scalar() or 0


def migrate(engine: Engine) -> int:
    """Bring the schema to LATEST; returns the version found before migrating."""
    with engine.begin() as conn:
        found = schema_version(conn)
        if found > LATEST:
            raise SchemaTooNew(
                f"index schema version {found} is newer than this watcherd understands "
                f"({LATEST}); upgrade watcherd"
            )
        if found == 0 and not inspect(conn).has_table("files"):
            Base.metadata.create_all(conn)
            _generation(conn)
            _v7_changes(conn)
            conn.execute(SchemaVersion.__table__.insert().values(id=1, version=LATEST))
            return 0
    for version in range(found + 1, LATEST + 1):
        with engine.begin() as conn:
            MIGRATIONS[version](conn)
            conn.execute(SchemaVersion.__table__.delete())
            conn.execute(SchemaVersion.__table__.insert().values(id=1, version=version))
    return found


def open_sessionmaker(target: str | Path, writer: bool = False) -> sessionmaker[Session]:
    engine = make_engine(target, writer)
    with engine.connect() as conn:
        current = schema_version(conn) == LATEST
        tables = set(inspect(conn).get_table_names())
    if tables and "files" not in tables:  # another program's database: never added to
        engine.dispose()
        raise NotAnIndex(f"{target} is a SQLite database, but not a watcherd index")
    if not current:
        # Created or upgraded under the write lock (BEGIN IMMEDIATE), whoever asks:
        # two commands started at once on a new index would otherwise both find no
        # tables and both create them ("table already exists").
        upgrader = make_engine(target, writer=True) if not writer else engine
        migrate(upgrader)
        if upgrader is not engine:
            upgrader.dispose()
    return sessionmaker(engine, expire_on_commit=False)
