"""The daemon's read queue: files that are complete, read by worker processes, handed
back in the order they became ready.

At most two files per worker are in flight (a bounded queue: a burst of 10,000 files
is not 10,000 futures), one file per hand-over so each is decided as soon as it is
read. A worker that dies or a file still being read `read_timeout` after it became the
oldest in flight costs only that file: the reader pool shared with `scan`
(reader_pool) deals with both. Files over LARGE_FILE bytes go to a lane of their own
(big_lane), decided when done. Idle workers are let go after POOL_IDLE_SECONDS, to
keep an idle daemon small.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable

from .big_lane import LARGE_FILE, BigLane
from .config import Config
from .fingerprint import Fingerprint, crashed, reader, timed_out
from .pipeline import release_free_memory
from .reader_pool import ReaderPool
from .settling import stat_of

log = logging.getLogger("watcherd")

POOL_IDLE_SECONDS = 60.0  # idle decoding processes are let go

Decide = Callable[[Fingerprint, str], None]


class ReadQueue:
    def __init__(
        self,
        config: Config,
        decide: Decide,
        already_read: Callable[[str], bool],
        wake: Callable[[], None],
    ) -> None:
        """`decide(fingerprint, root)` takes each file read; `already_read(path)` says a
        file is indexed as it is now (nothing to read); `wake()` is called from a worker
        thread when a read finishes."""
        self.config = config  # the daemon sets it again on reload
        self._decide = decide
        self._already_read = already_read
        self.ready: deque[tuple[str, str]] = deque()  # (path, root) waiting for a worker
        self._ready_paths: set[str] = set()
        self.readers: ReaderPool[str, Fingerprint] = ReaderPool(
            reader(config.max_pixels),
            config.effective_workers(),
            on_crash=crashed,
            on_timeout=lambda path: timed_out(path, self.config.read_timeout),
            on_error=_failed,
            on_done=wake,
        )
        self.big = BigLane(lambda: reader(self.config.max_pixels), wake)
        self._idle_since = time.monotonic()
        self.burst_ended = False  # work drained since the memory was last given back

    def __len__(self) -> int:
        """Files waiting to be read or being read."""
        return len(self.ready) + len(self.readers) + len(self.big)

    @property
    def busy(self) -> bool:
        return bool(self.ready or len(self.readers))

    def add(self, path: str, root: str) -> None:
        """A complete file, to be read (once, however often it is added)."""
        if path in self.readers.items() or path in self.big.paths():
            return  # being read now; if it changed meanwhile, the decision sees it
        if path not in self._ready_paths:
            self._ready_paths.add(path)
            self.ready.append((path, root))

    def step(self, now: float) -> None:
        """Start reads, give up on a stuck one, take what is done, in that order."""
        self.dispatch()
        for fp, root in self.big.expired(now, self.config.read_timeout):
            self._decide(fp, root)
        self._collect(now)

    def dispatch(self) -> None:
        """Hand waiting files to workers, following the configuration as it is now."""
        readers = self.readers
        readers.func = reader(self.config.max_pixels)
        readers.workers = self.config.effective_workers()
        readers.timeout = self.config.read_timeout
        while self.ready and len(readers) < readers.workers * 2:
            path, root = self.ready.popleft()
            self._ready_paths.discard(path)
            if self._already_read(path):
                continue
            size = stat_of(path)[0]
            if size > LARGE_FILE:
                self.big.submit(path, root, size)
                continue
            readers.submit([path], tag=root)

    def _collect(self, now: float) -> None:
        for fp, root in self.big.done():
            self._decide(fp, root)
        done = self.readers.done(now)
        for root, fp in done:
            self._decide(fp, root)
        if done and not len(self.readers):
            self._idle_since = time.monotonic()  # the pool's idle time starts now
            self.burst_ended = True
        self.dispatch()

    def deadlines(self, now: float) -> list[float]:
        """When the queue next needs a look though nothing arrives: an idle pool to let
        go, a read that may be stuck."""
        out = []
        if self.readers.running and not len(self.readers):
            out.append(self._idle_since + POOL_IDLE_SECONDS)
        stuck = self.readers.deadline(now)
        if stuck is not None:
            out.append(stuck)
        big = self.big.deadline(now, self.config.read_timeout)
        if big is not None:
            out.append(big)
        return out

    def release_if_idle(self) -> bool:
        """As each burst of work ends, the memory of the main process: searching a large
        index makes temporaries of a few MB that glibc keeps once freed (about 30 MB at
        a million photos), so a daemon that waits holds only its index. And after
        POOL_IDLE_SECONDS without work, the worker processes: True when they went."""
        if self.burst_ended and not len(self.readers):
            self.burst_ended = False
            release_free_memory()
        self.big.release_if_idle(POOL_IDLE_SECONDS)
        idle = time.monotonic() - self._idle_since
        if self.readers.running and not len(self.readers) and idle >= POOL_IDLE_SECONDS:
            log.debug("idle: letting the decoding processes go")
            self.readers.release()
            return True
        return False

    def close(self) -> None:
        """Files still being read are not decided; the next start's catch-up finds them."""
        self.readers.close()
        self.big.close()


def _failed(path: str, exc: Exception) -> Fingerprint:
    """A bug in a worker must not stop the daemon: that file is an error."""
    fp = crashed(path)
    fp.error = f"cannot fingerprint: {type(exc).__name__}: {exc}"
    return fp
