"""`action = "link"`: an exact copy (same bytes) gives its space back without losing its
path. The redundant file is replaced by a reflink of the kept one where the filesystem
offers it (`FICLONE`: btrfs, XFS; the copy keeps its own inode, permissions and times,
and later edits to either stay apart), else by a hard link (same filesystem: both
names are then one file). `watcherd restore` gives it its own bytes back.

Journalled like a move (actions.Mover's journal): the intent is committed first; the
new file is made under a temporary name beside the copy, its sha256 checked against the
copy's, and it replaces the copy by one atomic rename. A crash at any instant leaves the
copy's path holding the same bytes; recovery only removes our temporary name. Near
copies are never linked (they are different bytes): they are flagged.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import shutil

from sqlalchemy import select

from . import moving
from .actions import ActionError, Mover, Outcome
from .models import ACTIVE, DONE, MISSING, ROLLED_BACK, Decision, File, Move, utcnow

FICLONE = 0x40049409  # _IOW(0x94, 9, int), linux/fs.h
LINK, SEPARATE = "link", "separate"  # the journal's kinds: linked, given its own bytes back


def _tmp(move: Move) -> str:
    """The temporary name beside the copy (a link's `dest` is the kept file, elsewhere)."""
    return os.path.join(os.path.dirname(move.src), f".watcherd-{move.id}.tmp")


def last_link(index, file_id: int) -> Move | None:
    """The finished link that still stands for a file (None once it was separated)."""
    last = index.session.scalar(
        select(Move)
        .where(Move.file_id == file_id, Move.kind.in_((LINK, SEPARATE)), Move.state == DONE)
        .order_by(Move.id.desc())
        .limit(1)
    )
    return last if last is not None and last.kind == LINK else None


def why_not(mover: Mover, f: File, kept: File) -> str | None:
    """Why `f` may not be replaced by a link to `kept` (None when it may)."""
    reason = mover.movable(f)
    if reason:
        return reason
    if kept.machine != f.machine:  # its path names a file on another machine's disk
        return f"the kept copy is on another machine ({kept.machine})"
    if kept.status != ACTIVE or not kept.sha256 or kept.sha256 != f.sha256:
        return "the kept copy is not the same bytes"
    try:
        a, b = os.stat(f.path), os.stat(kept.path)
    except OSError as exc:
        return f"{exc.filename}: {exc.strerror}"
    if (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino):
        return "already one file"
    if a.st_dev != b.st_dev:
        return "the kept copy is on another filesystem"
    if (a.st_size, a.st_mtime_ns) != (f.size, f.mtime_ns):
        return "changed since it was read"
    return None


def link(mover: Mover, f: File, kept: File, decision: Decision) -> Outcome:
    """Replace the exact copy `f` by a reflink or hard link of `kept`."""
    reason = why_not(mover, f, kept)
    if reason:
        return Outcome(False, f.path, f"not linked: {reason}")
    root = mover.root_of(f.path)
    where = (str(root.path), os.path.realpath(root.path)) if root else (None, None)
    made: list[str] = []  # how: "reflink" or "hard link"

    def make(folder: int, tmp: str) -> None:
        made.append(_make_link(folder, tmp, kept.path, f.path, f.sha256))

    move = _carry_out(mover, f, decision, LINK, kept.path, where, make, "link")
    _record(f)
    decision.action = "linked"
    mover._finish(move)
    note = "" if made[0] == "reflink" else "a hard link: both names are now one file"
    return Outcome(True, f.path, note)


def _carry_out(mover: Mover, f: File, decision, kind: str, dest: str, root, make, verb) -> Move:
    """Journal `kind` for `f`, have `make(folder, tmp)` write the new file under a
    temporary name beside it, and put that in its place; on failure the temporary
    goes, the intent is closed as undone, and ActionError says why."""
    try:
        st = os.stat(f.path)
    except OSError as exc:
        raise ActionError(f"{f.path}: {exc.strerror}") from None
    folder = os.open(os.path.dirname(f.path), moving.FOLDER)
    try:
        mover._not_moving(f)
        move = mover._intent(f, decision, kind, f.path, dest, st, root)
        tmp = os.path.basename(_tmp(move))
        try:
            make(folder, tmp)
            _replace(folder, tmp, f.path, move)
        except OSError as exc:
            with contextlib.suppress(OSError):
                os.unlink(tmp, dir_fd=folder)
            _undone(mover, move, f"{exc.strerror or exc}")
            raise ActionError(f"cannot {verb} {f.path}: {exc.strerror or exc}") from None
    finally:
        os.close(folder)
    return move


def _make_link(folder: int, tmp: str, kept: str, src: str, sha256: str) -> str:
    """`kept`'s bytes under `tmp` in `folder`, shared, checked: "reflink" or "hard link"."""
    how = "reflink"
    src_fd = os.open(kept, os.O_RDONLY | os.O_NOFOLLOW)
    try:
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
        out = os.open(tmp, flags, 0o600, dir_fd=folder)
        try:
            fcntl.ioctl(out, FICLONE, src_fd)
            moving.keep_stat(src, out)  # a clone is a file of its own: give it the copy's
        except OSError:
            how = "hard link"
        finally:
            os.close(out)
    finally:
        os.close(src_fd)
    if how == "hard link":
        os.unlink(tmp, dir_fd=folder)
        os.link(kept, tmp, dst_dir_fd=folder, follow_symlinks=False)
    moving.step("linked")
    with open(os.open(tmp, os.O_RDONLY | os.O_NOFOLLOW, dir_fd=folder), "rb") as fh:
        if moving.sha256_of_file(fh) != sha256:
            raise OSError(errno.EIO, "the kept copy no longer has the same bytes")
    return how


def _replace(folder: int, tmp: str, path: str, move: Move) -> None:
    """Put `tmp` in place of `path` in one rename, if `path` is still what was read."""
    if not moving.same_file(path, move.size, move.mtime_ns):
        raise OSError(errno.EBUSY, "the file changed while being linked")
    os.rename(tmp, os.path.basename(path), src_dir_fd=folder, dst_dir_fd=folder)
    moving.step("renamed")
    os.fsync(folder)


def _record(f: File) -> None:
    """The index follows the file at its path: its new inode and times."""
    st = os.stat(f.path)
    f.inode, f.mtime_ns = st.st_ino, st.st_mtime_ns


def separate(mover: Mover, f: File) -> Outcome:
    """Undo a link: the file gets bytes of its own again (a plain copy, its own
    modification time as before the link), and is no longer called a duplicate."""
    done = last_link(mover.index, f.id)
    if done is None or f.status != ACTIVE:
        raise ActionError(f"{f.path} is neither in quarantine nor linked")

    def make(folder: int, tmp: str) -> None:
        _copy(folder, tmp, f.path, f.sha256, done.mtime_ns)

    where = (done.root, None)
    move = _carry_out(mover, f, done.decision, SEPARATE, f.path, where, make, "separate")
    _record(f)
    mover._not_duplicates(f, done.decision)
    mover._finish(move)
    return Outcome(True, f.path, "given its own bytes back")


def _copy(folder: int, tmp: str, path: str, sha256: str, mtime_ns: int) -> None:
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
    with open(path, "rb") as fin, open(os.open(tmp, flags, 0o600, dir_fd=folder), "wb") as out:
        shutil.copyfileobj(fin, out, moving.CHUNK)  # a plain copy: no extents shared
        out.flush()
        os.fsync(out.fileno())
        moving.keep_stat(path, out.fileno())
        os.utime(out.fileno(), ns=(mtime_ns, mtime_ns))
    moving.step("copied")
    with open(os.open(tmp, os.O_RDONLY | os.O_NOFOLLOW, dir_fd=folder), "rb") as fh:
        if moving.sha256_of_file(fh) != sha256:
            raise OSError(errno.EIO, "the copy does not match")


def recover(mover: Mover, move: Move) -> str:
    """A link or separation whose owner died: our temporary name goes; the path holds
    the same bytes whatever the instant. A link is finished when the path is now the
    kept file (a hard link; a reflink cannot be told from the copy it replaced, and
    either is the same bytes: undone), a separation when it no longer is."""
    with contextlib.suppress(OSError):
        os.unlink(_tmp(move))
    f = mover.index.get(move.file_id)
    try:
        here = os.stat(move.src)
    except OSError:
        if f is not None:
            f.status = MISSING
        _undone(mover, move, "file gone before the link")
        return "file gone"
    link_row = move if move.kind == LINK else last_link(mover.index, move.file_id)
    try:
        kept = os.stat(link_row.dest) if link_row is not None else None
    except OSError:
        kept = None
    shared = kept is not None and (kept.st_dev, kept.st_ino) == (here.st_dev, here.st_ino)
    if f is None or shared != (move.kind == LINK):
        _undone(mover, move, "interrupted; undone at recovery")
        return "undone"
    _record(f)
    if move.kind == LINK and move.decision is not None:
        move.decision.action = "linked"
    elif move.kind == SEPARATE:
        mover._not_duplicates(f, move.decision)
    mover._finish(move)
    return "finished"


def retry(mover: Mover, move: Move) -> str:
    """An undone link whose decision still stands is made again."""
    f, d = mover.index.get(move.file_id), move.decision
    if f is None or d is None or not d.current or f.status != ACTIVE:
        return "undone"
    kept = mover.index.get(d.original_id)
    try:
        done = link(mover, f, kept, d) if kept is not None else None
    except ActionError:
        return "undone"
    return "undone, then linked again" if done is not None and done.moved else "undone"


def _undone(mover: Mover, move: Move, note: str) -> None:
    """Close a link that did not happen. Never Mover._roll_back: a link's target is the
    kept file, which a roll-back would take for our copy."""
    move.state = ROLLED_BACK
    move.note = note
    move.finished_at = utcnow()
    mover.index.commit()
