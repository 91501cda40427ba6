"""The index's database: SQLite (a file, the default) or PostgreSQL (a server several
machines share). What differs between them lives in `sqlite.py` and `postgresql.py`;
the schema's versions in `migrations.py`. Everything else uses plain SQLAlchemy."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import Engine, inspect
from sqlalchemy.orm import Session, sessionmaker

from ..index_location import is_server
from . import postgresql, sqlite
from .errors import NotAnIndex, SchemaTooNew
from .migrations import (
    _GENERATION_TRIGGERS,
    LATEST,
    MIGRATIONS,
    backend,
    counter,
    migrate,
    schema_version,
)
from .sqlite import BUSY_TIMEOUT_MS, is_damaged

__all__ = [
    "BUSY_TIMEOUT_MS",
    "LATEST",
    "MIGRATIONS",
    "_GENERATION_TRIGGERS",
    "NotAnIndex",
    "SchemaTooNew",
    "backend",
    "conflict",
    "counter",
    "is_damaged",
    "make_engine",
    "migrate",
    "open_sessionmaker",
    "schema_version",
    "unreachable",
]  # fmt: skip


def _server_error(exc: BaseException) -> str | None:
    """The SQLSTATE of a database server's operational error ("" when it has none: the
    connection never got that far), None for anything else (SQLite's included)."""
    from sqlalchemy.exc import OperationalError

    orig = getattr(exc, "orig", None)
    if not isinstance(exc, OperationalError) or not type(orig).__module__.startswith("psycopg"):
        return None
    return getattr(orig, "sqlstate", None) or ""


def unreachable(exc: BaseException) -> bool:
    """Whether `exc` says a database server could not be reached or was lost (down,
    refused, restarting, a wrong socket or host): worth saying in one line, and trying
    again later."""
    state = _server_error(exc)
    return state is not None and (state == "" or state[:2] == "08" or state[:3] == "57P")


def conflict(exc: BaseException) -> bool:
    """Whether `exc` is a transaction the server gave up on in favour of another
    (serialization failure, deadlock): tried again at once, not an index in trouble."""
    return _server_error(exc) in ("40001", "40P01")


def make_engine(target: str | Path, writer: bool = False) -> Engine:
    """An engine for a database URL or a SQLite file path (parent folders are created);
    a `writer`'s transactions take the backend's write lock as they begin."""
    url = str(target) if is_server(str(target)) else sqlite.file_url(target)
    if url.startswith("sqlite"):
        return sqlite.engine(url, writer)
    if url.startswith("postgresql"):
        return postgresql.engine(url, writer)
    raise NotAnIndex(f"{url.split('://')[0]}: not a database watcherd can use")


def open_sessionmaker(
    target: str | Path, writer: bool = False, machine: str = ""
) -> sessionmaker[Session]:
    engine = make_engine(target, writer)
    with engine.connect() as conn:
        current = schema_version(conn) == LATEST
        tables = set(inspect(conn).get_table_names())
    if tables and "files" not in tables:  # another program's database: never added to
        engine.dispose()
        raise NotAnIndex(f"{target} is a database, but not a watcherd index")
    if not current:
        # Created or upgraded under the write lock, whoever asks: two commands started
        # at once on a new index would otherwise both find no tables and both create
        # them ("table already exists").
        upgrader = make_engine(target, writer=True) if not writer else engine
        migrate(upgrader, machine)
        if upgrader is not engine:
            upgrader.dispose()
    return sessionmaker(engine, expire_on_commit=False)
