"""Who owns a journalled move, and whether that owner still lives.

A move's intent is committed before the file is touched; until it is marked done or
rolled back, only the process that wrote it may act on it. Any other process (a
command started meanwhile, a daemon starting) may recover it only once its owner is
provably gone. The proof is a lock the kernel keeps for us: each process that
journals moves holds an exclusive `flock` on a file of its own in a folder beside the
index (`<index>.owners/<token>.lock`) from before its first intent until it exits; the
kernel releases it at death, SIGKILL included. The token is written into every intent
(`moves.owner`).

A recoverer checks the owner while it holds the index's write lock (a writer's
transaction begins with it), so an owner whose lock is free cannot commit anything
more: the intent it reads is final. An intent with no owner (written before schema 8)
is treated as abandoned, as it was before.
"""

from __future__ import annotations

import atexit
import contextlib
import fcntl
import os
import uuid
from pathlib import Path

from . import private

_held: dict[str, tuple[str, int]] = {}  # folder -> (token, fd) of this process


def folder_for(target: str | os.PathLike[str]) -> Path:
    """The owners folder of the index at `target`: beside a SQLite file, or in this
    machine's state folder for a server's URL (locks are one machine's business)."""
    from . import index_location

    text = str(target)
    if text.startswith("sqlite:///"):
        text = text[len("sqlite:///") :]
    if index_location.is_server(text):
        return index_location.beside(text, ".owners")
    return index_location.beside(Path(text).expanduser().absolute(), ".owners")


def _lock_file(folder: Path, token: str) -> Path:
    return folder / f"{token}.lock"


def claim(folder: Path) -> str:
    """This process's token for the index whose owners folder is `folder`: the lock is
    taken (and held until the process exits) the first time it is asked for."""
    key = str(folder)
    if key in _held and _held[key][0].startswith(f"{os.getpid()}-"):
        return _held[key][0]
    private.folder(folder)
    token = f"{os.getpid()}-{uuid.uuid4().hex[:12]}"
    fd = os.open(_lock_file(folder, token), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    fcntl.flock(fd, fcntl.LOCK_EX)  # nobody else knows this name yet: never waits long
    _held[key] = (token, fd)
    return token


def mine(token: str | None) -> bool:
    """Whether `token` is this very process's (not a parent's, inherited by a fork)."""
    own = f"{os.getpid()}-"
    return (
        token is not None and token.startswith(own) and any(t == token for t, _fd in _held.values())
    )


def alive(folder: Path, token: str | None) -> bool:
    """Whether the owner `token` may still act on its intents. Call it while holding the
    index's write lock; a free lock (or no lock file) means the owner is gone."""
    if token is None:
        return False
    if mine(token):
        return True
    try:
        fd = os.open(_lock_file(folder, token), os.O_RDWR | os.O_CLOEXEC)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)  # closing the descriptor releases a lock we took
    return False


def forget(folder: Path, token: str | None) -> None:
    """Remove the lock file of an owner found gone, once its intents are resolved."""
    if token is None or mine(token) or alive(folder, token):
        return
    with contextlib.suppress(OSError):
        _lock_file(folder, token).unlink()


@atexit.register
def release() -> None:
    """Give up this process's claims, as its exit does: a clean exit removes its own
    lock files (a killed process leaves them for the next recoverer to remove). Tests
    call it to play a process that died in the middle of a move."""
    for folder, (token, fd) in list(_held.items()):
        if not token.startswith(f"{os.getpid()}-"):
            continue  # inherited through fork: the parent's, not ours to remove
        with contextlib.suppress(OSError):
            _lock_file(Path(folder), token).unlink()
        with contextlib.suppress(OSError):
            os.close(fd)
        _held.pop(folder, None)
