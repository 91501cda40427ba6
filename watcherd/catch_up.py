"""Catching up: what changed in a folder while the daemon was not looking (before it
started, during an overflow, while a root was gone), found by reconciling the folder
with the index and fed to settling or straight to the read queue.

A first catch-up at start with more than QUIET_CATCH_UP files to read is quiet: the
files merely indexed are not logged one by one (a first start on a folder of 10,000
photos wrote 10,000 lines to the journal); one summary line says what it did once
they are all decided (duplicates and errors are still logged).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path

from .config import Config
from .daemon_status import Counters
from .index import Index
from .read_queue import ReadQueue
from .scanner import Interrupted, ScanStats, reconcile
from .settling import Settler

log = logging.getLogger("watcherd")

QUIET_CATCH_UP = 100  # a first catch-up with more files to read is summed up, not listed


class CatchUp:
    def __init__(
        self,
        config: Config,
        index: Index,
        settler: Settler,
        reads: ReadQueue,
        counters: Counters,
        stopping: Callable[[], bool],
    ) -> None:
        self.config = config  # the daemon sets it again on reload
        self.index = index
        self.settler = settler
        self.reads = reads
        self.counters = counters
        self.stopping = stopping
        self._quiet: dict | None = None  # a large first catch-up under way

    @property
    def quiet(self) -> bool:
        return self._quiet is not None

    def run(self, folders: list[Path], first: bool = False) -> bool:
        """Reconcile `folders` with the index; False if a stop interrupted the walk
        (the next start catches up)."""
        stats = ScanStats()
        try:
            with self.index.unit():
                todo = reconcile(folders, self.config, self.index, stats, stop=self.stopping)
        except Interrupted:  # rolled back
            return False
        self.counters.moved += stats.moved
        self.counters.missing += stats.missing
        if first and len(todo) > QUIET_CATCH_UP and self._quiet is None:
            self._quiet = {"since": time.monotonic(), "counted": self.counters.tally()}
        now_wall = time.time()
        settle = self.config.settle_seconds
        for e in todo:
            if e.path in self.settler:
                continue
            if now_wall - e.mtime_ns / 1e9 > settle:
                self.reads.add(e.path, e.root)  # untouched for a while: complete
            else:
                self.settler.touch(e.path, e.root, False, time.monotonic())
        if todo or stats.moved or stats.missing:
            log.info(
                "catch-up: %d to read, %d unchanged, %d moved, %d missing",
                len(todo),
                stats.skipped,
                stats.moved,
                stats.missing,
                extra={
                    "event": "rescan",
                    "path": ", ".join(map(str, folders)),
                    "to_read": len(todo),
                    "unchanged": stats.skipped,
                },
            )
        return True

    def summarise_if_done(self) -> None:
        """The summary of a quiet catch-up, once nothing is left to read."""
        if self._quiet is None or self.reads.busy or len(self.settler) or len(self.reads.big):
            return
        before, now = self._quiet["counted"], self.counters.tally()
        indexed, duplicates, errors = (b - a for a, b in zip(before, now, strict=True))
        log.info(
            "caught up: %d files indexed, %d duplicates, %d errors in %.1f s",
            indexed,
            duplicates,
            errors,
            time.monotonic() - self._quiet["since"],
            extra={
                "event": "caught_up",
                "indexed": indexed,
                "duplicates": duplicates,
                "errors": errors,
            },
        )
        self._quiet = None
