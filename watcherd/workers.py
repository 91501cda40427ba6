"""Worker processes for decoding: starting and stopping a pool, reading one item alone.

Decoding untrusted images runs outside the process that owns the index, so a decoder
that crashes or leaks costs one worker, never the scan or the daemon.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import select
import signal
import threading
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from concurrent.futures.process import BrokenProcessPool
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
