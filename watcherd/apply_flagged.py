"""`watcherd quarantine apply`: the duplicates flagged while `action = "flag"` are moved
as the daemon would have moved them.

A week of flagging, then `action = "quarantine"`: the scan and the daemon decide new
files only, so the duplicates already flagged stayed where they were. This moves each
current, flagged exact or near copy through the same journalled Mover as a decision
would (protected roots and everything outside the roots left alone), one commit each.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .actions import ActionError, Mover
from .config import Config
from .index import Index
from .models import ACTIVE


@dataclass(frozen=True)
class Applied:
    path: str  # the flagged copy
    moved_to: str | None  # where it went (None: not moved, or a dry run)
    note: str = ""  # why it was not moved
    failed: bool = False  # a move was tried and did not happen (not a rule that forbids it)


def apply_flagged(
    index: Index,
    config: Config,
    *,
    kind: str | None = None,
    root: Path | None = None,
    dry_run: bool = False,
) -> list[Applied]:
    """Move every flagged duplicate (of `kind`, under `root`) to the quarantine."""
    mover = Mover(index, config)
    rows = index.live_duplicates(kind=kind, action="flagged", root=str(root) if root else None)
    index.rollback()  # read; each move below journals itself
    out = []
    for decision, redundant, _ in reversed(rows):  # oldest first, as they were decided
        if decision.kind == "similar" or redundant.status != ACTIVE:
            continue
        why_not = mover.movable(redundant)
        if why_not is not None:
            out.append(Applied(redundant.path, None, f"not moved: {why_not}"))
            continue
        if dry_run:
            out.append(Applied(redundant.path, None, "would move"))
            continue
        path = redundant.path
        try:
            with index.unit():
                moved = mover.quarantine(redundant, decision)
        except ActionError as exc:  # rolled back
            out.append(Applied(path, None, str(exc), failed=True))
            continue
        out.append(Applied(path, moved.path if moved.moved else None, moved.note, not moved.moved))
    return out
