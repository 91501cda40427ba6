"""File rows: found by id or path, created, renamed, followed into a moved folder,
marked missing; the stat facts a re-scan compares without reading a file."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session, make_transient_to_detached

from .index_sql import (
    _BY_ID,
    _END_PAIRINGS_OF,
    _FILE_DEFAULTS,
    _FILE_KEYS,
    _INSERT_FILE,
    _KNOWN,
    _SAME_BYTES,
    _SET_MISSING,
    _STATES,
    _UNPARTNER,
    KnownFile,
    _batches,
    _known,
    _new_file,
    _under,
)
from .models import (
    ACTIVE,
    ERROR,
    QUARANTINED,
    File,
    to_signed,
    utcnow,
)


class FileRows:
    """Part of `Index` (index.py), which owns the session they all use."""

    session: Session
    machine: str  # this machine's name: a path is one machine's

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
        return self.session.scalar(
            select(File).where(File.machine == self.machine, File.path == path)
        )

    def known_in_order(self, folder: str, page: int = 5000) -> Iterator[tuple[str, KnownFile]]:
        """(path, stat facts) of every indexed file at or below `folder`, in path order,
        a page at a time: a re-scan merges them with the tree as it walks it, and no
        statement stays open while it writes. Each page is one range of the path index
        (an OR, as in `_under`, would make SQLite sort every row below `folder` again
        for each page)."""
        mine = File.machine == self.machine
        exact = self.session.execute(_KNOWN.where(mine, File.path == folder)).all()
        yield from ((r.path, _known(r)) for r in exact)
        base = folder.rstrip("/")
        lower, upper = File.path >= base + "/", File.path < base + "0"
        while True:
            stmt = _KNOWN.where(mine, lower, upper).order_by(File.path).limit(page)
            rows = self.session.execute(stmt).all()
            yield from ((r.path, _known(r)) for r in rows)
            if len(rows) < page:
                return
            lower = File.path > rows[-1].path

    def known_by_path(self, paths: Iterable[str]) -> dict[str, KnownFile]:
        """Stat facts of the files among `paths` that have a row, keyed by path."""
        out = {}
        for chunk in _batches(paths):
            mine = File.machine == self.machine
            rows = self.session.execute(_KNOWN.where(mine, File.path.in_(chunk)))
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

    def upsert_file(self, existing: File | None, **values) -> File:
        """Create or overwrite a file row; the caller flushes/commits."""
        for key in ("phash", "dhash"):
            values[key] = to_signed(values.get(key))
        values["indexed_at"] = utcnow()
        if existing is None:
            # Inserted directly, then handed to the session as if just loaded: the
            # values given count as loaded (the pipeline gives every column), any other
            # column is read back when first used.
            values = {**_FILE_DEFAULTS, **values, "machine": self.machine}
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

    def move_folder(self, src: str, dest: str, root: str) -> int:
        """A folder renamed: every file row below it follows, keeping its history."""
        moved = 0
        mine = File.machine == self.machine
        for f in self.session.scalars(select(File).where(mine, _under(File.path, src))):
            self.take_path(f, dest + f.path[len(src) :])
            f.root = root
            moved += 1
        self.session.flush()
        return moved

    def held_by_another(self, beside: Path, f: File, name: str) -> bool:
        """Whether another file's row is at `name` beside `beside`: a name free on disk
        may be one whose file a restore has just moved out and not yet recorded; moved
        onto, that row would be dropped as replaced (take_path)."""
        other = self.file_by_path(str(beside.with_name(name)))
        return other is not None and other.id != f.id and other.status in (ACTIVE, QUARANTINED)

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
            File.machine == self.machine,
            _under(File.path, folder),
            File.status.in_((ACTIVE, ERROR)),
        )
        return [(fid, path) for fid, path in self.session.execute(stmt)]

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
