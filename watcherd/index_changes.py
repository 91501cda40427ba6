"""The change log: a generation number that moves whenever a file's hashes, status or
regions change, and the ids changed since any generation, so that matcher arrays
saved (or held by another process) can catch up instead of being rebuilt."""

from __future__ import annotations

import weakref
from collections.abc import Callable

from sqlalchemy import Connection, event, text
from sqlalchemy.orm import Session

from . import db

_SINCE = text("SELECT file_id FROM changes WHERE generation > :g")
_FORGET = text("DELETE FROM changes WHERE generation <= :g")
_LOGGED_FROM = text(
    "UPDATE meta SET value = CASE WHEN value > :g THEN value ELSE :g END WHERE key = 'logged_from'"
)


class ChangeLog:
    """Part of `Index` (index.py), which owns the session they all use."""

    session: Session

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
        return [fid for (fid,) in conn.execute(_SINCE, {"g": generation})]

    def forget_changes(self, upto: int) -> None:
        """Drop the log of changes up to generation `upto`: matcher arrays saved at it,
        or later, need none of them. Anything older that still wants to catch up is
        rebuilt from the rows instead."""
        conn = self.session.connection()
        conn.execute(_FORGET, {"g": upto})
        conn.execute(_LOGGED_FROM, {"g": upto})
