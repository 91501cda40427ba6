"""The index: queries and updates over files and decisions, backend-neutral SQLAlchemy.

One `Index` owns one Session; the process that decides (scan, daemon) is the single
writer and commits in batches. Readers (report, status) open their own Index.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from operator import itemgetter
from pathlib import Path
from typing import NamedTuple, TypeVar

from sqlalchemy import Connection, bindparam, delete, event, func, insert, or_, select, update
from sqlalchemy.orm import Session, aliased, configure_mappers, make_transient_to_detached
from sqlalchemy.orm.attributes import set_committed_value
from sqlalchemy.orm.instrumentation import manager_of_class

from . import db
from .models import (
    ACTIVE,
    DONE,
    ERROR,
    INTENT,
    MISSING,
    QUARANTINED,
    Decision,
    File,
    IgnoredPair,
    Move,
    RegionHash,
    Thumbnail,
    to_signed,
    to_unsigned,
    utcnow,
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
        if isinstance(params, dict):
            params = {k: _padded(v) if isinstance(v, list) else v for k, v in params.items()}
        sql, fetch, convert = self._for(conn, params[0] if isinstance(params, list) else params)
        cursor = conn.connection.driver_connection.cursor()
        if isinstance(params, list):
            return cursor.executemany(sql, [_converted(fetch(p), convert) for p in params])
        return cursor.execute(sql, _converted(fetch(params), convert))

    def first(self, conn: Connection, params: dict) -> tuple | None:
        """The first row, each value converted as SQLAlchemy would."""
        row = self.run(conn, params).fetchone()
        if row is None or self._read is None:
            return row
        return tuple(v if f is None else f(v) for f, v in zip(self._read, row, strict=True))


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


class Index:
    def __init__(self, target: str | Path, writer: bool = False) -> None:
        configure_mappers()  # a bare File (see _adopt) may come before any query would
        self.target = target
        self.Session = db.open_sessionmaker(target, writer)
        self.session: Session = self.Session()
        # Files inserted directly in this transaction (upsert_file): the ORM forgets the
        # objects of rows it inserted when their transaction rolls back, and so must we,
        # or a later row given the same id would clash with a stale object. Weakly, as
        # the ORM's own list: a dry-run scan's one transaction can insert 50,000 files.
        self._inserted: weakref.WeakSet[File] = weakref.WeakSet()
        event.listen(self.session, "after_commit", lambda _session: self._inserted.clear())
        event.listen(self.session, "after_soft_rollback", self._forget_inserted)
        # Transactions and the generation each began at (see follow_generation).
        self.transaction = 0
        self.begun_at: int | None = None
        self._open = False
        self._followers: list[weakref.WeakMethod] = []

    def close(self) -> None:
        self.session.close()
        self.session.get_bind().dispose()

    def __enter__(self) -> Index:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def commit(self) -> None:
        self.session.commit()

    def rollback(self) -> None:
        self.session.rollback()

    def _forget_inserted(self, session: Session, _previous) -> None:
        for f in list(self._inserted):
            if f in session:
                session.expunge(f)
        self._inserted.clear()

    def _core(self) -> Connection:
        """The session's connection, for statements that need none of the ORM's
        bookkeeping. Pending ORM changes are flushed first (a no-op when there are
        none), so that these statements see them as the ORM's own queries would."""
        self.session.flush()
        return self.session.connection()

    def generation(self) -> int:
        """A number that changes whenever a file's hashes, status or regions change."""
        return db.counter(self.session.connection(), "generation")

    def follow_generation(self, on_commit: Callable[[int, int], None]) -> None:
        """From now on, number each transaction (`transaction`) and read the generation
        it began at (`begun_at`), and call `on_commit(transaction, generation)` just
        before each commit. A writer's transaction holds SQLite's write lock from its
        first statement, so whatever changed between one commit and the next begin was
        written by somebody else (see Pipeline.catch_up). Held weakly: a matcher that is
        dropped stops being called. A transaction is begun now if none is, and counts
        as a new one (its generation at the start unknown)."""
        if not self._open:
            self.session.connection()
        self.transaction += 1
        self.begun_at, self._open = None, True
        if not self._followers:
            event.listen(self.session, "after_begin", self._began)
            event.listen(self.session, "before_commit", self._committing)
            event.listen(self.session, "after_commit", self._ended)
            event.listen(self.session, "after_rollback", self._ended)
        self._followers.append(weakref.WeakMethod(on_commit))

    def _began(self, _session: Session, _transaction, connection: Connection) -> None:
        self.transaction += 1
        self.begun_at = db.counter(connection, "generation")
        self._open = True

    def _ended(self, _session: Session) -> None:
        self._open = False

    def _committing(self, _session: Session) -> None:
        if not self._open:  # a commit with no statement run: nothing to read or say
            return
        generation = self.generation()
        for ref in self._followers:
            follower = ref()
            if follower is not None:
                follower(self.transaction, generation)

    def changed_since(self, generation: int) -> list[int] | None:
        """The ids of the files whose hashes, status or regions changed after
        `generation`, deleted ones included; None if the change log no longer reaches
        back that far (see forget_changes)."""
        conn = self.session.connection()
        if db.counter(conn, "logged_from") > generation:
            return None
        since = "SELECT file_id FROM changes WHERE generation > ?"
        return [fid for (fid,) in conn.exec_driver_sql(since, (generation,))]

    def forget_changes(self, upto: int) -> None:
        """Drop the log of changes up to generation `upto`: matcher arrays saved at it,
        or later, need none of them. Anything older that still wants to catch up is
        rebuilt from the rows instead."""
        conn = self.session.connection()
        conn.exec_driver_sql("DELETE FROM changes WHERE generation <= ?", (upto,))
        conn.exec_driver_sql(
            "UPDATE meta SET value = max(value, ?) WHERE key = 'logged_from'", (upto,)
        )

    # -- files ---------------------------------------------------------------------------

    def get(self, file_id: int) -> File | None:
        """The file's object: the session's own if it holds one, else its row read on
        the connection and handed to the session as loaded, as `upsert_file` does for
        rows it creates. The ORM's own load by id costs about three times as much, and
        a scan loads a partner for most decisions."""
        held = self.session.identity_map.get(Session.identity_key(File, file_id))
        if held is not None:
            return self.session.get(File, file_id)  # the ORM's rules for held objects
        row = _BY_ID.first(self._core(), {"fid": file_id})
        return None if row is None else self._adopt(**dict(zip(_FILE_KEYS, row, strict=True)))

    def _adopt(self, **values) -> File:
        """A File made from a row's values and handed to the session as if the ORM had
        loaded it: the values count as loaded, any column not given is read when first
        used. For rows read or written on the connection (see `_core`).

        The values go straight into the object's dict, as the ORM's own loading puts
        them, not through the constructor's instrumented attributes: a scan adopts two
        files per decision, and the constructor cost 40 us of the 55."""
        f = _new_file()
        f.__dict__.update(values)
        make_transient_to_detached(f)
        self.session.add(f)
        return f

    def file_by_path(self, path: str) -> File | None:
        return self.session.scalar(select(File).where(File.path == path))

    def known_in_order(self, folder: str, page: int = 5000) -> Iterator[tuple[str, KnownFile]]:
        """(path, stat facts) of every indexed file at or below `folder`, in path order,
        a page at a time: a re-scan merges them with the tree as it walks it, and no
        statement stays open while it writes. Each page is one range of the path index
        (an OR, as in `_under`, would make SQLite sort every row below `folder` again
        for each page)."""
        exact = self.session.execute(_KNOWN.where(File.path == folder)).all()
        yield from ((r.path, _known(r)) for r in exact)
        base = folder.rstrip("/")
        lower, upper = File.path >= base + "/", File.path < base + "0"
        while True:
            stmt = _KNOWN.where(lower, upper).order_by(File.path).limit(page)
            rows = self.session.execute(stmt).all()
            yield from ((r.path, _known(r)) for r in rows)
            if len(rows) < page:
                return
            lower = File.path > rows[-1].path

    def known_by_path(self, paths: Iterable[str]) -> dict[str, KnownFile]:
        """Stat facts of the files among `paths` that have a row, keyed by path."""
        out = {}
        for chunk in _batches(paths):
            rows = self.session.execute(_KNOWN.where(File.path.in_(chunk)))
            out.update({r.path: _known(r) for r in rows})
        return out

    def active_with_sha(
        self, sha256: str, exclude_id: int | None = None
    ) -> dict[int, tuple[str, int | None]]:
        """The active files with these bytes, oldest first, as `file_states` gives them:
        no objects are loaded (the pipeline loads only the partner it picks)."""
        # Filter on sha256 alone in SQL: given `status = 'active'` too, SQLite may pick the
        # status index (nearly every row) over the sha256 one and scan the whole table.
        rows = _SAME_BYTES.run(self._core(), {"sha": sha256})
        return {i: (st, of) for i, st, of in rows if st == ACTIVE and i != exclude_id}

    def hash_rows(self, ids: list[int] | None = None) -> Iterator[tuple[int, int, int]]:
        """(id, phash, dhash) of every active image (or of those among `ids`), streamed
        for building the HashIndex."""
        stmt = select(File.id, File.phash, File.dhash).where(
            File.status == ACTIVE, File.phash.is_not(None)
        )
        yield from self._rows_of(stmt, File.id, ids)

    def _rows_of(self, stmt, key, ids: list[int] | None) -> Iterator[tuple]:
        if ids is None:
            yield from self._plain_rows(stmt)
            return
        for chunk in _batches(sorted(ids)):  # in order across batches, as ordered within
            yield from self._plain_rows(stmt.where(key.in_(chunk)))

    def _plain_rows(self, stmt) -> Iterator[tuple]:
        """Rows as plain tuples straight from the database driver.

        Loading a million fingerprints through SQLAlchemy's Row objects takes seconds;
        the driver's own cursor takes a fraction of that. Still backend-neutral: the
        statement is compiled for whatever dialect the engine speaks.
        """
        conn = self.session.connection()
        sql = stmt.compile(dialect=conn.dialect, compile_kwargs={"literal_binds": True})
        cursor = conn.connection.driver_connection.cursor()
        try:
            cursor.execute(str(sql))
            while batch := cursor.fetchmany(10_000):
                yield from batch
        finally:
            cursor.close()

    def set_regions(self, file_id: int, regions, fresh: bool = False) -> None:
        """Replace a file's region hashes with (region, phash, dhash) rows (`fresh`: a
        row created just now, with nothing to replace)."""
        conn = self._core()  # no RegionHash objects are ever loaded: nothing to keep in step
        if not fresh:
            conn.execute(_DELETE_REGIONS, {"fid": file_id})
        if regions:
            _INSERT_REGIONS.run(
                conn,
                [
                    {"file_id": file_id, "region": r, "phash": to_signed(p), "dhash": to_signed(d)}
                    for r, p, d in regions
                ],
            )

    def set_thumbnail(self, file_id: int, jpeg: bytes | None, fresh: bool = False) -> None:
        conn = self._core()  # nor Thumbnail objects
        if not fresh:
            conn.execute(_DELETE_THUMBNAIL, {"fid": file_id})
        if jpeg:
            _INSERT_THUMBNAIL.run(conn, {"file_id": file_id, "jpeg": jpeg})

    def thumbnails(self, file_ids: Iterable[int]) -> dict[int, bytes]:
        """Stored thumbnails of these files (those that have one)."""
        out: dict[int, bytes] = {}
        conn = self._core()  # read on the driver: verification asks for them per newcomer
        for ids in _batches(file_ids):
            out.update({fid: jpeg for fid, jpeg in _THUMBNAILS.run(conn, {"ids": ids})})
        return out

    def regions_of(self, file_id: int) -> list[tuple[int, int, int]]:
        stmt = select(RegionHash.region, RegionHash.phash, RegionHash.dhash).where(
            RegionHash.file_id == file_id
        )
        return [tuple(r) for r in self.session.execute(stmt.order_by(RegionHash.region))]

    def region_dhashes(self, pairs: Iterable[tuple[int, int]]) -> dict[tuple[int, int], int]:
        """The dHash (unsigned) of each (file id, region) found, for the few regions whose
        pHash came close to a newcomer's: the matcher keeps only region pHashes in memory."""
        wanted = set(pairs)
        out: dict[tuple[int, int], int] = {}
        conn = self._core()
        for ids in _batches({fid for fid, _ in wanted}):
            for fid, region, dhash in _REGION_DHASHES.run(conn, {"ids": ids}):
                if (fid, region) in wanted:
                    out[fid, region] = to_unsigned(dhash)
        return out

    def region_rows(self, ids: list[int] | None = None) -> Iterator[tuple[int, int, int]]:
        """(file id, region, phash) of every active image (or of those among `ids`),
        ordered by file and region, for the region array."""
        stmt = (
            select(RegionHash.file_id, RegionHash.region, RegionHash.phash)
            .join(File, File.id == RegionHash.file_id)
            .where(File.status == ACTIVE)
            .order_by(RegionHash.file_id, RegionHash.region)
        )
        yield from self._rows_of(stmt, RegionHash.file_id, ids)

    def upsert_file(self, existing: File | None, **values) -> File:
        """Create or overwrite a file row; the caller flushes/commits."""
        for key in ("phash", "dhash"):
            values[key] = to_signed(values.get(key))
        values["indexed_at"] = utcnow()
        if existing is None:
            # Inserted directly, then handed to the session as if just loaded: the
            # values given count as loaded (the pipeline gives every column), any other
            # column is read back when first used.
            values = {**_FILE_DEFAULTS, **values}
            values.update(first_seen=values["indexed_at"], duplicate_of_id=None)
            new_id = _INSERT_FILE.run(self._core(), values).lastrowid
            f = self._adopt(id=new_id, **values)
            self._inserted.add(f)
            return f
        for key, value in values.items():
            setattr(existing, key, value)
        self.session.flush()
        return existing

    def move_file(self, f: File, new_path: str, root: str) -> None:
        """The same file under a new name: keep its fingerprints and its decisions."""
        self.take_path(f, new_path)
        f.root = root
        f.status = ACTIVE
        self.session.flush()

    def forget_decisions(self, f: File) -> None:
        """`f` no longer stands as it did (gone or changed): its pairings stop being live.

        Copies that were redundant because of `f` are no longer redundant: with `f` gone
        they may be the only copy left.
        """
        self.session.execute(
            update(Decision)
            .where(or_(Decision.file_id == f.id, Decision.original_id == f.id))
            .values(current=False)
        )
        self.session.execute(
            update(File).where(File.duplicate_of_id == f.id).values(duplicate_of_id=None)
        )
        f.duplicate_of_id = None
        self.session.flush()

    def move_folder(self, src: str, dest: str, root: str) -> int:
        """A folder renamed: every file row below it follows, keeping its history."""
        moved = 0
        for f in self.session.scalars(select(File).where(_under(File.path, src))):
            self.take_path(f, dest + f.path[len(src) :])
            f.root = root
            moved += 1
        self.session.flush()
        return moved

    def take_path(self, f: File, new_path: str) -> None:
        """Give `f` a new path; a row already there was renamed over, and is dropped."""
        clash = self.file_by_path(new_path)
        if clash is not None and clash.id != f.id:
            self.drop_file(clash)
        f.path = new_path

    def drop_file(self, f: File) -> None:
        """Forget a row whose file was replaced on disk (a rename over it)."""
        self.forget_decisions(f)
        self.session.delete(f)
        self.session.flush()

    def mark_missing(self, f: File) -> None:
        self.mark_missing_many([f.id])

    def mark_missing_many(self, file_ids: Iterable[int]) -> None:
        """Files no longer on disk, by id: each is marked missing, its pairings end on both
        sides, and copies kept because of it stop being redundant. Many at once, since a
        folder deleted or unmounted can hold a hundred thousand: one by one through the
        ORM, each update also checked every object in the session, and a folder's files
        were all loaded (45 s for 4,000 files, growing with the square). Here three
        statements per 500 files, then every loaded object is expired so that it reads
        its new state when next used. `mark_missing` is this for one file."""
        conn = self._core()
        for ids in _batches(file_ids):
            conn.execute(_END_PAIRINGS_OF, {"ids": ids, "same_ids": ids})
            conn.execute(_UNPARTNER, {"ids": ids})
            conn.execute(_SET_MISSING, {"ids": ids})
        self.session.expire_all()

    def live_under(self, folder: str) -> list[tuple[int, str]]:
        """(id, path) of the active and unreadable files at or below `folder`."""
        stmt = select(File.id, File.path).where(
            _under(File.path, folder), File.status.in_((ACTIVE, ERROR))
        )
        return [(fid, path) for fid, path in self.session.execute(stmt)]

    def record_similar(self, f: File, other: File, distance: int) -> Decision:
        """A 'similar' verdict: reported only, so neither file becomes redundant."""
        d = Decision(
            file_id=f.id,
            original_id=other.id,
            kind="similar",
            distance=distance,
            action="flagged",
            decided_at=utcnow(),
        )
        self.session.add(d)
        self.session.flush()
        return d

    def record_decision(
        self,
        redundant: File,
        kept: File,
        kind: str,
        distance: int,
        transform: str | None,
        action: str = "flagged",
        first: bool = False,
    ) -> int:
        """Record that `redundant` is a copy of `kept`; returns the decision's id (see
        `decision`: most decisions are only flagged and never need the object).
        `first`: `redundant` is a row created in this decision, so it has no pairings."""
        conn = self._core()
        # A file is redundant to one partner at a time: older live pairings of it end,
        # in the session too if it holds them.
        ended = [] if first else [i for (i,) in _LIVE_PAIRINGS.run(conn, {"fid": redundant.id})]
        if ended:
            conn.execute(_END_PAIRINGS, {"ids": ended})
            for decision_id in ended:
                loaded = self.session.identity_map.get(Session.identity_key(Decision, decision_id))
                if loaded is not None:
                    set_committed_value(loaded, "current", False)
        _SET_PARTNER.run(conn, {"fid": redundant.id, "of": kept.id})
        set_committed_value(redundant, "duplicate_of_id", kept.id)
        row = {
            "file_id": redundant.id,
            "original_id": kept.id,
            "kind": kind,
            "distance": distance,
            "transform": transform,
            "action": action,
            "decided_at": utcnow(),
            "quarantined_path": None,  # set by the mover if it moves the file
            "current": True,
        }
        return _INSERT_DECISION.run(conn, row).lastrowid

    def decision(self, decision_id: int) -> Decision:
        decision = self.session.get(Decision, decision_id)
        assert decision is not None, decision_id  # recorded in this transaction
        return decision

    def move_under_way_to(self, path: str, within: float = 60.0) -> bool:
        """Whether a move into `path` was journalled in the last `within` seconds and has
        not finished: another process (`watcherd restore`) is putting a file there and has
        yet to record it. Older intents are left to crash recovery."""
        since = utcnow() - timedelta(seconds=within)
        stmt = select(Move.id).where(
            Move.state == INTENT, Move.dest == path, Move.created_at >= since
        )
        return self.session.execute(stmt.limit(1)).first() is not None

    def last_quarantine(self, file_id: int) -> Move | None:
        """The completed move that put a file where it is in the quarantine."""
        return self.session.scalar(
            select(Move)
            .where(Move.file_id == file_id, Move.kind == "quarantine", Move.state == DONE)
            .order_by(Move.id.desc())
        )

    def quarantine_sources(self, file_ids: Iterable[int]) -> dict[int, str]:
        """Where each of these quarantined files was before its last move (one query per
        IN_BATCH files, for reports over thousands)."""
        out: dict[int, str] = {}
        for ids in _batches(file_ids):
            stmt = (
                select(Move.file_id, Move.src)
                .where(
                    Move.file_id.in_(ids),
                    Move.kind == "quarantine",
                    Move.state == DONE,
                )
                .order_by(Move.id)
            )
            out.update({fid: src for fid, src in self.session.execute(stmt)})  # last wins
        return out

    def group_roots(self, file_ids: Iterable[int]) -> dict[int, int]:
        """The kept file at the end of each file's duplicate_of chain, for many files at
        once: one query over the (few) rows that have a partner."""
        stmt = select(File.id, File.duplicate_of_id).where(File.duplicate_of_id.is_not(None))
        parent = {fid: of for fid, of in self.session.execute(stmt)}
        out = {}
        for fid in file_ids:
            seen, cur = {fid}, fid
            while cur in parent and parent[cur] not in seen:
                cur = parent[cur]
                seen.add(cur)
            out[fid] = cur
        return out

    def file_states(self, file_ids: Iterable[int]) -> dict[int, tuple[str, int | None]]:
        """(status, duplicate_of_id) of each of these files that has a row, without
        loading them: a newcomer among a photo's many variants matches a dozen indexed
        files, and only the one it is paired with is needed as an object (loading them
        all was a fifth of a scan's main-process time)."""
        out: dict[int, tuple[str, int | None]] = {}
        conn = self._core()
        for ids in _batches(file_ids):
            out.update({i: (st, of) for i, st, of in _STATES.run(conn, {"ids": ids})})
        return out

    def files_by_id(self, file_ids: Iterable[int]) -> dict[int, File]:
        out: dict[int, File] = {}
        for ids in _batches(file_ids):
            rows = self.session.scalars(select(File).where(File.id.in_(ids)))
            out.update({f.id: f for f in rows})
        return out

    def ignored_partners(self, file_id: int) -> set[int]:
        """Files the user said are not duplicates of `file_id`."""
        rows = self.session.execute(
            select(IgnoredPair.file_a_id, IgnoredPair.file_b_id).where(
                or_(IgnoredPair.file_a_id == file_id, IgnoredPair.file_b_id == file_id)
            )
        )
        return {b if a == file_id else a for a, b in rows}

    def group_members(self, file_id: int) -> set[int]:
        """Every file in the duplicate group `file_id` belongs to (kept file and copies)."""
        start = self.get(file_id)
        if start is None:
            return set()
        root = self.group_root(start).id
        members, frontier = {root}, [root]
        while frontier:
            children = self.session.scalars(
                select(File.id).where(File.duplicate_of_id.in_(frontier))
            ).all()
            frontier = [c for c in children if c not in members]
            members.update(frontier)
        return members

    def group_root(self, f: File) -> File:
        """The kept file at the end of `f`'s duplicate_of chain."""
        seen = {f.id}
        while f.duplicate_of_id is not None and f.duplicate_of_id not in seen:
            nxt = self.get(f.duplicate_of_id)
            if nxt is None:
                break
            seen.add(nxt.id)
            f = nxt
        return f

    # -- reading -------------------------------------------------------------------------

    def live_duplicates(
        self,
        since: datetime | None = None,
        root: str | None = None,
        kind: str | None = None,
        action: str | None = None,
        limit: int | None = None,
    ) -> list[tuple[Decision, File, File]]:
        """Current decisions whose redundant copy still exists, newest first."""
        redundant, original = aliased(File), aliased(File)
        stmt = (
            select(Decision, redundant, original)
            .join(redundant, Decision.file_id == redundant.id)
            .join(original, Decision.original_id == original.id)
            .where(Decision.current.is_(True), redundant.status.in_((ACTIVE, QUARANTINED)))
        )
        if since is not None:
            stmt = stmt.where(Decision.decided_at >= since)
        if root is not None:
            came_from = (
                select(Move.id)
                .where(
                    Move.file_id == redundant.id,
                    Move.kind == "quarantine",
                    Move.state == DONE,
                    _under(Move.src, root),
                )
                .exists()
            )  # a quarantined copy counts where it was found
            stmt = stmt.where(
                or_(_under(redundant.path, root), _under(original.path, root), came_from)
            )
        if kind is not None:
            stmt = stmt.where(Decision.kind == kind)
        if action is not None:
            stmt = stmt.where(Decision.action == action)
        stmt = stmt.order_by(Decision.decided_at.desc(), Decision.id.desc())
        if limit is not None:
            stmt = stmt.limit(limit)
        return [tuple(row) for row in self.session.execute(stmt)]

    def counts(self) -> dict[str, int]:
        rows = self.session.execute(select(File.status, func.count()).group_by(File.status))
        by_status = {status: n for status, n in rows}
        return {
            "files": sum(by_status.values()),
            "active": by_status.get(ACTIVE, 0),
            "quarantined": by_status.get(QUARANTINED, 0),
            "missing": by_status.get(MISSING, 0),
            "errors": by_status.get(ERROR, 0),
        }
