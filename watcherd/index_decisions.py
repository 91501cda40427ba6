"""Decisions: a file recorded as a copy of another (or a similar shot), the groups
they form and their kept files, what the report lists."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from sqlalchemy import func, or_, select, update
from sqlalchemy.orm import Session, aliased
from sqlalchemy.orm.attributes import set_committed_value

from .index_sql import (
    _END_PAIRINGS,
    _INSERT_DECISION,
    _LIVE_PAIRINGS,
    _SET_PARTNER,
    _under,
)
from .models import (
    ACTIVE,
    DONE,
    ERROR,
    MISSING,
    QUARANTINED,
    Decision,
    File,
    IgnoredPair,
    Move,
    utcnow,
)


class Decisions:
    """Part of `Index` (index.py), which owns the session they all use."""

    session: Session
    machine: str

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
            "decided_on": self.machine,
        }
        return _INSERT_DECISION.run(conn, row).lastrowid

    def decision(self, decision_id: int) -> Decision:
        decision = self.session.get(Decision, decision_id)
        assert decision is not None, decision_id  # recorded in this transaction
        return decision

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

    def files_per_machine(self) -> dict[str, int]:
        """How many files each machine has in the index (one, unless a server's)."""
        rows = self.session.execute(select(File.machine, func.count()).group_by(File.machine))
        return dict(sorted((machine, n) for machine, n in rows))

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
