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
import shutil
import signal
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import or_, select

from . import owners, private
from .config import Config, Root
from .index import Index
from .models import (
    ACTIVE,
    DONE,
    INTENT,
    MISSING,
    QUARANTINED,
    ROLLED_BACK,
    Decision,
    File,
    IgnoredPair,
    Move,
    utcnow,
)

log = logging.getLogger("watcherd")

CHUNK = 1024 * 1024
# Fault injection for the crash tests: WATCHERD_CRASH_AT=<step> kills this process
# with SIGKILL when a move reaches that step, exactly as a power cut or the OOM killer
# would; WATCHERD_PAUSE_AT=<step> stops it there (SIGSTOP) until the test lets it go
# on (SIGCONT), so that other commands can be run at that very instant. Unset in
# normal use.
STEPS = ("intent", "placeholder", "copied", "renamed", "verified", "unlinked")


class ActionError(Exception):
    """A move that could not be made; nothing was lost, the message says why."""


def _step(name: str) -> None:
    if os.environ.get("WATCHERD_CRASH_AT") == name:
        os.kill(os.getpid(), signal.SIGKILL)
    if os.environ.get("WATCHERD_PAUSE_AT") == name:
        os.kill(os.getpid(), signal.SIGSTOP)
    hook = _fault_hook
    if hook is not None:
        hook(name)


_fault_hook = None  # tests set a callable(step) that raises, to fail between steps


def sha256_of(path: str | os.PathLike[str]) -> str:
    with open(path, "rb") as fh:
        return _sha256_of_file(fh)


def _sha256_of_file(fh) -> str:
    digest = hashlib.sha256()
    while chunk := fh.read(CHUNK):
        digest.update(chunk)
    return digest.hexdigest()


def _fsync_dir(path: str | os.PathLike[str]) -> None:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        return
    try:
        with contextlib.suppress(OSError):
            os.fsync(fd)
    finally:
        os.close(fd)


def _inside(path: str, folder: str) -> bool:
    folder = folder.rstrip("/")
    return path == folder or path.startswith(folder + "/")


def _exists_at(folder: int, name: str) -> bool:
    try:
        os.stat(name, dir_fd=folder, follow_symlinks=False)
    except FileNotFoundError:
        return False
    return True


def _free_name(folder: int, name: str) -> str:
    """`name`, or `name (2).ext`, `name (3).ext`, ... : the first not taken in `folder`."""
    if not _exists_at(folder, name):
        return name
    p = Path(name)
    n = 2
    while _exists_at(folder, f"{p.stem} ({n}){p.suffix}"):
        n += 1
    return f"{p.stem} ({n}){p.suffix}"


_FOLDER = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW


def _open_folder(top: str, parts: tuple[str, ...], create: bool) -> int:
    """A descriptor on `top`/`parts`..., each folder opened relative to the one before
    it and none of them through a symbolic link (missing ones are made, if `create`):
    a folder replaced by a link, however late, leads nowhere but to an error."""
    fd = os.open(top, _FOLDER)
    try:
        for part in parts:
            if part in ("", ".", ".."):
                raise OSError(errno.EINVAL, f"not a plain folder name: {part!r}")
            try:
                nxt = os.open(part, _FOLDER, dir_fd=fd)
            except FileNotFoundError:
                if not create:
                    raise
                with contextlib.suppress(FileExistsError):
                    os.mkdir(part, dir_fd=fd)
                nxt = os.open(part, _FOLDER, dir_fd=fd)
            os.close(fd)
            fd = nxt
    except BaseException:
        os.close(fd)
        raise
    return fd


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
        root = self.root_of(f.path)
        if root is None:
            return "outside the configured roots"
        if root.protect:
            return f"in a protected root ({root.path})"
        if not _inside(os.path.realpath(f.path), os.path.realpath(root.path)):
            return f"its real place is outside {root.path} (a symbolic link on the way)"
        if f.status != ACTIVE:
            return f"not active ({f.status})"
        if _inside(f.path, str(self.config.quarantine_dir)):
            return "already in the quarantine folder"
        return None

    def quarantine_target(self, f: File) -> Path:
        root = self.root_of(f.path)
        base = str(root.path) if root else str(Path(f.path).parent)
        label = f"{Path(base).name or 'root'}-{hashlib.sha1(os.fsencode(base)).hexdigest()[:8]}"
        rel = os.path.relpath(f.path, base)
        return Path(self.config.quarantine_dir) / label / rel

    def safe_restore_target(self, original: str, moved_from: str | None = None) -> Root:
        """The root a restore to `original` may write under: the root the file was
        moved out of (`moved_from`, from its journal row: a configured root or a folder
        named on the command line) or a configured root; no `..`, no symlinked folder
        leading out of the root (the move itself then opens every folder below the
        real root without following links). Raises ActionError otherwise."""
        p = Path(original)
        if not p.is_absolute() or ".." in p.parts:
            raise ActionError(f"refusing to restore to {original!r}: not a clean absolute path")
        root = Root(Path(moved_from)) if moved_from and _inside(original, moved_from) else None
        root = root or self.root_of(original)
        if root is None:
            raise ActionError(f"refusing to restore to {original}: not under a configured root")
        real_root = os.path.realpath(root.path)
        # the nearest folder that exists must resolve inside the root
        parent = p.parent
        while not parent.exists() and parent != parent.parent:
            parent = parent.parent
        if not _inside(os.path.realpath(parent), real_root):
            raise ActionError(
                f"refusing to restore to {original}: {parent} leads outside {root.path}"
            )
        if p.is_symlink():
            raise ActionError(f"refusing to restore over the symlink {original}")
        return root

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
        target = self.quarantine_target(f)
        where = (str(root.path), os.path.realpath(root.path)) if root else (None, None)
        move = self._move(f, decision, "quarantine", target, st, where)
        return Outcome(True, move.dest)

    def _move(
        self,
        f: File,
        decision: Decision | None,
        kind: str,
        target: Path,
        st,
        root: tuple[str | None, str | None],
    ) -> Move:
        """Journal, move and record one file; on failure undo and raise ActionError.
        `root`: the root the file belongs to (quarantine) or came from (restore), as
        configured and as it really was, with no symbolic link in it."""
        folder = self._target_folder(kind, target, root)
        try:
            self._not_moving(f)
            name = _free_name(folder, target.name)
            move = self._intent(f, decision, kind, f.path, target.with_name(name), st, root)
            try:
                self._execute(move, folder)
            except OSError as exc:
                if self._completed(move):  # the file is whole at dest and gone from src
                    self._apply(move, f)
                    return move
                self._roll_back(move, f"{exc.strerror or exc}")
                raise ActionError(f"cannot {kind} {move.src}: {exc.strerror or exc}") from None
        finally:
            os.close(folder)
        self._apply(move, f)
        return move

    def _target_folder(self, kind: str, target: Path, root: tuple[str | None, str | None]) -> int:
        """A descriptor on the folder the file goes to. The quarantine is ours, made for
        the user alone. A restore goes back under the root the file came from, each
        folder below the real root opened with no symbolic link followed (made again
        if it is gone): a root or folder replaced by a link since cannot send the file
        elsewhere."""
        try:
            if kind == "quarantine":
                private.folder(target.parent)
                return os.open(target.parent, _FOLDER)
            configured, real = root
            if configured is None or not _inside(str(target), configured):
                raise ActionError(f"refusing to restore to {target}: no root it came from")
            real = real or os.path.realpath(configured)
            rel = Path(os.path.relpath(target.parent, configured)).parts
            return _open_folder(real, () if rel == (".",) else rel, create=True)
        except OSError as exc:
            if exc.errno in (errno.ELOOP, errno.ENOTDIR):
                raise ActionError(
                    f"refusing to {kind} to {target}: a folder on the way is a symbolic link"
                ) from None
            raise ActionError(f"cannot create {target.parent}: {exc.strerror or exc}") from None

    @staticmethod
    def _completed(move: Move) -> bool:
        """Whether a move that raised had in fact put the file, whole, at its target."""
        return not os.path.lexists(move.src) and _complete(move.dest, move.size, move.sha256)

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
        _step("intent")
        return move

    def _placeholder(self, move: Move, folder: int) -> str:
        """Claim the target name with O_EXCL: a rename can then never replace anything
        but our own empty file. Another name is taken if this one appeared meanwhile."""
        name = os.path.basename(move.dest)
        while True:
            try:
                os.close(os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600, dir_fd=folder))
                break
            except FileExistsError:
                name = _free_name(folder, name)
                move.dest = os.path.join(os.path.dirname(move.dest), name)
                self.index.commit()
        _step("placeholder")
        return name

    def _execute(self, move: Move, folder: int) -> None:
        """Move the file into `folder` (a descriptor: see _target_folder)."""
        name = self._placeholder(move, folder)
        src_dir = os.path.dirname(move.src)
        if os.stat(move.src).st_dev == os.fstat(folder).st_dev:
            os.rename(move.src, name, dst_dir_fd=folder)  # atomic; replaces our placeholder
            _step("renamed")
            os.fsync(folder)
            _fsync_dir(src_dir)
            return
        tmp = os.path.basename(self._tmp_name(move))
        try:
            digest = hashlib.sha256()
            flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
            with (
                open(move.src, "rb") as fin,
                open(os.open(tmp, flags, 0o600, dir_fd=folder), "wb") as fout,
            ):
                while chunk := fin.read(CHUNK):
                    digest.update(chunk)
                    fout.write(chunk)
                fout.flush()
                os.fsync(fout.fileno())
                _keep_stat(move.src, fout.fileno())
            _step("copied")
            if digest.hexdigest() != move.sha256:
                raise OSError(errno.EIO, "the file changed while being copied")
            os.replace(tmp, name, src_dir_fd=folder, dst_dir_fd=folder)
            _step("renamed")
            os.fsync(folder)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp, dir_fd=folder)
            raise
        with open(os.open(name, os.O_RDONLY | os.O_NOFOLLOW, dir_fd=folder), "rb") as landed:
            if _sha256_of_file(landed) != move.sha256:
                raise OSError(errno.EIO, "the copy does not match the original")
        _step("verified")
        st = os.stat(move.src)
        if (st.st_size, st.st_mtime_ns) != (move.size, move.mtime_ns):
            raise OSError(errno.EBUSY, "the file changed while being moved")
        os.unlink(move.src)
        _step("unlinked")
        _fsync_dir(src_dir)

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
        if self._ours(move):
            with contextlib.suppress(OSError):
                os.unlink(move.dest)
        elif os.path.lexists(move.dest) and _complete(move.dest, move.size, move.sha256):
            note += f"; a copy stays at {move.dest}"
            log.warning(
                "left the copy at %s: %s is not certainly intact",
                move.dest,
                move.src,
                extra={"event": "error", "path": move.src, "dest": move.dest},
            )
        move.state = ROLLED_BACK
        move.note = note
        move.finished_at = utcnow()
        self.index.commit()

    def _ours(self, move: Move) -> bool:
        """Whether move.dest may be removed: our empty placeholder (zero-byte files are
        never moved), or a copy whose source is still whole at its own path."""
        try:
            st = os.lstat(move.dest)
        except OSError:
            return False
        if st.st_size == 0:
            return True
        try:
            src = os.stat(move.src)
        except OSError:
            return False
        if (src.st_dev, src.st_ino) == (st.st_dev, st.st_ino):
            return False  # one file under two names: the dest is the file itself
        return (
            st.st_size == move.size
            and _complete(move.src, move.size, move.sha256)
            and sha256_of(move.dest) == move.sha256
        )

    # -- restore and ignore --------------------------------------------------------------

    def restore(self, f: File) -> Outcome:
        """Move a quarantined file back where it came from (or beside it, if taken)."""
        if f.status != QUARANTINED:
            raise ActionError(f"{f.path} is not in quarantine")
        last = self.index.last_quarantine(f.id)
        if last is None:
            raise ActionError(f"no record of where {f.path} came from")
        root = self.safe_restore_target(last.src, last.root)
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
        """Finish or undo every move whose owner is gone (a crash); returns what was done.

        A move whose owner still lives is its owner's alone, whatever state its files
        are in. Run in a writer's transaction: it holds the index's write lock from its
        first statement, so an owner found gone cannot commit anything after the look."""
        results = []
        pending = self.index.session.scalars(select(Move).where(Move.state == INTENT))
        for move in list(pending):
            if owners.alive(self.owners, move.owner):
                continue
            outcome = self._recover_one(move)
            owners.forget(self.owners, move.owner)
            if outcome == "undone" and move.kind == "quarantine":
                outcome = self._retry(move)
            results.append((move, outcome))
        return results

    def _retry(self, move: Move) -> str:
        """An undone quarantine whose decision still stands is carried out again."""
        f, d = self.index.get(move.file_id), move.decision
        if f is None or d is None or not d.current or f.status != ACTIVE:
            return "undone"
        try:
            done = self.quarantine(f, d)
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

    def _recover_one(self, move: Move) -> str:
        f = self.index.get(move.file_id)
        for tmp in (self._tmp_name(move), self._old_tmp_name(move)):
            with contextlib.suppress(OSError):
                os.unlink(tmp)
        src_same = _same_file(move.src, move.size, move.mtime_ns)
        dest_done = _complete(move.dest, move.size, move.sha256)
        if dest_done and os.path.lexists(move.src) and not src_same:
            # the source was changed by someone after the intent: keep theirs, drop ours
            dest_done = False
        if dest_done:
            if os.path.lexists(move.src):
                os.unlink(move.src)  # identical copy verified at dest
                _fsync_dir(os.path.dirname(move.src))
            self._apply(move, f)
            what = "finished"
        elif os.path.lexists(move.src):
            self._roll_back(move, "interrupted; undone at recovery")
            what = "undone"
        else:  # neither place has it: gone before the move began (deleted by the user)
            if f is not None:
                f.status = MISSING
            self._roll_back(move, "file gone before the move")
            what = "file gone"
        log.warning(
            "recovered an interrupted %s of %s: %s",
            move.kind,
            move.src,
            what,
            extra={"event": "recovered", "path": move.src, "dest": move.dest, "outcome": what},
        )
        return what


def _same_file(path: str, size: int, mtime_ns: int) -> bool:
    try:
        st = os.stat(path)
    except OSError:
        return False
    return (st.st_size, st.st_mtime_ns) == (size, mtime_ns)


def _complete(path: str, size: int, sha: str) -> bool:
    try:
        if os.path.getsize(path) != size:
            return False
        return sha256_of(path) == sha
    except OSError:
        return False


def _keep_stat(src: str, dest: int) -> None:
    """Permissions and times of the original, on the copy open at `dest` (xattrs where
    possible)."""
    st = os.stat(src)
    with contextlib.suppress(OSError):
        shutil.copystat(src, f"/proc/self/fd/{dest}")
    os.fchmod(dest, st.st_mode & 0o7777)
    os.utime(dest, ns=(st.st_atime_ns, st.st_mtime_ns))
