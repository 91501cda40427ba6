"""Worker processes for decoding: a pool, an ordered bounded map, crash isolation.

Decoding untrusted images runs outside the process that owns the index, so a decoder
that crashes or leaks costs one worker, never the scan or the daemon.
"""

from __future__ import annotations

import itertools
import logging
import multiprocessing
import os
import select
import signal
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from concurrent.futures.process import BrokenProcessPool
from functools import partial
from typing import TypeVar

log = logging.getLogger("watcherd")

T = TypeVar("T")
R = TypeVar("R")


def make_pool(workers: int) -> ProcessPoolExecutor:
    """A pool started through a forkserver: safe beside threads (watchdog's observers).

    The daemon preloads nothing into the forkserver, which lives as long as it does: it
    stays a few MB, and each worker imports the decoders once when it starts. `scan`
    preloads them (start_forkserver): it is short-lived and wants its workers at once.
    """
    ctx = multiprocessing.get_context("forkserver")
    return ProcessPoolExecutor(
        max_workers=workers,
        mp_context=ctx,
        initializer=_init_worker,
        initargs=(os.getpid(),),
    )


def start_forkserver(preload: list[str]) -> None:
    """Start the process workers are forked from now, with `preload` imported in it, for
    a command that is about to read files: it gets ready while the command imports the
    rest of what it needs, and each worker then starts with its modules loaded instead
    of importing them first. Only short-lived commands do this; the daemon's forkserver,
    which lives as long as it does, stays small (see make_pool)."""
    import multiprocessing.forkserver

    multiprocessing.get_context("forkserver").set_forkserver_preload(["__main__", *preload])
    multiprocessing.forkserver.ensure_running()


def _init_worker(owner: int) -> None:
    """In a worker: Ctrl-C is the owner's to act on. A terminal sends SIGINT to every
    process of its foreground group, and a worker would die of it with a
    KeyboardInterrupt traceback on the user's screen; the owner stops its workers
    itself (end_pool)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _exit_with_owner(owner)
    one_blas_thread()


def one_blas_thread() -> None:
    """Keep numpy's BLAS to one thread in this process. Workers already fill every core,
    one each; the matrix products of fingerprinting (resample) are big enough that
    OpenBLAS would split each over all cores, and its threads spin while they wait, so
    two workers would each take CPU from the other."""
    import numpy  # noqa: F401  (threadpoolctl finds BLAS among the loaded libraries)
    from threadpoolctl import threadpool_limits

    threadpool_limits(1, user_api="blas")


def _exit_with_owner(owner: int) -> None:
    """In a worker: exit as soon as the process that owns the pool is gone.

    A worker's parent is the forkserver, not the daemon, and it holds its own copies of
    the pool's pipes, so it would wait forever for work if the daemon were killed with
    SIGKILL. A thread blocked on a pidfd of the owner wakes exactly when it exits.
    """
    try:
        pidfd = os.pidfd_open(owner)
    except (AttributeError, OSError):  # very old kernel or Python: fall back to polling
        pidfd = None

    def watch() -> None:
        if pidfd is not None:
            select.select([pidfd], [], [])
        else:
            while _alive(owner):
                time.sleep(2)
        os._exit(0)

    threading.Thread(target=watch, name="owner-watch", daemon=True).start()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def end_pool(pool: ProcessPoolExecutor, grace: float = 2.0) -> None:
    """Stop a pool now, without waiting for the files its workers are reading.

    `shutdown(wait=False)` alone is not enough: the interpreter's exit still joins the
    pool's manager thread, which waits for every running file, so one decoder stuck on
    a file (a stalled network mount, a pathological image) would keep the daemon from
    ever stopping. Idle workers get `grace` seconds to exit on their own; then every
    worker still alive is killed. All of them, not just the busy one: a worker killed
    while holding the pool's shared queue lock would leave the others waiting on it.
    What they were reading is simply not indexed; the next start's catch-up reads it.
    """
    # The executor keeps no public list of its processes; without this private one,
    # every child of the caller is taken for a worker (true of watcherd's processes).
    workers = getattr(pool, "_processes", None)
    procs = list(workers.values()) if workers is not None else multiprocessing.active_children()
    pool.shutdown(wait=False, cancel_futures=True)
    deadline = time.monotonic() + grace
    for proc in procs:
        proc.join(max(0.0, deadline - time.monotonic()))
    stuck = [proc for proc in procs if proc.is_alive()]
    for proc in stuck:
        proc.kill()
    for proc in stuck:
        proc.join(5)
    if stuck:
        log.warning("stopped %d decoding process(es) in the middle of a file", len(stuck))


class WorkersFailing(RuntimeError):
    """Worker processes die (or hang) whatever they are given: the environment, not a file."""


def run_isolated(
    func: Callable[[T], R],
    item: T,
    on_crash: Callable[[T], R],
    timeout: float | None = None,
    on_timeout: Callable[[T], R] | None = None,
) -> tuple[R, bool]:
    """Run one item alone in a fresh worker, so a crash (or a hang past `timeout`
    seconds) points at that item: (its result, whether the worker failed)."""
    pool = make_pool(1)
    try:
        return pool.submit(func, item).result(timeout), False
    except BrokenProcessPool:
        return on_crash(item), True
    except FutureTimeout:
        return (on_timeout or on_crash)(item), True
    finally:
        end_pool(pool)


def _run_chunk(func: Callable[[T], R], items: list[T]) -> list[R]:
    return [func(item) for item in items]


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
            job = partial(_run_chunk, self.func)
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
    phone pictures 2% quicker than 4, the camera set no slower). A worker that dies (a decoder
    crashing on a malicious file) breaks the whole pool; the items then in flight are
    re-run one by one in fresh workers, the one that crashes again gets
    `on_crash(item)` as its result, and the scan goes on with a new pool. A chunk
    still unfinished `timeout` seconds per item after the scan started waiting for it
    is handled the same way: its worker is stuck (a stalled mount), and the item that
    hangs again alone gets `on_timeout(item)`.

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
    window = window or workers * 3
    source, pool, pending = _resumed(iter(items), taken)
    chunks = _chunks(source, chunk)
    pool = pool or make_pool(workers)
    job = partial(_run_chunk, func)

    try:
        while True:
            try:
                _fill(pool, job, chunks, pending, window)
                if not pending:
                    return
                fut = pending[0][1]
                if fut is None:
                    raise BrokenProcessPool("pool broken")
                results = fut.result(None if timeout is None else timeout * len(pending[0][0]))
            except (BrokenProcessPool, FutureTimeout) as exc:
                how = "is stuck" if isinstance(exc, FutureTimeout) else "died"
                log.warning("a decoding process %s; isolating the files it was reading", how)
                end_pool(pool)
                stranded = [i for part, _ in pending for i in part]
                pending.clear()
                yield from _isolated(func, stranded, on_crash, timeout, on_timeout)
                pool = make_pool(workers)
                continue
            pending.popleft()
            yield from results
    finally:
        end_pool(pool)  # also on Ctrl-C: the workers ignore SIGINT, the scan stops them


def _fill(pool, job, chunks: Iterator, pending: deque, window: int) -> None:
    """Chunks handed to the pool until `window` are in flight or the items run out."""
    while len(pending) < window:
        part = next(chunks, _END)
        if part is _END:
            return
        try:
            fut = pool.submit(job, part)
        except BrokenProcessPool:  # the pool broke before any result showed it
            pending.append((part, None))
            raise
        pending.append((part, fut))


def _resumed(source: Iterator[T], taken) -> tuple[Iterator[T], object, deque]:
    """(items still to hand out, pool, chunks in flight): what was read ahead is taken
    over when the items begin with it, in the same order; otherwise its pool is ended
    and every item is read as usual."""
    if taken is None:
        return source, None, deque()
    first = list(itertools.islice(source, len(taken[0])))
    if first == taken[0]:
        log.debug("reading on from %d files read ahead", len(first))
        return source, taken[1], taken[2]
    end_pool(taken[1])
    log.debug("dropped what was read ahead: other files come first")
    return itertools.chain(first, source), None, deque()


def _isolated(
    func: Callable[[T], R],
    stranded: list[T],
    on_crash: Callable[[T], R],
    timeout: float | None,
    on_timeout: Callable[[T], R] | None,
) -> Iterator[R]:
    """The items a broken or stuck pool held, each read again in a process of its own,
    so that only the culprit is lost. Three crashes in a row: the workers cannot run at
    all (WorkersFailing), rather than one process started per file for ever."""
    crashes = 0
    for i in stranded:
        result, crashed = run_isolated(func, i, on_crash, timeout, on_timeout)
        crashes = crashes + 1 if crashed else 0
        if crashes >= 3 and len(stranded) >= 3:
            raise WorkersFailing("decoding processes die or hang on every file")
        yield result


_END = object()
