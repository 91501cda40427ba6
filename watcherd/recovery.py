"""Crash recovery of the move journal: a move whose owner is gone is finished or undone.

A move whose owner still lives is its owner's alone, whatever state its files are in
(see owners.py). Recovery runs in a writer's transaction: it holds the index's write
lock from its first statement, so an owner found gone cannot commit anything after the
look. Looking at both places: a complete, verified copy at the target finishes the
move; otherwise our partial copy goes (only when the original is whole: see
Mover._roll_back), the original stays, and a quarantine whose decision still stands is
carried out again.
"""

from __future__ import annotations

import contextlib
import logging
import os

from sqlalchemy import select

from . import linking, moving, owners
from .actions import ActionError, Mover
from .models import ACTIVE, INTENT, MISSING, Move

log = logging.getLogger("watcherd")


def recover(mover: Mover) -> list[tuple[Move, str]]:
    """Finish or undo every move whose owner is gone (a crash); returns what was done.

    A move whose owner still lives is its owner's alone, whatever state its files
    are in. Run in a writer's transaction: it holds the index's write lock from its
    first statement, so an owner found gone cannot commit anything after the look."""
    results = []
    mine = Move.machine == mover.index.machine  # another machine's moves are its own
    pending = mover.index.session.scalars(select(Move).where(Move.state == INTENT, mine))
    for move in list(pending):
        if owners.alive(mover.owners, move.owner):
            continue
        if move.kind in (linking.LINK, linking.SEPARATE):
            outcome = linking.recover(mover, move)
        else:
            outcome = _recover_one(mover, move)
        owners.forget(mover.owners, move.owner)
        if outcome == "undone" and move.kind == "quarantine":
            outcome = _retry(mover, move)
        elif outcome == "undone" and move.kind == linking.LINK:
            outcome = linking.retry(mover, move)
        results.append((move, outcome))
    return results


def _retry(mover: Mover, move: Move) -> str:
    """An undone quarantine whose decision still stands is carried out again."""
    f, d = mover.index.get(move.file_id), move.decision
    if f is None or d is None or not d.current or f.status != ACTIVE:
        return "undone"
    try:
        done = mover.quarantine(f, d)
    except ActionError as exc:
        log.error("cannot quarantine %s: %s", f.path, exc, extra={"event": "error"})
        return "undone"
    if done.moved:
        log.info(
            "quarantined %s again after recovery: %s",
            move.src,
            done.path,
            extra={"event": "quarantined", "path": move.src, "moved_to": done.path},
        )
        return "undone, then moved again"
    return "undone"


def _recover_one(mover: Mover, move: Move) -> str:
    f = mover.index.get(move.file_id)
    for tmp in (mover._tmp_name(move), mover._old_tmp_name(move)):
        with contextlib.suppress(OSError):
            os.unlink(tmp)
    src_same = moving.same_file(move.src, move.size, move.mtime_ns)
    dest_done = moving.complete(move.dest, move.size, move.sha256)
    if dest_done and os.path.lexists(move.src) and not src_same:
        # the source was changed by someone after the intent: keep theirs, drop ours
        dest_done = False
    if dest_done:
        if os.path.lexists(move.src):
            os.unlink(move.src)  # identical copy verified at dest
            moving.fsync_dir(os.path.dirname(move.src))
        mover._apply(move, f)
        what = "finished"
    elif os.path.lexists(move.src):
        mover._roll_back(move, "interrupted; undone at recovery")
        what = "undone"
    else:  # neither place has it: gone before the move began (deleted by the user)
        if f is not None:
            f.status = MISSING
        mover._roll_back(move, "file gone before the move")
        what = "file gone"
    log.warning(
        "recovered an interrupted %s of %s: %s",
        move.kind,
        move.src,
        what,
        extra={"event": "recovered", "path": move.src, "dest": move.dest, "outcome": what},
    )
    return what
