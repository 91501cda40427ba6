"""Actions on duplicates: quarantine (a journalled move), restore, ignore.

The only module that moves a user's file, and it never deletes one: a quarantine is a
move into `quarantine_dir`, a restore a move back. Every move is journalled in the
index (`moves`): the intent is committed before the file is touched and marked done
after, so `recover` can finish or undo a move interrupted at any instant, and each
file is always in exactly one place the index knows.

Same filesystem: one atomic rename over a placeholder we created with O_EXCL (so a
name in the quarantine is never overwritten). Across filesystems: copy to a temporary
name beside the target, fsync, rename into place, verify the sha256 of what landed,
and only then unlink the source.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import logging
import os
from dataclasses import dataclass
from functools import partial
from pathlib import Path

from sqlalchemy import or_, select

from . import moving, owners, private, volumes
from .config import Config, Root
from .index import Index
from .models import (
    ACTIVE,
    DONE,
    INTENT,
    QUARANTINED,
    ROLLED_BACK,
    Decision,
    File,
    IgnoredPair,
    Move,
    utcnow,
)
from .moving import STEPS  # noqa: F401 (the crash tests' list of steps)

log = logging.getLogger("watcherd")


class ActionError(Exception):
    """A move that could not be made; nothing was lost, the message says why."""


def _inside(path: str, folder: str) -> bool:
    folder = folder.rstrip("/")
    return path == folder or path.startswith(folder + "/")


@dataclass(frozen=True)
class Outcome:
    moved: bool
    path: str  # where the file is now
    note: str = ""


class Mover:
    """Quarantine and restore for one index and configuration."""

    def __init__(self, index: Index, config: Config, extra_roots: list[Root] | None = None):
        self.index = index
        self.config = config
        self.roots = list(config.roots) + list(extra_roots or [])
        self.owners = owners.folder_for(index.target)

    # -- where files may go --------------------------------------------------------------

    def root_of(self, path: str) -> Root | None:
        best = None
        for root in self.roots:
            if _inside(path, str(root.path)) and (
                best is None or len(str(root.path)) > len(str(best.path))
            ):
                best = root
        return best

    def movable(self, f: File) -> str | None:
        """Why `f` must not be moved (None when it may be)."""
        if f.machine != self.index.machine:
            return f"on another machine ({f.machine}), which acts on it there"
        root = self.root_of(f.path)
        if root is None:
            return "outside the configured roots"
        if root.protect:
            return f"in a protected root ({root.path})"
        if not _inside(os.path.realpath(f.path), os.path.realpath(root.path)):
            return f"its real place is outside {root.path} (a symbolic link on the way)"
        if f.status != ACTIVE:
            return f"not active ({f.status})"
        if self.config.in_quarantine(f.path):
            return "already in the quarantine folder"
        return None

    def quarantine_place(self, f: File) -> volumes.Place:
        """The quarantine folder `f` goes to: its volume's own, or the home one."""
        if not self.config.per_volume:
            return volumes.Place(self.config.home_quarantine, False)
        return volumes.place_for(f.path, self.config.home_quarantine)

    def quarantine_target(self, f: File, place: volumes.Place | None = None) -> Path:
        root = self.root_of(f.path)
        base = str(root.path) if root else str(Path(f.path).parent)
        label = f"{Path(base).name or 'root'}-{hashlib.sha1(os.fsencode(base)).hexdigest()[:8]}"
        rel = os.path.relpath(f.path, base)
        return (place or self.quarantine_place(f)).folder / label / rel

    # -- quarantine ----------------------------------------------------------------------

    def quarantine(self, f: File, decision: Decision) -> Outcome:
        """Move a redundant copy into the quarantine; the decision records it."""
        why_not = self.movable(f)
        if why_not:
            return Outcome(False, f.path, f"not moved: {why_not}")
        try:
            st = os.stat(f.path)
        except OSError as exc:
            return Outcome(False, f.path, f"not moved: {exc.strerror}")
        if (st.st_size, st.st_mtime_ns) != (f.size, f.mtime_ns) or not f.sha256:
            return Outcome(False, f.path, "not moved: changed since it was read")
        root = self.root_of(f.path)
        place = self.quarantine_place(f)
        target = self.quarantine_target(f, place)
        where = (str(root.path), os.path.realpath(root.path)) if root else (None, None)
        move = self._move(f, decision, "quarantine", target, st, where, place)
        return Outcome(True, move.dest, place.note)

    def _move(
        self,
        f: File,
        decision: Decision | None,
        kind: str,
        target: Path,
        st,
        root: tuple[str | None, str | None],
        place: volumes.Place | None = None,
    ) -> Move:
        """Journal, move and record one file; on failure undo and raise ActionError.
        `root`: the root the file belongs to (quarantine) or came from (restore), as
        configured and as it really was, with no symbolic link in it; `place`: the
        quarantine folder it goes to (quarantine)."""
        folder = self._target_folder(kind, target, root, place)
        try:
            self._not_moving(f)
            held = partial(self.index.held_by_another, target, f)
            name = moving.free_name(folder, target.name, held)
            move = self._intent(f, decision, kind, f.path, target.with_name(name), st, root)
            try:
                self._execute(move, folder)
            except OSError as exc:
                if moving.landed(move.src, move.dest, move.size, move.sha256):
                    self._apply(move, f)
                    return move
                self._roll_back(move, f"{exc.strerror or exc}")
                raise ActionError(f"cannot {kind} {move.src}: {exc.strerror or exc}") from None
        finally:
            os.close(folder)
        self._apply(move, f)
        return move

    def _target_folder(
        self,
        kind: str,
        target: Path,
        root: tuple[str | None, str | None],
        place: volumes.Place | None = None,
    ) -> int:
        """A descriptor on the folder the file goes to. The quarantine is ours, made for
        the user alone (a volume's own opened with no symbolic link followed). A
        restore goes back under the root the file came from, each
        folder below the real root opened with no symbolic link followed (made again
        if it is gone): a root or folder replaced by a link since cannot send the file
        elsewhere."""
        try:
            if kind == "quarantine" and place is not None and place.volume:
                return volumes.open_folder(place, target.parent.relative_to(place.folder).parts)
            if kind == "quarantine":
                private.folder(target.parent)
                return os.open(target.parent, moving.FOLDER)
            configured, real = root
            if configured is None or not _inside(str(target), configured):
                raise ActionError(f"refusing to restore to {target}: no root it came from")
            real = real or os.path.realpath(configured)
            rel = Path(os.path.relpath(target.parent, configured)).parts
            return moving.open_folder(real, () if rel == (".",) else rel, create=True)
        except OSError as exc:
            if exc.errno in (errno.ELOOP, errno.ENOTDIR):
                raise ActionError(
                    f"refusing to {kind} to {target}: a folder on the way is a symbolic link"
                ) from None
            raise ActionError(f"cannot create {target.parent}: {exc.strerror or exc}") from None

    def _apply(self, move: Move, f: File | None) -> None:
        """Record in the index where a completed move put the file, and close the move."""
        if f is not None:
            # A daemon watching the folder a file is restored to may index it as new
            # before this process records the move (it sees the file arrive): that row is
            # this very file, and gives way to the row that has its history.
            self.index.take_path(f, move.dest)
            if move.kind == "quarantine":
                f.status = QUARANTINED
                if move.decision is not None:
                    move.decision.action = "quarantined"
                    move.decision.quarantined_path = move.dest
            else:
                f.status = ACTIVE
                self._not_duplicates(f, move.decision)
        self._finish(move)

    def _not_moving(self, f: File) -> None:
        """Refuse a file another move is under way for (two restores of one file at
        once, a restore beside the scan that quarantines it): read under the write lock,
        so the first intent committed wins and the second sees it."""
        busy = self.index.session.scalar(
            select(Move.id).where(Move.file_id == f.id, Move.state == INTENT).limit(1)
        )
        if busy is not None:
            raise ActionError(f"{f.path} is being moved by another watcherd process")

    def _intent(
        self, f: File, decision: Decision | None, kind: str, src, dest, st, root: tuple
    ) -> Move:
        move = Move(
            machine=self.index.machine,
            file_id=f.id,
            decision_id=decision.id if decision is not None else None,
            kind=kind,
            src=str(src),
            dest=str(dest),
            sha256=f.sha256,
            size=st.st_size,
            mtime_ns=st.st_mtime_ns,
            state=INTENT,
            owner=owners.claim(self.owners),
            root=root[0],
            root_real=root[1],
        )
        self.index.session.add(move)
        self.index.commit()  # the intent is on disk before the file is touched
        moving.step("intent")
        return move

    def _execute(self, move: Move, folder: int) -> None:
        """Move the file into `folder` (a descriptor: see _target_folder)."""

        def renamed(name: str) -> None:
            move.dest = os.path.join(os.path.dirname(move.dest), name)
            self.index.commit()

        name = moving.place(folder, move.dest, renamed)
        tmp = os.path.basename(self._tmp_name(move))
        moving.carry(move.src, folder, name, tmp, move.sha256, move.size, move.mtime_ns)

    @staticmethod
    def _tmp_name(move: Move) -> str:
        """A short temporary name beside the target: one built on the file's own name
        went over NAME_MAX (255 bytes) for names of 229 bytes or more."""
        return os.path.join(os.path.dirname(move.dest), f".watcherd-{move.id}.tmp")

    @staticmethod
    def _old_tmp_name(move: Move) -> str:
        """The temporary name before schema 8, for a move a crash left behind then."""
        d, name = os.path.split(move.dest)
        return os.path.join(d, f".{name}.watcherd-{move.id}.tmp")

    def _finish(self, move: Move) -> None:
        move.state = DONE
        move.finished_at = utcnow()
        self.index.commit()

    def _roll_back(self, move: Move, note: str) -> None:
        """Undo a move that did not complete. Our temporary copy goes; the target goes
        only when it is our empty placeholder or the source is certainly still whole
        beside it (its own bytes, the same content): otherwise it may be the only copy,
        and it stays where it is, said in the log."""
        with contextlib.suppress(OSError):
            os.unlink(self._tmp_name(move))
        if moving.removable(move.dest, move.src, move.size, move.sha256):
            with contextlib.suppress(OSError):
                os.unlink(move.dest)
        elif os.path.lexists(move.dest) and moving.complete(move.dest, move.size, move.sha256):
            note += f"; a copy stays at {move.dest}"
            log.error(
                "left the copy at %s: %s is not certainly intact",
                move.dest,
                move.src,
                extra={"event": "error", "path": move.src, "dest": move.dest},
            )
        move.state = ROLLED_BACK
        move.note = note
        move.finished_at = utcnow()
        self.index.commit()

    # -- restore and ignore --------------------------------------------------------------

    def restore(self, f: File) -> Outcome:
        """Move a quarantined file back where it came from (or beside it, if taken)."""
        if f.status != QUARANTINED:
            from .linking import separate

            return separate(self, f)  # a linked copy gets its own bytes back, or refused
        last = self.index.last_quarantine(f.id)
        if last is None:
            raise ActionError(f"no record of where {f.path} came from")
        root = restore_root(self, last.src, last.root)
        original = Path(last.src)
        try:
            st = os.stat(f.path)
        except OSError as exc:
            raise ActionError(f"{f.path} is not in the quarantine: {exc.strerror}") from None
        real = last.root_real if last.root == str(root.path) else None  # recorded at the move
        move = self._move(f, last.decision, "restore", original, st, (str(root.path), real))
        taken = move.dest != str(original)
        return Outcome(True, move.dest, f"{original} is taken: restored beside it" if taken else "")

    def _not_duplicates(self, f: File, decision: Decision | None) -> None:
        """A restored file is the user saying "keep this one": it is not a duplicate of
        its partner, nor of any other copy in that group (so restoring a whole group
        does not have its members quarantine each other)."""
        if decision is None:
            return
        decision.current = False
        for member in self.index.group_members(decision.original_id):
            if member != f.id:
                self.ignore(f, member)
        f.duplicate_of_id = None

    def ignore(self, f: File, other_id: int) -> None:
        """Remember that two files are not duplicates; any live pairing of them ends."""
        a, b = sorted((f.id, other_id))
        exists = self.index.session.scalar(
            select(IgnoredPair).where(IgnoredPair.file_a_id == a, IgnoredPair.file_b_id == b)
        )
        if exists is None:
            self.index.session.add(IgnoredPair(file_a_id=a, file_b_id=b))
        for d in self.index.session.scalars(
            select(Decision).where(
                Decision.current.is_(True),
                or_(
                    (Decision.file_id == a) & (Decision.original_id == b),
                    (Decision.file_id == b) & (Decision.original_id == a),
                ),
            )
        ):
            d.current = False
            redundant = self.index.get(d.file_id)
            if redundant is not None and redundant.duplicate_of_id == d.original_id:
                redundant.duplicate_of_id = None
        self.index.session.flush()

    # -- recovery ------------------------------------------------------------------------

    def recover(self) -> list[tuple[Move, str]]:
        """Finish or undo every move whose owner is gone (a crash): see recovery.py."""
        from .recovery import recover

        return recover(self)


def restore_root(mover: Mover, original: str, moved_from: str | None = None) -> Root:
    """The root a restore to `original` may write under: the root the file was
    moved out of (`moved_from`, from its journal row: a configured root or a folder
    named on the command line) or a configured root; no `..`, no symlinked folder
    leading out of the root (the move itself then opens every folder below the
    real root without following links). Raises ActionError otherwise."""
    p = Path(original)
    if not p.is_absolute() or ".." in p.parts:
        raise ActionError(f"refusing to restore to {original!r}: not a clean absolute path")
    root = Root(Path(moved_from)) if moved_from and _inside(original, moved_from) else None
    root = root or mover.root_of(original)
    if root is None:
        raise ActionError(f"refusing to restore to {original}: not under a configured root")
    real_root = os.path.realpath(root.path)
    # the nearest folder that exists must resolve inside the root
    parent = p.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not _inside(os.path.realpath(parent), real_root):
        raise ActionError(f"refusing to restore to {original}: {parent} leads outside {root.path}")
    if p.is_symlink():
        raise ActionError(f"refusing to restore over the symlink {original}")
    return root


def restore_paths(index: Index, mover: Mover, paths: list[str]) -> tuple[list[str], list[str]]:
    """Bring back each quarantined file (by its quarantine path), each committed on its
    own: (paths restored to, quarantine paths that could not be)."""
    restored, failed = [], []
    for path in paths:
        try:
            with index.unit():
                f = index.file_by_path(path)
                if f is None:
                    raise ActionError(f"{path} is no longer in the quarantine")
                out = mover.restore(f)
        except ActionError as exc:  # rolled back
            failed.append(path)
            log.warning("not restored: %s: %s", path, exc,
                        extra={"event": "error", "path": path, "reason": str(exc)})  # fmt: skip
            continue
        restored.append(out.path)
        log.info("restored %s", out.path,
                 extra={"event": "restored", "path": out.path, "quarantined": path})  # fmt: skip
    return restored, failed
