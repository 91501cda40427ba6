"""How `scan` reads: files in order, a window ahead of the results, taking over what
was read ahead while the command started (watcherd.readahead).

Crash isolation and hang expiry are the reader pool's (watcherd.reader_pool), shared
with the daemon; this module only keeps the window full and hands results out in order.
"""

from __future__ import annotations

import itertools
import logging
import threading
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from functools import partial
from typing import TypeVar

from .reader_pool import ReaderPool, run_chunk
from .workers import end_pool, make_pool

log = logging.getLogger("watcherd")

T = TypeVar("T")
R = TypeVar("R")


def _chunks(items: Iterable[T], chunk: int) -> Iterator[list[T]]:
    """`items` a few at a time, in order (see ordered_map for why not one by one)."""
    source = iter(items)
    return iter(lambda: list(itertools.islice(source, chunk)), [])


def _pool_size(workers: int, count: int, chunk: int) -> int:
    """Always at least one worker process, however few the items: a decoder that
    crashes or hangs on the one file of a small scan must not take the scan with it. No
    more workers than there are chunks to read."""
    return max(1, min(workers, -(-count // chunk)))


class ReadAhead:
    """Items handed to workers before their caller knows it wants them, for
    `ordered_map` to take over (see watcherd.readahead).

    Started from a thread: starting a worker waits for the forkserver to have imported
    what it preloads, and the caller has its own importing to do meanwhile. Anything
    that goes wrong here only means nothing was read ahead.
    """

    def __init__(
        self, func: Callable[[T], R], first: Callable[[], list[T]], workers: int, chunk: int = 4
    ) -> None:
        self.func = func
        self.items: list[T] = []
        self._pool: ProcessPoolExecutor | None = None
        self._pending: deque[tuple[list[T], Future | None]] = deque()
        self._thread = threading.Thread(
            target=self._start, args=(first, workers, chunk), name="read-ahead", daemon=True
        )
        self._thread.start()

    def _start(self, first: Callable[[], list[T]], workers: int, chunk: int) -> None:
        try:
            items = first()
            if not items:
                return
            self._pool = make_pool(_pool_size(workers, len(items), chunk))
            job = partial(run_chunk, self.func)
            for part in _chunks(items, chunk):
                self._pending.append((part, self._pool.submit(job, part)))
            self.items = items
        except Exception as exc:  # a walk or a pool that fails: read as usual instead
            log.debug("nothing read ahead: %s", exc)

    def take(self) -> tuple[list[T], ProcessPoolExecutor, deque] | None:
        """What was handed out (items, their pool, (chunk, future) in order), once: the
        taker ends the pool."""
        self._thread.join()
        if self._pool is None or not self.items:
            self.close()
            return None
        taken = (self.items, self._pool, self._pending)
        self._pool, self.items = None, []
        return taken

    def close(self) -> None:
        """Stop reading ahead, unless taken over."""
        self._thread.join()
        if self._pool is not None:
            end_pool(self._pool)
            self._pool = None


def ordered_map(
    func: Callable[[T], R],
    items: Iterable[T],
    workers: int,
    on_crash: Callable[[T], R],
    window: int | None = None,
    chunk: int = 8,
    timeout: float | None = None,
    on_timeout: Callable[[T], R] | None = None,
    count: int | None = None,
    ahead: ReadAhead | None = None,
) -> Iterator[R]:
    """map() over worker processes, results in input order, at most `window` chunks of
    `chunk` items in flight (fewer items per chunk when there are few items, so that
    every worker gets some).

    Bounded so that memory stays flat however many files a scan meets. Items go to the
    workers a few at a time: each hand-over costs the pool's manager thread a turn at
    the GIL, which the caller's own work (SQLite, matching) holds most of the time, so
    one item per hand-over left the workers waiting (8 per hand-over scans a thousand
    phone pictures 2% quicker than 4, the camera set no slower). A worker that dies or
    hangs costs only its item (`on_crash(item)`, `on_timeout(item)` as its result: see
    ReaderPool, `timeout` seconds per item); three crashes in a row among the items
    read again alone stop the scan (WorkersFailing): the workers cannot run at all.

    `items` may be a generator (a scan too large to hold its list walks its tree as it
    reads): it is consumed in order, a window ahead of the results; `count`, how many
    it will give about, sizes the pool (a list's own length when not given).

    `ahead`: items already handed to workers (by `ahead.func`, which must compute what
    `func` does). Their pool and results are taken over when `items` begins with them,
    in the same order; otherwise that pool is ended and the items are read as usual.
    """
    taken = ahead.take() if ahead is not None else None
    if count is None:
        items = list(items)
        count = len(items)
    if not count:
        if taken is not None:
            end_pool(taken[1])
        return
    chunk = max(1, min(chunk, count // (2 * max(1, workers))))
    workers = _pool_size(workers, count, chunk)
    readers = ReaderPool(func, workers, on_crash, timeout, on_timeout, give_up_after=3)
    source = _resumed(iter(items), taken, readers)
    chunks = _chunks(source, chunk)
    window = window or workers * 3
    try:
        while True:
            while readers.hand_overs < window and (part := next(chunks, None)) is not None:
                readers.submit(part)
            if not readers.hand_overs:
                return
            for _, result in readers.wait():
                yield result
    finally:
        readers.close()  # also on Ctrl-C: the workers ignore SIGINT, the scan stops them


def _resumed(source: Iterator[T], taken, readers: ReaderPool) -> Iterator[T]:
    """Items still to hand out: what was read ahead is taken over by `readers` when the
    items begin with it, in the same order; otherwise its pool is ended and every item
    is read as usual."""
    if taken is None:
        return source
    first = list(itertools.islice(source, len(taken[0])))
    if first == taken[0]:
        log.debug("reading on from %d files read ahead", len(first))
        readers.adopt(taken[1], taken[2])
        return source
    end_pool(taken[1])
    log.debug("dropped what was read ahead: other files come first")
    return itertools.chain(first, source)
