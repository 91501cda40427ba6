"""The act stage: what is done to the redundant copy of a recorded decision, by the
action configured for its path (flag: nothing; quarantine: a journalled move; link: an
exact copy made a link of the kept file). The decision is recorded before this runs;
a move that cannot be made leaves the copy flagged, the reason in the verdict."""

from __future__ import annotations

from dataclasses import dataclass, replace

from . import linking
from .actions import ActionError, Mover
from .config import Config
from .index import Index
from .models import File


@dataclass(frozen=True, slots=True)
class Verdict:
    """A duplicate found: `redundant` is the copy to flag or move, `kept` the one to keep."""

    redundant_path: str
    kept_path: str
    kind: str  # exact | near
    distance: int
    transform: str | None
    size: int  # bytes the redundant copy takes
    action: str = "flagged"  # flagged | quarantined | would quarantine | linked | would link
    moved_to: str | None = None
    note: str = ""  # why a copy was not moved, when it was not
    move_failed: bool = False  # a move was tried and failed (not a rule that forbids it)


class Actor:
    """Carries out the configured action on each decided duplicate."""

    def __init__(self, index: Index, config: Config, mover: Mover, dry_run: bool = False):
        self.index = index
        self.config = config
        self.mover = mover
        self.dry_run = dry_run

    def act(self, verdict: Verdict, redundant: File, kept: File, decision_id: int) -> Verdict:
        """The verdict as acted on: flagged, quarantined, linked (or would be, in a dry
        run), or flagged with the reason a move failed."""
        action = self.config.action_for(redundant.path)
        if action == "link" and verdict.kind == "exact":
            return self._link(verdict, redundant, kept, decision_id)
        if action != "quarantine":
            return verdict
        why_not = self.mover.movable(redundant)
        if why_not:
            return replace(verdict, note=f"not moved: {why_not}")
        if self.dry_run:
            return replace(verdict, action="would quarantine")
        try:
            moved = self.mover.quarantine(redundant, self.index.decision(decision_id))
        except ActionError as exc:
            return replace(verdict, note=str(exc), move_failed=True)
        if not moved.moved:
            return replace(verdict, note=moved.note, move_failed=True)
        return replace(verdict, action="quarantined", moved_to=moved.path, note=moved.note)

    def _link(self, verdict: Verdict, redundant: File, kept: File, decision_id: int) -> Verdict:
        """An exact copy replaced by a link to the kept file, its path staying."""
        if self.dry_run:
            return replace(verdict, action="would link")
        try:
            done = linking.link(self.mover, redundant, kept, self.index.decision(decision_id))
        except ActionError as exc:
            return replace(verdict, note=str(exc), move_failed=True)
        return replace(verdict, action="linked" if done.moved else "flagged", note=done.note)
