"""Queries over the move journal (actions.py writes it): a move under way into a
path, where a quarantined file came from."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from .index_sql import (
    _batches,
)
from .models import (
    DONE,
    INTENT,
    Move,
    utcnow,
)


class Journal:
    """Part of `Index` (index.py), which owns the session they all use."""

    session: Session
    machine: str

    def move_under_way_to(self, path: str, within: float = 60.0) -> bool:
        """Whether a move into `path` was journalled in the last `within` seconds and has
        not finished: another process (`watcherd restore`) is putting a file there and has
        yet to record it. Older intents are left to crash recovery."""
        return path in self.moves_under_way_to(within)

    def moves_under_way_to(self, within: float = 60.0) -> set[str]:
        """Every path a move journalled in the last `within` seconds is putting a file
        into and has yet to record: few at any time (the state is indexed)."""
        since = utcnow() - timedelta(seconds=within)
        stmt = select(Move.dest).where(
            Move.state == INTENT, Move.machine == self.machine, Move.created_at >= since
        )
        return set(self.session.scalars(stmt))

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
