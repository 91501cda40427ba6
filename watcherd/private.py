"""Files and folders that show what the user's photos show (the index holds a thumbnail
of every picture; the report, the quarantine, the notification thumbnails): made for
the user alone, folders 0700 and files 0600, whatever the umask of the shell that ran
watcherd by hand. Folders that already exist are left as they are: they are the user's.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path


def folder(path: str | os.PathLike[str]) -> Path:
    """`path` and every missing folder above it, created 0700."""
    path = Path(path)
    missing = []
    here = path
    while not here.exists() and here != here.parent:
        missing.append(here)
        here = here.parent
    for p in reversed(missing):
        with contextlib.suppress(FileExistsError):
            os.mkdir(p, 0o700)
            os.chmod(p, 0o700)  # mkdir's mode is masked by the umask
    return path


def create(path: str | os.PathLike[str], flags: int = os.O_WRONLY | os.O_TRUNC) -> int:
    """A descriptor on `path` opened with `flags`, the file created 0600 if new."""
    fd = os.open(path, flags | os.O_CREAT, 0o600)
    with contextlib.suppress(OSError):
        if os.fstat(fd).st_uid == os.geteuid():
            os.fchmod(fd, 0o600)
    return fd


def write(path: str | os.PathLike[str], data: bytes | str) -> None:
    """Write a whole file for the user alone."""
    raw = data.encode() if isinstance(data, str) else data
    with open(create(path), "wb") as fh:
        fh.write(raw)


def tighten(path: str | os.PathLike[str]) -> None:
    """An existing file of ours that others may read (made by an older watcherd) is made
    0600; a missing one, or somebody else's, is left alone."""
    with contextlib.suppress(OSError):
        st = os.stat(path)
        if st.st_uid == os.geteuid() and st.st_mode & 0o077:
            os.chmod(path, st.st_mode & 0o700)
