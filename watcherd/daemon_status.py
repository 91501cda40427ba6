"""What the daemon tells about itself: counts of what it decided this session, the
status line systemd shows (`systemctl --user status watcherd`) and the status file
`watcherd status` reads, written at most every STATUS_EVERY seconds."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from .daemon_files import write_status
from .pipeline import GONE, Outcome
from .sdnotify import Notifier

STATUS_EVERY = 1.0


@dataclass
class Counters:
    indexed: int = 0
    duplicates: int = 0
    errors: int = 0
    moved: int = 0
    missing: int = 0
    rescans: int = 0
    last_event: dict = field(default_factory=dict)

    def count(self, outcome: Outcome) -> None:
        """One file decided: counted, and remembered as the last thing that happened."""
        v = outcome.verdict
        if outcome.status == GONE:
            return  # not decided: its move or change is an event of its own
        if outcome.error:
            self.errors += 1
            self.last_event = {"event": "error", "path": outcome.path, "reason": outcome.error}
        elif v is not None and v.kind == "similar":
            self.indexed += 1
            self.last_event = {"event": "similar", "path": outcome.path}
        elif v is not None:
            self.duplicates += 1
            self.last_event = {
                "event": "duplicate",
                "path": v.redundant_path,
                "original": v.kept_path,
            }
        else:
            self.indexed += 1
            self.last_event = {"event": "indexed", "path": outcome.path}
        self.last_event["ts"] = time.time()

    def decided(self) -> int:
        return self.indexed + self.errors + self.missing + self.moved

    def tally(self) -> tuple[int, int, int]:
        return (self.indexed, self.duplicates, self.errors)


class Status:
    def __init__(self, db_path: Path, notifier: Notifier, counters: Counters) -> None:
        self.db_path = db_path
        self.notifier = notifier
        self.counters = counters
        self.dirty = True  # something changed since the status was last written
        self._last = 0.0

    def text(self, waiting: int) -> str:
        c = self.counters
        return (
            f"{c.indexed} indexed, {c.duplicates} duplicates, {c.errors} errors; {waiting} waiting"
        )

    def deadline(self) -> float | None:
        return self._last + STATUS_EVERY if self.dirty else None

    def maybe_write(self, waiting: int, describe: Callable[[], dict]) -> None:
        now = time.monotonic()
        if self.dirty and now - self._last >= STATUS_EVERY:
            self.notifier.status(self.text(waiting))
            self.write(describe())
            self._last = now
            self.dirty = False

    def write(self, described: dict, final: bool = False) -> None:
        """`described`: roots, methods and rescans, from the daemon's parts."""
        c = self.counters
        session = {
            "indexed": c.indexed,
            "duplicates": c.duplicates,
            "errors": c.errors,
            "moved": c.moved,
            "missing": c.missing,
            "rescans": c.rescans + described.get("rescans", 0),
        }
        data = {
            "pid": os.getpid(),
            "running": not final,
            "roots": described.get("roots", []),
            "methods": described.get("methods", {}),
            "synced": described.get("synced", {}),  # root -> sync client
            "session": session,
            "last_event": c.last_event,
            "updated": time.time(),
        }
        write_status(self.db_path, data)
