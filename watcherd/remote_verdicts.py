"""Verdicts another machine reached about this machine's files (an index shared on a
PostgreSQL server): a newcomer on the laptop found to be a better copy of a photo on
the NAS leaves the NAS's copy flagged, because no machine acts on another's disk. The
NAS's daemon looks for such verdicts (at start, then every `poll_interval`) and applies
its own configured action to them, as if it had decided them itself: quarantine, or a
link for an exact copy. Each verdict is looked at once per daemon; one that cannot be
acted on stays flagged, the reason logged.
"""

from __future__ import annotations

import logging

from sqlalchemy import select
from sqlalchemy.orm import aliased

from . import linking
from .actions import ActionError, Mover
from .config import Config
from .index import Index
from .models import ACTIVE, Decision, File

log = logging.getLogger("watcherd")


class RemoteVerdicts:
    """Applies, on this machine, what others decided about its files."""

    def __init__(self, index: Index, shared: bool, active: bool = True) -> None:
        """`shared`: the index is a server's, which other machines write to, so it is
        looked at again every `poll_interval`; a file's index is looked at once, at
        start. Not `active` (a dry run): never."""
        self.index = index
        self.seen = 0  # decisions up to this id have been looked at
        self.shared = shared
        self.next_at: float | None = 0.0 if active else None  # None: no look to come

    def look(self, config: Config, mover: Mover, now: float) -> None:
        """Apply the pending verdicts if a look is due (see `next_at`)."""
        if self.next_at is None or now < self.next_at:
            return
        self.next_at = now + config.poll_interval if self.shared else None
        self.apply(config, mover)

    def pending(self) -> list[tuple[Decision, File, File]]:
        """Current, flagged copies of this machine's files that another machine decided,
        newer than the last look (one range of the decisions' primary key)."""
        redundant, kept = aliased(File), aliased(File)
        stmt = (
            select(Decision, redundant, kept)
            .join(redundant, Decision.file_id == redundant.id)
            .join(kept, Decision.original_id == kept.id)
            .where(
                Decision.id > self.seen,
                Decision.current.is_(True),
                Decision.action == "flagged",
                Decision.kind.in_(("exact", "near")),
                Decision.decided_on != self.index.machine,
                redundant.machine == self.index.machine,
                redundant.status == ACTIVE,
            )
            .order_by(Decision.id)
        )
        return [tuple(row) for row in self.index.session.execute(stmt)]

    def apply(self, config: Config, mover: Mover) -> int:
        """Act on the pending verdicts with this machine's configuration (as it is now,
        after a reload); returns how many copies were moved or linked."""
        done = 0
        for decision, redundant, kept in self.pending():
            self.seen = max(self.seen, decision.id)
            path = redundant.path  # where it is now: a move gives the row its new path
            action = config.action_for(path)
            try:
                with self.index.unit():
                    if action == "link" and decision.kind == "exact":
                        out = linking.link(mover, redundant, kept, decision)
                    elif action == "quarantine":
                        out = mover.quarantine(redundant, decision)
                    else:
                        continue
            except ActionError as exc:  # rolled back
                log.warning("not acted on: %s: %s", path, exc,
                            extra={"event": "error", "path": path})  # fmt: skip
                continue
            if out.moved:
                done += 1
                event = "linked" if action == "link" else "quarantined"
                log.info(
                    "%s %s, found by %s to be a copy of %s",
                    event, path, decision.decided_on, kept.path,
                    extra={"event": event, "path": path, "moved_to": out.path,
                           "decided_on": decision.decided_on, "kept": kept.path},
                )  # fmt: skip
        self.index.commit()  # the look itself: never hold the write lock while idle
        return done
