"""The file operations of one move, by folder descriptor: claim the target name, then
rename (same filesystem) or copy, fsync, rename into place, verify and unlink (across
filesystems). No index here: actions.Mover journals each move around these steps.

Fault injection for the crash tests: WATCHERD_CRASH_AT=<step> kills this process with
SIGKILL when a move reaches that step, exactly as a power cut or the OOM killer would;
WATCHERD_PAUSE_AT=<step> stops it there (SIGSTOP) until the test lets it go on
(SIGCONT), so that other commands can be run at that very instant; `fault_hook` is a
callable(step) tests set to fail between steps. Unset in normal use.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import shutil
import signal
from collections.abc import Callable
from pathlib import Path

CHUNK = 1024 * 1024
STEPS = ("intent", "placeholder", "copied", "renamed", "verified", "unlinked")
fault_hook: Callable[[str], None] | None = None


def step(name: str) -> None:
    if os.environ.get("WATCHERD_CRASH_AT") == name:
        os.kill(os.getpid(), signal.SIGKILL)
    if os.environ.get("WATCHERD_PAUSE_AT") == name:
        os.kill(os.getpid(), signal.SIGSTOP)
    hook = fault_hook
    if hook is not None:
        hook(name)


def sha256_of(path: str | os.PathLike[str]) -> str:
    with open(path, "rb") as fh:
        return sha256_of_file(fh)


def sha256_of_file(fh) -> str:
    digest = hashlib.sha256()
    while chunk := fh.read(CHUNK):
        digest.update(chunk)
    return digest.hexdigest()


def fsync_dir(path: str | os.PathLike[str]) -> None:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        return
    try:
        with contextlib.suppress(OSError):
            os.fsync(fd)
    finally:
        os.close(fd)


def exists_at(folder: int, name: str) -> bool:
    try:
        os.stat(name, dir_fd=folder, follow_symlinks=False)
    except FileNotFoundError:
        return False
    return True


def free_name(folder: int, name: str, held: Callable[[str], bool] = lambda _n: False) -> str:
    """`name`, or `name (2).ext`, `name (3).ext`, ... : the first not taken in `folder`
    nor `held` by someone about to need it."""
    p = Path(name)
    n = 1
    while exists_at(folder, name) or held(name):
        n += 1
        name = f"{p.stem} ({n}){p.suffix}"
    return name


FOLDER = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW


def open_folder(top: str | int, parts: tuple[str, ...], create: bool, mode: int = 0o777) -> int:
    """A descriptor on `top`/`parts`..., each folder opened relative to the one before
    it and none of them through a symbolic link (missing ones are made, if `create`):
    a folder replaced by a link, however late, leads nowhere but to an error."""
    # `top`: a path, or a descriptor already open on it (a new one is made: ours)
    fd = os.open(".", FOLDER, dir_fd=top) if isinstance(top, int) else os.open(top, FOLDER)
    try:
        for part in parts:
            if part in ("", ".", ".."):
                raise OSError(errno.EINVAL, f"not a plain folder name: {part!r}")
            try:
                nxt = os.open(part, FOLDER, dir_fd=fd)
            except FileNotFoundError:
                if not create:
                    raise
                with contextlib.suppress(FileExistsError):
                    os.mkdir(part, mode, dir_fd=fd)
                nxt = os.open(part, FOLDER, dir_fd=fd)
            os.close(fd)
            fd = nxt
    except BaseException:
        os.close(fd)
        raise
    return fd


def same_file(path: str, size: int, mtime_ns: int) -> bool:
    try:
        st = os.stat(path)
    except OSError:
        return False
    return (st.st_size, st.st_mtime_ns) == (size, mtime_ns)


def complete(path: str, size: int, sha: str) -> bool:
    try:
        if os.path.getsize(path) != size:
            return False
        return sha256_of(path) == sha
    except OSError:
        return False


def keep_stat(src: str, dest: int) -> None:
    """Permissions and times of the original, on the copy open at `dest` (xattrs where
    possible)."""
    st = os.stat(src)
    with contextlib.suppress(OSError):
        shutil.copystat(src, f"/proc/self/fd/{dest}")
    os.fchmod(dest, st.st_mode & 0o7777)
    os.utime(dest, ns=(st.st_atime_ns, st.st_mtime_ns))


def landed(src: str, dest: str, size: int, sha256: str) -> bool:
    """Whether a move that raised had in fact put the file, whole, at its target."""
    return not os.path.lexists(src) and complete(dest, size, sha256)


def removable(dest: str, src: str, size: int, sha256: str) -> bool:
    """Whether a move's target may be removed in a roll-back: our empty placeholder
    (zero-byte files are never moved), or a copy whose source is still whole at its
    own path. Anything else may be the only copy."""
    try:
        st = os.lstat(dest)
    except OSError:
        return False
    if st.st_size == 0:
        return True
    try:
        original = os.stat(src)
    except OSError:
        return False
    if (original.st_dev, original.st_ino) == (st.st_dev, st.st_ino):
        return False  # one file under two names: the target is the file itself
    return st.st_size == size and complete(src, size, sha256) and sha256_of(dest) == sha256


def place(folder: int, dest: str, renamed: Callable[[str], None]) -> str:
    """Claim the target name with O_EXCL: a rename can then never replace anything but
    our own empty file. Another name is taken if this one appeared meanwhile (and
    `renamed` told of it, to journal it before anything moves)."""
    name = os.path.basename(dest)
    while True:
        try:
            os.close(os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600, dir_fd=folder))
            break
        except FileExistsError:
            name = free_name(folder, name)
            renamed(name)
    step("placeholder")
    return name


def carry(
    src: str, folder: int, name: str, tmp: str, sha256: str, size: int, mtime_ns: int
) -> None:
    """Move `src` to `name` in `folder` (claimed by `place`): one rename on the same
    filesystem; across filesystems a copy to `tmp` beside it, fsync, rename into place,
    verify the sha256 of what landed, and only then unlink the original."""
    src_dir = os.path.dirname(src)
    if os.stat(src).st_dev == os.fstat(folder).st_dev:
        try:
            os.rename(src, name, dst_dir_fd=folder)  # atomic; replaces our placeholder
        except OSError as exc:
            if exc.errno != errno.EXDEV:
                raise
            # one filesystem, two mounts (a bind mount): the kernel refuses the rename
        else:
            step("renamed")
            os.fsync(folder)
            fsync_dir(src_dir)
            return
    try:
        digest = hashlib.sha256()
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
        with open(src, "rb") as fin, open(os.open(tmp, flags, 0o600, dir_fd=folder), "wb") as fout:
            while chunk := fin.read(CHUNK):
                digest.update(chunk)
                fout.write(chunk)
            fout.flush()
            os.fsync(fout.fileno())
            keep_stat(src, fout.fileno())
        step("copied")
        if digest.hexdigest() != sha256:
            raise OSError(errno.EIO, "the file changed while being copied")
        os.replace(tmp, name, src_dir_fd=folder, dst_dir_fd=folder)
        step("renamed")
        os.fsync(folder)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp, dir_fd=folder)
        raise
    with open(os.open(name, os.O_RDONLY | os.O_NOFOLLOW, dir_fd=folder), "rb") as landed:
        if sha256_of_file(landed) != sha256:
            raise OSError(errno.EIO, "the copy does not match the original")
    step("verified")
    st = os.stat(src)
    if (st.st_size, st.st_mtime_ns) != (size, mtime_ns):
        raise OSError(errno.EBUSY, "the file changed while being moved")
    os.unlink(src)
    step("unlinked")
    fsync_dir(src_dir)
