"""The index: queries and updates over files and decisions, backend-neutral SQLAlchemy.

One `Index` owns one Session and its transactions; the process that decides (scan,
daemon) is the single writer and commits in batches. Readers (report, status) open
their own Index. What it stores and asks is in one module per kind of thing:
index_files (file rows), index_fingerprints (region hashes, thumbnails),
index_decisions (copies, groups, the report's list), index_journal (the move
journal's queries), index_changes (the change log); index_sql holds the statements.
"""

from __future__ import annotations

import contextlib
import weakref
from collections.abc import Iterator
from pathlib import Path

from sqlalchemy import Connection, event
from sqlalchemy.orm import Session, configure_mappers

from . import db
from .index_changes import ChangeLog
from .index_decisions import Decisions
from .index_files import FileRows
from .index_fingerprints import Fingerprints
from .index_journal import Journal
from .index_location import this_machine
from .index_sql import KnownFile
from .models import (
    File,
)

__all__ = ["Index", "KnownFile"]


class Index(ChangeLog, FileRows, Fingerprints, Decisions, Journal):
    def __init__(self, target: str | Path, writer: bool = False, machine: str = "") -> None:
        configure_mappers()  # a bare File (see _adopt) may come before any query would
        self.target = target
        # whose files the paths asked about are, and whose moves are recovered here
        self.machine = machine or this_machine()
        self.Session = db.open_sessionmaker(target, writer, self.machine)
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

    @contextlib.contextmanager
    def unit(self) -> Iterator[Index]:
        """One unit of work: committed when the block ends, rolled back if it raises.
        The way commands, the daemon's event handling and recovery write; the other
        commits are the move journal's (its intent is on disk before a file is touched,
        actions.py) and a scan's batches (scanner.py: a commit every COMMIT_EVERY files,
        none at all in a dry run)."""
        try:
            yield self
        except BaseException:
            self.rollback()
            raise
        self.commit()

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
