"""The files a running daemon keeps beside its index: the lock that makes it the one
writer, and the status file `watcherd status` reads (what it watches, what it did)."""

from __future__ import annotations

import fcntl
import json
import logging
import os
from pathlib import Path
from typing import IO

from . import private
from .index_location import Target, beside, shown

log = logging.getLogger("watcherd")


class AlreadyRunning(Exception):
    """Another daemon holds this index; two writers would decide every file twice."""


def lock_path(db_path: Target) -> Path:
    return beside(db_path, ".lock")


def status_path(db_path: Target) -> Path:
    return beside(db_path, ".status.json")


def daemon_running(db_path: Path) -> bool:
    """Whether a daemon holds the index's lock right now."""
    path = lock_path(db_path)
    if not path.exists():
        return False
    with open(path, "a+") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        fcntl.flock(fh, fcntl.LOCK_UN)
    return False


def acquire_lock(db_path: Path) -> IO[str]:
    """The index's lock, with this process's id in it; held while the file stays open."""
    path = lock_path(db_path)
    private.folder(path.parent)
    fh = open(private.create(path, os.O_RDWR), "r+")  # noqa: SIM115
    try:
        fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        fh.close()
        raise AlreadyRunning(f"a watcherd daemon is already running on {shown(db_path)}") from None
    fh.seek(0)
    fh.truncate()
    fh.write(f"{os.getpid()}\n")
    fh.flush()
    return fh


def read_status(db_path: Path) -> dict | None:
    try:
        return json.loads(status_path(db_path).read_text())
    except (OSError, ValueError):
        return None


def write_status(db_path: Path, data: dict) -> None:
    """Replaced whole (a reader never sees half of it); a failure is only logged."""
    path = status_path(db_path)
    tmp = path.with_name(path.name + ".tmp")
    try:
        private.write(tmp, json.dumps(data))
        os.replace(tmp, path)
    except OSError as exc:
        log.debug("cannot write status file %s: %s", path, exc)
