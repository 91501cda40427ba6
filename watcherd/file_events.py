"""What a watcher event about a file or a folder means: a file to wait for (settling),
one complete now (the read queue), one gone or moved (the index follows it without
reading it again), a folder moved or deleted whole.

The daemon's thread calls `handle`; it returns the folders that need a catch-up (a
folder moved in may hold files never indexed), which the daemon does.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

from .config import Config
from .index import Index
from .models import ACTIVE, ERROR
from .read_queue import ReadQueue
from .settling import Settler, stat_of
from .watcher import FsEvent

log = logging.getLogger("watcherd")


class Tally(Protocol):
    moved: int
    missing: int


class FileEvents:
    def __init__(
        self,
        config: Config,
        index: Index,
        root_of: Callable[[str], str | None],
        settler: Settler,
        reads: ReadQueue,
        tally: Tally,
    ) -> None:
        self.config = config  # the daemon sets it again on reload
        self.index = index
        self.root_of = root_of
        self.settler = settler
        self.reads = reads
        self.tally = tally

    def handle(self, ev: FsEvent) -> list[Path]:
        kind = ev.kind
        if kind == "closed":
            root = self._included(ev.path)
            if root is not None:
                self.settler.forget(ev.path)
                self.reads.add(ev.path, root)
        elif kind in ("created", "modified", "attrib"):
            root = self._included(ev.path)
            if root is not None and (kind != "attrib" or self._unreadable(ev.path)):
                wait_close = not ev.polled and kind != "attrib"
                self._touch(ev.path, root, wait_close)
        elif kind == "arrived":
            root = self._included(ev.path)
            if root is not None:
                self._touch(ev.path, root, wait_close=False)
        elif kind == "deleted":
            self.settler.forget(ev.path)
            f = self.index.file_by_path(ev.path)
            if f is not None and f.status in (ACTIVE, ERROR) and not os.path.lexists(ev.path):
                self._missing(f, ev.path)
        elif kind == "moved":
            self._moved(ev.path, ev.dest)
        elif kind == "dir_moved":
            return self._dir_moved(ev.path, ev.dest)
        elif kind == "dir_deleted":
            self._dir_deleted(ev.path)
        return []

    def _included(self, path: str) -> str | None:
        """The root of `path` when it is a file watcherd indexes, else None."""
        root = self.root_of(path)
        if root is None or not self.config.is_included(path, root):
            return None
        return root

    def _unreadable(self, path: str) -> bool:
        """Indexed as a file that could not be opened: its permissions may be fixed."""
        f = self.index.file_by_path(path)
        return f is not None and f.status == ERROR and (f.error or "").startswith("cannot ")

    def _touch(self, path: str, root: str, wait_close: bool) -> None:
        self.settler.touch(path, root, wait_close, time.monotonic())

    def _missing(self, f, path: str) -> None:
        with self.index.unit():
            self.index.mark_missing(f)
        self.tally.missing += 1
        log.info("gone: %s", path, extra={"event": "missing", "path": path})

    def _moved(self, src: str, dest: str) -> None:
        src_pending = self.settler.forget(src)
        dest_root = self._included(dest)
        f = self.index.file_by_path(src)
        if f is not None and f.status in (ACTIVE, ERROR):
            if dest_root is None:  # renamed to a name we skip, or out of the roots
                self._missing(f, src)
            else:
                with self.index.unit():
                    self.index.move_file(f, dest, dest_root)
                self.tally.moved += 1
                log.info("moved %s -> %s", src, dest,
                         extra={"event": "moved", "path": dest, "from": src})  # fmt: skip
            return
        if dest_root is None:
            return
        known = self.index.file_by_path(dest)
        if known is not None and (known.size, known.mtime_ns) == stat_of(dest):
            return  # already followed (a folder move moves its files first)
        # renamed from a temporary name (x.part -> x.jpg): complete, if it holds still;
        # unless a writer still had it open under the old name
        wait_close = src_pending is not None and src_pending.wait_close
        self._touch(dest, dest_root, wait_close)

    def _dir_moved(self, src: str, dest: str) -> list[Path]:
        dest_root = self.root_of(dest)
        self.settler.move_under(src, dest, dest_root)
        if dest_root is None or not self.config.is_included_dir(os.path.basename(dest)):
            self._dir_deleted(src)
            return []
        with self.index.unit():
            moved = self.index.move_folder(src, dest, dest_root)
        if moved:
            self.tally.moved += moved
            log.info("moved folder %s -> %s", src, dest,
                     extra={"event": "moved", "path": dest, "from": src})  # fmt: skip
        return [Path(dest)]  # files the folder held that were never indexed

    def _dir_deleted(self, folder: str) -> None:
        self.settler.forget_under(folder)
        with self.index.unit():
            live = self.index.live_under(folder)
            missing = [fid for fid, path in live if not os.path.lexists(path)]
            self.index.mark_missing_many(missing)
        gone = len(missing)
        if gone:
            self.tally.missing += gone
            log.info("folder gone: %s (%d files)", folder, gone,
                     extra={"event": "missing", "path": folder})  # fmt: skip
