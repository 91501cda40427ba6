"""The daemon's read queue: files that are complete, read by worker processes, handed
back in the order they became ready.

At most two files per worker are in flight (a bounded queue: a burst of 10,000 files
is not 10,000 futures). A worker that dies costs only the file it was reading: the
stranded files are read again one by one, each in a process of its own. A file still
being read `read_timeout` after it became the oldest in flight is an error: the
workers are replaced (the stuck one cannot be told apart) and the others read again.
Files over LARGE_FILE bytes go to a lane of their own (big_lane), decided when done.
Idle workers are let go after POOL_IDLE_SECONDS, to keep an idle daemon small.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from functools import partial

from .big_lane import LARGE_FILE, BigLane
from .config import Config
from .fingerprint import Fingerprint, crashed, reader, timed_out
from .pipeline import release_free_memory
from .settling import stat_of
from .workers import end_pool, make_pool, run_isolated

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
        self._wake = wake
        self.ready: deque[tuple[str, str]] = deque()  # (path, root) waiting for a worker
        self._ready_paths: set[str] = set()
        self.inflight: deque[tuple[str, str, Future]] = deque()
        self._head: Future | None = None  # the oldest file being read, and since when
        self._head_since = 0.0
        self.pool: ProcessPoolExecutor | None = None
        self.big = BigLane(lambda: reader(self.config.max_pixels), wake)
        self._idle_since = time.monotonic()
        self.burst_ended = False  # work drained since the memory was last given back

    def __len__(self) -> int:
        """Files waiting to be read or being read."""
        return len(self.ready) + len(self.inflight) + len(self.big)

    @property
    def busy(self) -> bool:
        return bool(self.ready or self.inflight)

    def add(self, path: str, root: str) -> None:
        """A complete file, to be read (once, however often it is added)."""
        if any(path == fpath for fpath, _, _ in self.inflight) or path in self.big.paths():
            return  # being read now; if it changed meanwhile, the decision sees it
        if path not in self._ready_paths:
            self._ready_paths.add(path)
            self.ready.append((path, root))

    def step(self, now: float) -> None:
        """Start reads, give up on a stuck one, take what is done, in that order."""
        self.dispatch()
        self._expire_stuck(now)
        for fp, root in self.big.expired(now, self.config.read_timeout):
            self._decide(fp, root)
        self._collect()

    def dispatch(self) -> None:
        limit = self.config.effective_workers() * 2
        while self.ready and len(self.inflight) < limit:
            path, root = self.ready.popleft()
            self._ready_paths.discard(path)
            if self._already_read(path):
                continue
            size = stat_of(path)[0]
            if size > LARGE_FILE:
                self.big.submit(path, root, size)
                continue
            if self.pool is None:
                self.pool = make_pool(self.config.effective_workers())
            try:
                fut = self.pool.submit(reader(self.config.max_pixels), path)
            except BrokenProcessPool:
                self._again([(path, root)])
                self._recover_pool()
                continue
            fut.add_done_callback(lambda _f: self._wake())
            self.inflight.append((path, root, fut))

    def _collect(self) -> None:
        for fp, root in self.big.done():
            self._decide(fp, root)
        collected = False
        while self.inflight and self.inflight[0][2].done():
            collected = True
            path, root, fut = self.inflight.popleft()
            try:
                fp = fut.result()
            except BrokenProcessPool:
                self.inflight.appendleft((path, root, fut))
                self._recover_pool()
                return
            except Exception as exc:  # a bug in a worker must not stop the daemon
                fp = crashed(path)
                fp.error = f"cannot fingerprint: {type(exc).__name__}: {exc}"
            self._decide(fp, root)
        if collected and not self.inflight:
            self._idle_since = time.monotonic()  # the pool's idle time starts now
            self.burst_ended = True
        self.dispatch()

    def _again(self, files: list[tuple[str, str]]) -> None:
        """Files to read again first, in their order."""
        for path, root in reversed(files):
            self.ready.appendleft((path, root))
            self._ready_paths.add(path)

    def _recover_pool(self) -> None:
        """A worker died: re-read each stranded file alone, so only the culprit is lost."""
        log.warning("a decoding process died; isolating the files it was reading")
        if self.pool is not None:
            end_pool(self.pool)
        self.pool = None
        stranded = list(self.inflight)
        self.inflight.clear()
        work = reader(self.config.max_pixels)
        limit = self.config.read_timeout
        for path, root, _ in stranded:
            fp, _ = run_isolated(work, path, crashed, limit, partial(timed_out, seconds=limit))
            self._decide(fp, root)

    def _watch_head(self, now: float) -> None:
        head = self.inflight[0][2] if self.inflight else None
        if head is not self._head:
            self._head, self._head_since = head, now

    def _expire_stuck(self, now: float) -> None:
        """The oldest file still being read after `read_timeout`: its worker is stuck (a
        stalled mount, a pathological image). Results are taken in arrival order, so
        without this one such file would hold up every file after it for ever. The
        clock starts when a file becomes the oldest in flight, never earlier than its
        worker can have started on it."""
        self._watch_head(now)
        if not self.inflight or self.inflight[0][2].done():
            return
        if now - self._head_since < self.config.read_timeout:
            return
        path, root, _ = self.inflight.popleft()
        others = [(p, r) for p, r, _ in self.inflight]
        self.inflight.clear()
        if self.pool is not None:
            end_pool(self.pool, grace=0)
            self.pool = None
        self._again(others)
        self._decide(timed_out(path, self.config.read_timeout), root)
        self.dispatch()

    def deadlines(self, now: float) -> list[float]:
        """When the queue next needs a look though nothing arrives: an idle pool to let
        go, a read that may be stuck."""
        out = []
        if self.pool is not None and not self.inflight:
            out.append(self._idle_since + POOL_IDLE_SECONDS)
        if self.inflight:
            self._watch_head(now)
            out.append(self._head_since + self.config.read_timeout)
        big = self.big.deadline(now, self.config.read_timeout)
        if big is not None:
            out.append(big)
        return out

    def release_if_idle(self) -> None:
        """As each burst of work ends, the memory of the main process: searching a large
        index makes temporaries of a few MB that glibc keeps once freed (about 30 MB at
        a million photos), so a daemon that waits holds only its index. And after
        POOL_IDLE_SECONDS without work, the worker processes."""
        if self.burst_ended and not self.inflight:
            self.burst_ended = False
            release_free_memory()
        self.big.release_if_idle(POOL_IDLE_SECONDS)
        idle = time.monotonic() - self._idle_since
        if self.pool is not None and not self.inflight and idle >= POOL_IDLE_SECONDS:
            log.debug("idle: letting the decoding processes go")
            self.pool.shutdown(wait=False)
            self.pool = None

    def close(self) -> None:
        """Files still being read are not decided; the next start's catch-up finds them."""
        if self.pool is not None:
            end_pool(self.pool)
            self.pool = None
        self.big.close()
