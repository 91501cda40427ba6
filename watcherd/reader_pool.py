"""One reader pool for `scan` and the daemon: items read by worker processes, results
handed back in the order the items were submitted, a crash or a hang costing only the
item that causes it.

Written once so the two callers cannot drift apart: `scan_reads.ordered_map` (scan) is a
loop that keeps a window submitted and waits for the head; the daemon's
`read_queue.ReadQueue` submits files as they settle and takes what is done whenever
its loop wakes. Neither handles a worker's death or a stuck read itself.

- A worker that dies breaks the whole pool (concurrent.futures cannot tell which item
  killed it): every item then in flight is read again alone, each in a fresh process
  (workers.run_isolated), so only the culprit is lost; the next submission starts a new
  pool. With `give_up_after`, that many crashes in a row among the isolated items mean
  the workers cannot run at all (WorkersFailing), not that every file is bad.
- The oldest unfinished hand-over still being read `timeout` seconds per item after it
  became the oldest is stuck (a stalled mount, a pathological image): results come in
  order, so without this one such file would hold up every file behind it for ever.
  Its worker cannot be told apart from the others, so the pool is replaced: a lone
  stuck item is given up on (`on_timeout`), several are each read again alone (the
  culprit hangs again and is given up on), and the other hand-overs are submitted again
  to the new pool.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Generic, TypeVar

from .workers import WorkersFailing, end_pool, make_pool, run_isolated

log = logging.getLogger("watcherd")

T = TypeVar("T")
R = TypeVar("R")


def run_chunk(func: Callable[[T], R], items: list[T]) -> list[R]:
    """Several items in one task (see scan_reads.ordered_map for why)."""
    return [func(item) for item in items]


@dataclass
class _HandOver(Generic[T]):
    """Items given to the pool at once (one task: fewer turns of the pool's manager
    thread at the GIL), with what the submitter wants back beside their results."""

    items: list[T]
    tag: Any
    future: Future | None  # None: the pool was already broken when it was submitted
    since: float | None = field(default=None)  # when it became the oldest in flight


class ReaderPool(Generic[T, R]):
    def __init__(
        self,
        func: Callable[[T], R],
        workers: int,
        on_crash: Callable[[T], R],
        timeout: float | None = None,
        on_timeout: Callable[[T], R] | None = None,
        on_error: Callable[[T, Exception], R] | None = None,
        give_up_after: int | None = None,
        on_done: Callable[[], None] | None = None,
    ) -> None:
        """`func(item)` runs in a worker. `on_crash(item)`: the result of an item that
        killed its worker; `on_timeout(item)` of one that hung (on_crash if not given);
        `on_error(item, exc)` of one whose `func` raised (re-raised if not given).
        `timeout`: seconds per item, None for never. `on_done()` is called from the
        pool's thread as each hand-over finishes (to wake an event loop).

        `func`, `workers` and `timeout` may be set again (a reloaded configuration):
        they apply from the next hand-over or the next pool."""
        self.func = func
        self.workers = workers
        self.timeout = timeout
        self._on_crash = on_crash
        self._on_timeout = on_timeout or on_crash
        self._on_error = on_error
        self._give_up_after = give_up_after
        self._on_done = on_done
        self._pool: ProcessPoolExecutor | None = None
        self._broken = False
        self._flight: deque[_HandOver[T]] = deque()

    def adopt(self, pool: ProcessPoolExecutor, pending: Iterable[tuple[list[T], Future]]) -> None:
        """Take over a pool and the hand-overs already given to it (what was read
        ahead), as if they had been submitted here."""
        self._pool = pool
        for items, future in pending:
            self._flight.append(_HandOver(list(items), None, future))

    def __len__(self) -> int:
        """Items in flight."""
        return sum(len(h.items) for h in self._flight)

    @property
    def hand_overs(self) -> int:
        return len(self._flight)

    @property
    def running(self) -> bool:
        """Whether worker processes are there (idle or not)."""
        return self._pool is not None

    def items(self) -> Iterable[T]:
        """Every item in flight, in order."""
        return (i for h in self._flight for i in h.items)

    def submit(self, items: list[T], tag: Any = None) -> None:
        """Hand `items` to a worker at once; their results come back with `tag`."""
        if self._pool is None:
            self._pool = make_pool(self.workers)
        try:
            future = self._pool.submit(partial(run_chunk, self.func), items)
        except BrokenProcessPool:  # broken before any result showed it
            self._broken = True
            future = None
            if self._on_done is not None:
                self._on_done()  # no future will say it: the owner must look now
        if future is not None and self._on_done is not None:
            on_done = self._on_done
            future.add_done_callback(lambda _f: on_done())
        self._flight.append(_HandOver(items, tag, future))
        self._watch_head(time.monotonic())

    def done(self, now: float | None = None) -> list[tuple[Any, R]]:
        """(tag, result) of every item whose hand-over is done and all before it, in
        order, without waiting; a crash or a stuck head is dealt with on the way."""
        now = time.monotonic() if now is None else now
        out: list[tuple[Any, R]] = []
        while self._flight:
            head = self._flight[0]
            if self._broken or head.future is None:
                return out + self._recover()
            if not head.future.done():
                break
            results = self._results(head)
            if results is None:
                return out + self._recover()
            self._flight.popleft()
            out += [(head.tag, r) for r in results]
        return out + self._expire(now)

    def wait(self) -> list[tuple[Any, R]]:
        """(tag, result) of the oldest hand-over, waiting for it: at most until it is
        due to be given up on."""
        while self._flight:
            head = self._flight[0]
            if self._broken or head.future is None:
                return self._recover()
            deadline = self.deadline(time.monotonic())
            wait_for = None if deadline is None else max(0.0, deadline - time.monotonic())
            try:
                head.future.result(wait_for)
            except FutureTimeout:
                expired = self._expire(time.monotonic())
                if expired:
                    return expired
                continue
            except Exception:  # its outcome is read below, as done() reads it
                pass
            results = self._results(head)
            if results is None:
                return self._recover()
            self._flight.popleft()
            return [(head.tag, r) for r in results]
        return []

    def _results(self, head: _HandOver[T]) -> list[R] | None:
        """A finished hand-over's results; None when the pool broke under it."""
        try:
            return head.future.result()
        except BrokenProcessPool:
            return None
        except Exception as exc:  # the function itself failed, in the worker
            if self._on_error is None:
                raise
            return [self._on_error(item, exc) for item in head.items]

    def deadline(self, now: float) -> float | None:
        """When the oldest hand-over is due to be given up on, if it is being read."""
        head = self._watch_head(now)
        if head is None or self.timeout is None or head.future is None or head.future.done():
            return None
        return head.since + self.timeout * len(head.items)

    def _watch_head(self, now: float) -> _HandOver[T] | None:
        """The oldest hand-over, its clock started if it only just became the oldest:
        never earlier than a worker can have started on it."""
        head = self._flight[0] if self._flight else None
        if head is not None and head.since is None:
            head.since = now
        return head

    def _expire(self, now: float) -> list[tuple[Any, R]]:
        deadline = self.deadline(now)
        if deadline is None or now < deadline:
            return []
        head = self._flight.popleft()
        others = list(self._flight)
        self._flight.clear()
        log.warning("a decoding process is stuck; isolating the files it was reading")
        self._end(grace=0)
        if len(head.items) == 1:
            out = [(head.tag, self._on_timeout(head.items[0]))]
        else:
            out = self._isolated([head])
        for h in others:
            self.submit(h.items, h.tag)
        return out

    def _recover(self) -> list[tuple[Any, R]]:
        """A worker died: every item in flight read again alone."""
        log.warning("a decoding process died; isolating the files it was reading")
        self._end()
        stranded = list(self._flight)
        self._flight.clear()
        return self._isolated(stranded)

    def _isolated(self, stranded: list[_HandOver[T]]) -> list[tuple[Any, R]]:
        out, crashes = [], 0
        count = sum(len(h.items) for h in stranded)
        for h in stranded:
            for item in h.items:
                result, failed = self._alone(item)
                crashes = crashes + 1 if failed else 0
                limit = self._give_up_after
                if limit is not None and crashes >= limit and count >= limit:
                    raise WorkersFailing("decoding processes die or hang on every file")
                out.append((h.tag, result))
        return out

    def _alone(self, item: T) -> tuple[R, bool]:
        try:
            return run_isolated(self.func, item, self._on_crash, self.timeout, self._on_timeout)
        except Exception as exc:  # the function itself failed, in the worker
            if self._on_error is None:
                raise
            return self._on_error(item, exc), False

    def _end(self, grace: float = 2.0) -> None:
        if self._pool is not None:
            end_pool(self._pool, grace=grace)
        self._pool = None
        self._broken = False

    def release(self) -> None:
        """Let idle workers go (started again by the next submission)."""
        if self._pool is not None and not self._flight:
            self._pool.shutdown(wait=False)
            self._pool = None

    def close(self) -> None:
        """Stop now; what was in flight is not read."""
        self._flight.clear()
        self._end()
