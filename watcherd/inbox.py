"""What the daemon's loop is told, by the threads that may not touch the index:
watchdog's observers (`watcher.FsEvent`), the signal relay, worker callbacks and the
desktop notifications' Undo button. One thread reads the inbox and does the work."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Stop:
    """SIGTERM or SIGINT: finish the step under way and stop."""


@dataclass(frozen=True, slots=True)
class Reload:
    """SIGHUP: read the configuration again."""


@dataclass(frozen=True, slots=True)
class ReadDone:
    """A worker finished a file: take the results in order."""


@dataclass(frozen=True, slots=True)
class Undo:
    """Undo pressed on a notification: bring back what that burst quarantined."""

    burst: int
    paths: tuple[str, ...]
