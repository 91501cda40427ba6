"""Settling: when a file that is arriving is complete enough to read.

A file is read once its writer closed it (inotify's close-after-write), or, where
that is not seen (polling, a file that arrived by rename, one found by a catch-up),
once its size and modification time have held still for `settle_seconds`. A file a
writer holds open waits longer before the fallback (CLOSE_FALLBACK_FACTOR): the close
is what normally makes it ready.
"""

from __future__ import annotations

import heapq
import itertools
import os
from dataclasses import dataclass

CLOSE_FALLBACK_FACTOR = 5  # a created file never closed is taken once still this many settles


@dataclass
class Pending:
    """A file seen but not yet complete."""

    root: str
    due: float
    wait_close: bool  # a writer has it open: its close makes it ready
    size: int = -1
    mtime_ns: int = -1


def stat_of(path: str) -> tuple[int, int]:
    """(size, mtime_ns) of a file, (-1, -1) if it cannot be seen."""
    try:
        st = os.stat(path)
    except OSError:
        return (-1, -1)
    return (st.st_size, st.st_mtime_ns)


class Settler:
    """The files seen but not complete yet, each with the time it is due to be looked at
    again (a heap; an entry a later `touch` superseded is skipped when it comes up)."""

    def __init__(self, settle_seconds: float) -> None:
        self.settle_seconds = settle_seconds  # the daemon sets it again on reload
        self.pending: dict[str, Pending] = {}
        self._due: list[tuple[float, int, str]] = []  # heap of (due, seq, path)
        self._seq = itertools.count()

    def __contains__(self, path: str) -> bool:
        return path in self.pending

    def __len__(self) -> int:
        return len(self.pending)

    def touch(self, path: str, root: str, wait_close: bool, now: float) -> None:
        """A file changed: (re)start its wait for completeness."""
        p = self.pending.get(path)
        if p is None:
            p = Pending(root, 0.0, wait_close)
            self.pending[path] = p
        else:
            p.wait_close = p.wait_close or wait_close
        p.due = now + self._wait(p)
        p.size, p.mtime_ns = stat_of(path)
        self._schedule(path, p)

    def forget(self, path: str) -> Pending | None:
        """No longer waited for (closed, deleted, moved away); what was known of it."""
        return self.pending.pop(path, None)

    def forget_under(self, folder: str) -> None:
        for path in self._under(folder):
            del self.pending[path]

    def move_under(self, src: str, dest: str, dest_root: str | None) -> None:
        """A folder was moved: its waiting files wait on under their new names (or not
        at all, moved out of every root)."""
        for path in self._under(src):
            p = self.pending.pop(path)
            if dest_root is not None:
                new = dest + path[len(src) :]
                moved = Pending(dest_root, p.due, p.wait_close, p.size, p.mtime_ns)
                self.pending[new] = moved
                self._schedule(new, moved)

    def settled(self, now: float) -> list[tuple[str, str]]:
        """(path, root) of the files whose wait is over and that held still; the ones
        that changed meanwhile wait again, the ones gone are dropped."""
        out = []
        while self._due and self._due[0][0] <= now:
            entry = heapq.heappop(self._due)
            if not self._current(entry):
                continue
            path = entry[2]
            p = self.pending[path]
            size, mtime_ns = stat_of(path)
            if size < 0:  # gone before it was complete
                del self.pending[path]
            elif (size, mtime_ns) == (p.size, p.mtime_ns):
                del self.pending[path]
                out.append((path, p.root))
            else:
                p.size, p.mtime_ns = size, mtime_ns
                p.due = now + self._wait(p)
                self._schedule(path, p)
        return out

    def deadline(self) -> float | None:
        """When the next file is due, if any."""
        while self._due and not self._current(self._due[0]):
            heapq.heappop(self._due)  # superseded by a later touch, or no longer pending
        return self._due[0][0] if self._due else None

    def _wait(self, p: Pending) -> float:
        wait = self.settle_seconds
        return wait * CLOSE_FALLBACK_FACTOR if p.wait_close else wait

    def _schedule(self, path: str, p: Pending) -> None:
        heapq.heappush(self._due, (p.due, next(self._seq), path))

    def _current(self, entry: tuple[float, int, str]) -> bool:
        p = self.pending.get(entry[2])
        return p is not None and p.due == entry[0]

    def _under(self, folder: str) -> list[str]:
        prefix = folder.rstrip("/") + "/"
        return [p for p in self.pending if p.startswith(prefix)]
