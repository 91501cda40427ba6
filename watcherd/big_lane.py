"""The daemon's lane for large files: read by a process of their own, decided whenever
they are done.

The daemon decides ordinary files in the order they arrived, so one file that takes a
long time to read holds up every file behind it. A photo takes milliseconds; a 10 GB
video takes tens of seconds only to hash. Files above LARGE_FILE bytes therefore go to
a pool of one process, apart from the photos, and their results are taken as soon as
each is done, in no order relative to the photos. A crash costs the file being read
(the oldest unfinished one: the lone worker takes them in turn); a file still being
read after `read_timeout` plus a second per LARGE_RATE bytes is an error, as a stuck
photo is.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass

from .fingerprint import Fingerprint, crashed, timed_out
from .workers import end_pool, make_pool

LARGE_FILE = 64 * 1024 * 1024  # bytes: larger files take the lane
LARGE_RATE = 50 * 1024 * 1024  # bytes a second a slow disk still gives (the time limit)


@dataclass
class _Reading:
    path: str
    root: str
    size: int
    future: Future
    since: float | None = None  # when it became the oldest: its worker's clock starts


class BigLane:
    def __init__(self, read: Callable[[], Callable[[str], Fingerprint]], on_done: Callable) -> None:
        """`read()` gives the worker function (it follows the configuration); `on_done`
        is called from the pool's thread when a file is done (to wake the daemon)."""
        self._read = read
        self._on_done = on_done
        self._pool: ProcessPoolExecutor | None = None
        self._reading: deque[_Reading] = deque()
        self.idle_since = time.monotonic()

    def __len__(self) -> int:
        return len(self._reading)

    def paths(self) -> list[str]:
        return [r.path for r in self._reading]

    def submit(self, path: str, root: str, size: int) -> None:
        if self._pool is None:
            self._pool = make_pool(1)
        future = self._pool.submit(self._read(), path)
        future.add_done_callback(lambda _f: self._on_done())
        self._reading.append(_Reading(path, root, size, future))

    def done(self) -> list[tuple[Fingerprint, str]]:
        """The files read since the last call, each with its root, in any order. When
        the lone worker died, the oldest file it had not finished killed it: that one
        is an error, the others are read again by a new worker."""
        out, broken = [], []
        for r in [r for r in self._reading if r.future.done()]:
            self._reading.remove(r)
            try:
                fp = r.future.result()
            except BrokenProcessPool:
                broken.append(r)
                continue
            except Exception as exc:  # a bug in a worker must not stop the daemon
                fp = crashed(r.path)
                fp.error = f"cannot fingerprint: {type(exc).__name__}: {exc}"
            out.append((fp, r.root))
        if broken:
            self._end()
            stranded = broken + [r for r in self._reading if not r.future.done()]
            self._reading = deque(r for r in self._reading if r.future.done())
            culprit, *others = stranded
            out.append((crashed(culprit.path), culprit.root))
            for r in others:
                self.submit(r.path, r.root, r.size)
        if out and not self._reading:
            self.idle_since = time.monotonic()
        return out

    def _limit(self, r: _Reading, read_timeout: float) -> float:
        return read_timeout + r.size / LARGE_RATE

    def deadline(self, now: float, read_timeout: float) -> float | None:
        """When the oldest file in the lane is due to be given up on, if any."""
        head = self._head(now)
        return None if head is None else head.since + self._limit(head, read_timeout)

    def _head(self, now: float) -> _Reading | None:
        head = next((r for r in self._reading if not r.future.done()), None)
        if head is not None and head.since is None:
            head.since = now
        return head

    def expired(self, now: float, read_timeout: float) -> list[tuple[Fingerprint, str]]:
        """A file still being read past its limit: an error; its worker is replaced and
        the files behind it are read again."""
        head = self._head(now)
        if head is None or now - head.since < self._limit(head, read_timeout):
            return []
        self._reading.remove(head)
        others = [r for r in self._reading if not r.future.done()]
        for r in others:
            self._reading.remove(r)
        self._end(grace=0)
        for r in others:
            self.submit(r.path, r.root, r.size)
        return [(timed_out(head.path, self._limit(head, read_timeout)), head.root)]

    def release_if_idle(self, idle_seconds: float) -> None:
        idle = time.monotonic() - self.idle_since
        if self._pool is not None and not self._reading and idle >= idle_seconds:
            self._end()

    def _end(self, grace: float = 2.0) -> None:
        if self._pool is not None:
            end_pool(self._pool, grace=grace)
            self._pool = None

    def close(self) -> None:
        """Stop now: what was being read is read again at the next start's catch-up."""
        self._reading.clear()
        self._end()
