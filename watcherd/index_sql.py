"""The SQL the index runs: the statements of deciding a file, prepared once and run on
the database driver's cursor (`_OnDriver`), path-range filters, and lists of ids cut
into batches for `IN (...)`. Shared by the stores index.py is made of."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from operator import itemgetter
from typing import NamedTuple, TypeVar

from sqlalchemy import Connection, bindparam, delete, insert, or_, select, update
from sqlalchemy.orm.instrumentation import manager_of_class

from .models import (
    MISSING,
    Decision,
    File,
    RegionHash,
    Thumbnail,
)


@dataclass(frozen=True, slots=True)
class KnownFile:
    """The stat facts of an indexed file: enough to skip it without reading it."""

    id: int
    size: int
    mtime_ns: int
    inode: int | None
    status: str
    error: str | None


_new_file = manager_of_class(File).new_instance  # a File with no attribute set (see _adopt)
_KNOWN = select(File.path, File.id, File.size, File.mtime_ns, File.inode, File.status, File.error)


def _known(row) -> KnownFile:
    return KnownFile(row.id, row.size, row.mtime_ns, row.inode, row.status, row.error)


def _under(column, folder: str):
    """SQL filter: a path column equal to or below `folder` (LIKE-free, index friendly)."""
    prefix = folder.rstrip("/") + "/"
    # "0" is the character after "/": every path starting with prefix sorts below it.
    return or_(column == folder, (column >= prefix) & (column < folder.rstrip("/") + "0"))


T = TypeVar("T")
IN_BATCH = 500  # ids per `IN (...)` list: well below SQLite's limit on bound parameters


def _batches(items: Iterable[T]) -> Iterator[list[T]]:
    items = list(items)
    for i in range(0, len(items), IN_BATCH):
        yield items[i : i + IN_BATCH]


# The statements of deciding one new file, built once: the ORM's unit of work and
# statement building cost ~0.2-0.5 ms each, several times the statement's own time, and
# they ran some eight times per file, the main cost of a scan's main process. They run
# on the session's connection (see Index._core) with the ORM's objects kept in step by
# hand, each where it is used.
_F, _D = File.__table__, Decision.__table__
_R, _T = RegionHash.__table__, Thumbnail.__table__


class _Slot(NamedTuple):
    """Where a statement's positional value comes from: a parameter, or one item of a
    list parameter (an expanding IN)."""

    name: str
    item: int | None = None


class _OnDriver:
    """A statement run on the database driver's own cursor, within the session's
    transaction, for those that every new file runs. SQLAlchemy's execution (parameter
    processing, the result object) costs some 20-60 us a statement, ten times what
    SQLite takes for these.

    SQLAlchemy still writes the SQL, once per dialect and per length of each IN list,
    from the statement compiled with markers for values (`_Slot`), so that where each
    positional value comes from is its word, not a guess at its naming; and each value
    that needs converting (a datetime column) goes through the processor its column's
    type gives for the dialect, as SQLAlchemy's own execution would, and so does each
    value read (`first`). An INSERT names every column it writes (`columns`) and must
    be given them all: it would not fill in the columns' defaults. An IN list is padded
    to a power of two with its last item repeated, which changes no result: one SQL
    text per length up to IN_BATCH grew the cache by 10 MB over a 50,000-file scan,
    and SQLite's cache of prepared statements churned."""

    def __init__(self, stmt, columns: list[str] | None = None) -> None:
        self._stmt, self._columns = stmt, columns
        self._dialect: object = None
        self._sql: dict[tuple, tuple[str, Callable[[dict], tuple], tuple]] = {}
        self._read: tuple | None = None  # processors of the columns read, if any

    def _for(self, conn: Connection, params: dict) -> tuple[str, Callable[[dict], tuple], tuple]:
        dialect = conn.dialect
        if self._dialect is not dialect:
            self._dialect, self._sql = dialect, {}
            self._read = self._readers(dialect)
        key = tuple(len(v) for v in params.values() if isinstance(v, list))
        found = self._sql.get(key)
        if found is None:
            found = self._sql[key] = self._compile(dialect, params)
        return found

    def _compile(self, dialect, params: dict) -> tuple[str, Callable[[dict], tuple], tuple]:
        compiled = self._stmt.compile(dialect=dialect, column_keys=self._columns)
        slots = {
            name: [_Slot(name, i) for i in range(len(v))] if isinstance(v, list) else _Slot(name)
            for name, v in params.items()
        }
        state = compiled.construct_expanded_state(slots)
        sources = tuple(state.positional_parameters)
        procs = []
        for name, source in zip(state.positiontup, sources, strict=True):
            if self._columns is not None and not isinstance(source, _Slot):
                raise ValueError(f"{name}: an INSERT on the driver must be given every column")
            bind = compiled.binds[source.name if isinstance(source, _Slot) else name]
            procs.append(bind.type.dialect_impl(dialect).bind_processor(dialect))
        convert = tuple((i, f) for i, f in enumerate(procs) if f is not None)
        return state.statement, _fetcher(sources), convert

    def _readers(self, dialect) -> tuple | None:
        if not getattr(self._stmt, "is_select", False):
            return None
        procs = tuple(
            column.type.dialect_impl(dialect).result_processor(dialect, None)
            for column in self._stmt.selected_columns
        )
        return procs if any(procs) else None

    def run(self, conn: Connection, params: dict | list[dict]):
        """The driver's cursor after executing with `params` (a list of dicts: one row
        each; a list as a value: the items of an IN). Rows read from it are as the
        driver gives them: see `first` for a statement whose columns need converting."""
        if conn.dialect.name != "sqlite":
            return _CoreResult(conn, self._stmt, params)
        if isinstance(params, dict):
            params = {k: _padded(v) if isinstance(v, list) else v for k, v in params.items()}
        sql, fetch, convert = self._for(conn, params[0] if isinstance(params, list) else params)
        cursor = conn.connection.driver_connection.cursor()
        if isinstance(params, list):
            return cursor.executemany(sql, [_converted(fetch(p), convert) for p in params])
        return cursor.execute(sql, _converted(fetch(params), convert))

    def first(self, conn: Connection, params: dict) -> tuple | None:
        """The first row, each value converted as SQLAlchemy would."""
        found = self.run(conn, params)
        row = found.fetchone()
        if row is None or self._read is None or isinstance(found, _CoreResult):
            return row
        return tuple(v if f is None else f(v) for f, v in zip(self._read, row, strict=True))


class _CoreResult:
    """`_OnDriver.run` elsewhere than on SQLite (PostgreSQL): the statement through
    SQLAlchemy Core, whose execution costs little beside a server's round trip; an
    INSERT of one row gives its new id (RETURNING) as the driver's `lastrowid` would."""

    def __init__(self, conn: Connection, stmt, params: dict | list[dict]) -> None:
        self.lastrowid = None
        if getattr(stmt, "is_insert", False) and isinstance(params, dict) and "id" in stmt.table.c:
            self.lastrowid = conn.execute(stmt.returning(stmt.table.c.id), params).scalar_one()
            self._rows: Iterator = iter(())
        else:
            result = conn.execute(stmt, params)
            self._rows = iter(result if result.returns_rows else ())

    def fetchone(self):
        return next(self._rows, None)

    def fetchall(self) -> list:
        return list(self._rows)

    def __iter__(self):
        return self._rows


def _padded(items: list) -> list:
    """`items` (not empty) with its last item repeated up to a power of two."""
    size = 1 << (len(items) - 1).bit_length()
    return items + items[-1:] * (size - len(items))


def _fetcher(sources: tuple) -> Callable[[dict], tuple]:
    """What turns a statement's parameters into its positional values, in order. Most
    statements take plain named values only: one itemgetter then, a new file's insert
    being the statement run most (a generator over 16 slots cost it 4 us)."""
    if sources and all(isinstance(s, _Slot) and s.item is None for s in sources):
        get = itemgetter(*(s.name for s in sources))
        return (lambda params: (get(params),)) if len(sources) == 1 else get
    return lambda params: tuple(
        (params[s.name] if s.item is None else params[s.name][s.item])
        if isinstance(s, _Slot)
        else s  # a value the statement itself binds
        for s in sources
    )


def _converted(values: tuple, convert: tuple) -> tuple:
    """`values` with each (position, processor) of `convert` applied (None stays None)."""
    if not convert:
        return values
    out = list(values)
    for i, f in convert:
        if out[i] is not None:
            out[i] = f(out[i])
    return tuple(out)


_SAME_BYTES = _OnDriver(
    select(_F.c.id, _F.c.status, _F.c.duplicate_of_id)
    .where(_F.c.sha256 == bindparam("sha"))
    .order_by(_F.c.id)
)
_INSERT_FILE = _OnDriver(insert(_F), [c.key for c in _F.columns if c.key != "id"])
_FILE_KEYS = tuple(c.key for c in _F.columns)
# What an insert on the driver writes for a column not given: the column's own scalar
# default (callable ones, the timestamps, upsert_file sets itself), else NULL.
_FILE_DEFAULTS = {
    c.key: c.default.arg if c.default is not None and c.default.is_scalar else None
    for c in _F.columns
    if c.key != "id" and (c.nullable or c.default is not None)
}
_BY_ID = _OnDriver(select(*_F.columns).where(_F.c.id == bindparam("fid")))
_DELETE_REGIONS = delete(_R).where(_R.c.file_id == bindparam("fid"))
_INSERT_REGIONS = _OnDriver(insert(_R), ["file_id", "region", "phash", "dhash"])
_DELETE_THUMBNAIL = delete(_T).where(_T.c.file_id == bindparam("fid"))
_INSERT_THUMBNAIL = _OnDriver(insert(_T), ["file_id", "jpeg"])
_THUMBNAILS = _OnDriver(
    select(_T.c.file_id, _T.c.jpeg).where(_T.c.file_id.in_(bindparam("ids", expanding=True)))
)
_REGION_DHASHES = _OnDriver(
    select(_R.c.file_id, _R.c.region, _R.c.dhash).where(
        _R.c.file_id.in_(bindparam("ids", expanding=True))
    )
)
_STATES = _OnDriver(
    select(_F.c.id, _F.c.status, _F.c.duplicate_of_id).where(
        _F.c.id.in_(bindparam("ids", expanding=True))
    )
)
_LIVE_PAIRINGS = _OnDriver(
    select(_D.c.id).where(_D.c.file_id == bindparam("fid"), _D.c.current.is_(True))
)
_END_PAIRINGS = (
    update(_D).where(_D.c.id.in_(bindparam("ids", expanding=True))).values(current=False)
)
_SET_PARTNER = _OnDriver(
    update(_F).where(_F.c.id == bindparam("fid")).values(duplicate_of_id=bindparam("of"))
)
_INSERT_DECISION = _OnDriver(insert(_D), [c.key for c in _D.columns if c.key != "id"])
# Marking many files missing at once (a deleted folder): see mark_missing_many.
_END_PAIRINGS_OF = (
    update(_D)
    .where(
        or_(
            _D.c.file_id.in_(bindparam("ids", expanding=True)),
            _D.c.original_id.in_(bindparam("same_ids", expanding=True)),
        )
    )
    .values(current=False)
)
_UNPARTNER = (
    update(_F)
    .where(_F.c.duplicate_of_id.in_(bindparam("ids", expanding=True)))
    .values(duplicate_of_id=None)
)
_SET_MISSING = (
    update(_F)
    .where(_F.c.id.in_(bindparam("ids", expanding=True)))
    .values(status=MISSING, duplicate_of_id=None)
)
