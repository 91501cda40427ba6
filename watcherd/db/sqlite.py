"""SQLite, the default index: one file in the platformdirs data folder. Its connection
setup, its writer lock (BEGIN IMMEDIATE) and the triggers of its change log."""

from __future__ import annotations

import os
from pathlib import Path

from sqlalchemy import Connection, Engine, create_engine, event

from .. import private
from .errors import NotAnIndex

BUSY_TIMEOUT_MS = 30_000
_HEADER = b"SQLite format 3\x00"

GENERATION_TRIGGERS = {
    "files_ins": "AFTER INSERT ON files",
    "files_del": "AFTER DELETE ON files",
    "files_upd": "AFTER UPDATE OF phash, dhash, status ON files",
    "regions_ins": "AFTER INSERT ON region_hashes",
    "regions_del": "AFTER DELETE ON region_hashes",
}
# the id of the file each change to `files` touched (region changes come with one)
LOGGED = {"files_ins": "NEW.id", "files_del": "OLD.id", "files_upd": "NEW.id"}


def counting_triggers(conn: Connection) -> None:
    """Version 5: triggers that count every change (before the change log)."""
    for name, when in GENERATION_TRIGGERS.items():
        conn.exec_driver_sql(
            f"CREATE TRIGGER IF NOT EXISTS generation_{name} {when} BEGIN "
            "UPDATE meta SET value = value + 1 WHERE key = 'generation'; END"
        )


def change_log_triggers(conn: Connection) -> None:
    """Count every change, and log which file each change to `files` touched."""
    counting_triggers(conn)
    for name, file_id in LOGGED.items():
        conn.exec_driver_sql(f"DROP TRIGGER IF EXISTS generation_{name}")
        conn.exec_driver_sql(
            f"CREATE TRIGGER generation_{name} {GENERATION_TRIGGERS[name]} BEGIN "
            "UPDATE meta SET value = value + 1 WHERE key = 'generation'; "
            "INSERT INTO changes (file_id, generation) VALUES "
            f"({file_id}, (SELECT value FROM meta WHERE key = 'generation')) "
            "ON CONFLICT (file_id) DO UPDATE SET generation = excluded.generation; END"
        )


def is_damaged(exc: BaseException) -> bool:
    """Whether `exc` says the index file itself is unreadable (not merely busy)."""
    import sqlite3

    from sqlalchemy.exc import DatabaseError

    orig = getattr(exc, "orig", exc) if isinstance(exc, DatabaseError) else exc
    if not isinstance(orig, sqlite3.DatabaseError) or isinstance(orig, sqlite3.OperationalError):
        return False
    text = str(orig).lower()
    return any(s in text for s in ("not a database", "malformed", "encrypted"))


def _check_file(path: Path) -> None:
    """Refuse a file that is not a SQLite database, before SQLite is asked to open it
    (`--db notes.txt`): it is somebody's file, not a damaged index."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(len(_HEADER))
    except OSError:
        return  # missing or unreadable: SQLite's own error says which
    if head and head != _HEADER:
        raise NotAnIndex(f"{path} is not a watcherd index (not a SQLite database)")


def _pragmas(dbapi_conn, _record) -> None:
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


def file_url(target: str | Path) -> str:
    """The SQLite URL of an index path, its folder created (0700) and the file made
    0600 before SQLite makes it with the umask's mode."""
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
    return f"sqlite:///{path}"


def engine(url: str, writer: bool) -> Engine:
    """A writer's transaction takes SQLite's write lock when it begins (BEGIN
    IMMEDIATE): a deferred transaction that reads and then writes can fail with
    "database is locked" at once when another process wrote in between, while an
    immediate one waits its turn under the busy timeout."""
    made = create_engine(url, connect_args={"timeout": BUSY_TIMEOUT_MS / 1000})
    event.listen(made, "connect", _pragmas)
    begin = "BEGIN IMMEDIATE" if writer else "BEGIN"
    event.listen(made, "begin", lambda conn: conn.exec_driver_sql(begin))
    return made
