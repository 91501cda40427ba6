"""`watcherd scan`: bring the index up to date with folders as they are on disk.

Two passes: reconcile (walk the tree, stat only, merged with the index's rows in path
order: skip unchanged files, follow renames by inode, mark vanished files missing),
then fingerprint what is new or changed in worker processes and decide each file in
walk order through the shared Pipeline. A scan with more files to read than it holds
(HOLD) finds them by walking the tree again as it reads them (see Todo).
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import signal
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Protocol, TypeVar

from .actions import Mover
from .config import Config, Root
from .fingerprint import Fingerprint, crashed, reader, timed_out
from .index import Index
from .index_sql import IN_BATCH, KnownFile
from .models import ACTIVE, ERROR, MISSING
from .pathtext import to_db
from .pipeline import Outcome, Pipeline, log_outcome
from .scan_reads import ReadAhead, ordered_map
from .walk import Entry, entries_under

log = logging.getLogger("watcherd")

COMMIT_EVERY = 500
# New or changed files a scan plans in memory (~0.4 KB each); past this many it walks
# the tree again as it reads them (see Todo).
HOLD = 20_000
T = TypeVar("T")
R = TypeVar("R")


class Progress(Protocol):
    def start(self, total: int) -> None: ...
    def advance(self, n: int = 1) -> None: ...


@dataclass
class ScanStats:
    seen: int = 0
    new: int = 0
    changed: int = 0
    skipped: int = 0
    moved: int = 0
    missing: int = 0
    exact: int = 0
    near: int = 0
    similar: int = 0
    errors: int = 0
    quarantined: int = 0
    linked: int = 0
    seconds: float = 0.0
    interrupted: bool = False  # stopped by Ctrl-C: what was decided is kept
    error_paths: list[tuple[str, str]] = field(default_factory=list)
    move_failures: list[tuple[str, str]] = field(default_factory=list)

    def as_dict(self) -> dict:
        d = dict(self.__dict__)
        d.pop("error_paths")
        d["move_failures"] = [{"path": p, "reason": r} for p, r in d["move_failures"]]
        d["seconds"] = round(self.seconds, 3)
        return d


def _paired(
    entries: Iterator[Entry], known: Iterator[tuple[str, KnownFile]]
) -> Iterator[tuple[Entry | None, str, KnownFile | None]]:
    """(entry, path, known) for every path on disk or in the index, merging two streams
    that are both in path order: an entry with no row has known None, a row with no
    file on disk has entry None."""
    e, k = next(entries, None), next(known, None)
    while e is not None or k is not None:
        # compared as the index orders them (a name that is not UTF-8: see pathtext)
        ek = None if e is None else to_db(e.path)
        kk = None if k is None else to_db(k[0])
        if kk is None or (ek is not None and ek < kk):
            yield e, e.path, None
            e = next(entries, None)
        elif ek is None or kk < ek:
            yield None, k[0], k[1]
            k = next(known, None)
        else:
            yield e, e.path, k[1]
            e, k = next(entries, None), next(known, None)


def _unchanged(entry: Entry, known: KnownFile | None) -> bool:
    if known is None or known.status == MISSING:
        return False
    if known.size != entry.size or known.mtime_ns != entry.mtime_ns:
        return False
    # A file that could not be opened (permissions) is retried: fixing that does not
    # change the mtime.
    return not (known.status == ERROR and (known.error or "").startswith("cannot "))


class Interrupted(Exception):
    """A walk given up because its caller was asked to stop (`reconcile(stop=...)`)."""


class Todo:
    """The files a reconcile found to read, in path order, each with whether the index
    has no row for it yet (`new`: the pipeline then skips looking for one).

    Held as a list, unless there are more than the caller's `hold` (a first scan of a
    large archive): then the tree is walked and merged with the index again as the
    files are read, so that a million new files never sit in memory at once.
    """

    def __init__(
        self, held: list[tuple[Entry, bool]], count: int, again: Callable[[], Iterator] | None
    ) -> None:
        self._held, self._count, self._again = held, count, again

    def __len__(self) -> int:
        """How many files to read (as planned: the tree may change while they are read)."""
        return self._count

    def __iter__(self) -> Iterator[Entry]:
        return (e for e, _ in self.with_rows())

    def with_rows(self) -> Iterator[tuple[Entry, bool]]:
        return iter(self._held) if self._again is None else self._again()


def _pairs(
    paths: list[Path], config: Config, index: Index, errors: list[tuple[str, str]]
) -> Iterator[tuple[Entry | None, str, KnownFile | None]]:
    """Every path on disk or in the index under `paths`: the tree and the index's rows,
    both read as streams in path order and merged."""
    for path in paths:
        yield from _paired(entries_under(path, config, errors), index.known_in_order(str(path)))


def _to_read(
    paths: list[Path], config: Config, index: Index, rehash: bool
) -> Iterator[tuple[Entry, KnownFile | None]]:
    """A walk again: (entry, row) of each file that needs reading (what the first walk
    could not find, it recorded)."""
    for e, _, k in _pairs(paths, config, index, []):
        if e is not None and (rehash or not _unchanged(e, k)):
            yield e, k


def _checked(
    batch: list[tuple[Entry, KnownFile | None]], index: Index, rehash: bool
) -> Iterator[tuple[Entry, KnownFile | None]]:
    """The files of `batch` still to read once those the merge found no row for are
    looked up by path too: the two orders agree for every path SQLite can store, and
    this keeps it right if they ever do not."""
    unmatched = index.known_by_path(e.path for e, k in batch if k is None)
    for e, k in batch:
        k = k or unmatched.get(e.path)
        if rehash or not _unchanged(e, k):
            yield e, k


def _renamed(
    e: Entry,
    k: KnownFile | None,
    index: Index,
    vanished: dict[str, KnownFile],
    by_inode: dict[tuple, str],
) -> bool:
    """Whether `e`, a path with no row, is a vanished file under a new name (same inode,
    size and mtime); if so its row follows it, with its fingerprints and decisions."""
    old_path = by_inode.pop((e.inode, e.size, e.mtime_ns), None) if k is None else None
    f = index.get(vanished.pop(old_path).id) if old_path is not None else None
    if f is None:
        return False
    index.move_file(f, e.path, e.root)
    log.info("moved %s -> %s", old_path, e.path,
             extra={"event": "moved", "path": e.path, "from": old_path})  # fmt: skip
    return True


def reconcile(
    paths: list[Path],
    config: Config,
    index: Index,
    stats: ScanStats,
    rehash: bool = False,
    hold: int | None = None,
    stop: Callable[[], bool] | None = None,
) -> Todo:
    """Compare folders on disk with the index; returns the files that need reading.

    Unchanged files are skipped on size and mtime alone; a new path whose inode, size
    and mtime match a vanished file is that file renamed (its row follows it, no
    re-read); files no longer on disk are marked missing. Used by `scan` and by the
    daemon's catch-up at start and after lost events. With `hold`, more files to read
    than that are not held but walked again as they are read (see Todo).
    """
    # What is held is only what changed (to read, vanished, perhaps renamed), so a tree
    # of a million unchanged files costs no more memory than a small one.
    changed: list[tuple[Entry, KnownFile | None]] = []
    vanished: dict[str, KnownFile] = {}
    count = new = 0
    for n, (e, p, k) in enumerate(_pairs(paths, config, index, stats.error_paths)):
        if stop is not None and n % 1024 == 1023 and stop():
            raise Interrupted("stopped in the middle of a walk")
        if e is None:
            if k is not None and k.status in (ACTIVE, ERROR) and not Path(p).exists():
                vanished[p] = k
            continue
        stats.seen += 1
        if not rehash and _unchanged(e, k):
            stats.skipped += 1
            continue
        count += 1
        new += k is None or k.status == MISSING
        if hold is None or len(changed) < hold:
            changed.append((e, k))
        elif changed:
            changed = []  # past `hold`: the reading walks the tree again instead
    if hold is not None and count > hold:
        return _streamed(paths, config, index, stats, vanished, rehash, count, new)

    checked = list(_checked(changed, index, rehash))
    stats.skipped += len(changed) - len(checked)
    by_inode = {(k.inode, k.size, k.mtime_ns): p for p, k in vanished.items()}

    todo: list[tuple[Entry, bool]] = []
    for e, k in checked:
        if _renamed(e, k, index, vanished, by_inode):
            stats.moved += 1
            continue
        if k is None or k.status == MISSING:
            stats.new += 1
        else:
            stats.changed += 1
        todo.append((e, k is None))
    _mark_vanished(index, stats, vanished)
    return Todo(todo, len(todo), None)


def _mark_vanished(index: Index, stats: ScanStats, vanished: dict[str, KnownFile]) -> None:
    index.mark_missing_many(k.id for k in vanished.values())
    for p in vanished:
        stats.missing += 1
        log.info("missing %s", p, extra={"event": "missing", "path": p})


def _streamed(
    paths: list[Path],
    config: Config,
    index: Index,
    stats: ScanStats,
    vanished: dict[str, KnownFile],
    rehash: bool,
    count: int,
    new: int,
) -> Todo:
    """More files to read than a scan holds. Renames are settled first, by one more
    walk if anything vanished (a renamed file's new path may come before its old one),
    and vanished files marked missing, all before anything is read: a newcomer must
    never be paired with a file that is gone. The files are then found by a last walk
    as they are read, in batches checked against the index by path as well."""
    stats.new, stats.changed = new, count - new
    by_inode = {(k.inode, k.size, k.mtime_ns): p for p, k in vanished.items()}
    if by_inode:
        for e, k in _to_read(paths, config, index, rehash):
            if _renamed(e, k, index, vanished, by_inode):
                stats.moved += 1
                stats.new -= 1
                count -= 1
    _mark_vanished(index, stats, vanished)

    def again() -> Iterator[tuple[Entry, bool]]:
        rows = _to_read(paths, config, index, rehash)
        while batch := list(itertools.islice(rows, IN_BATCH)):
            yield from ((e, k is None) for e, k in _checked(batch, index, rehash))

    return Todo([], count, again)


def scan(
    paths: Iterable[Path],
    config: Config,
    index: Index,
    *,
    dry_run: bool = False,
    progress: Progress | None = None,
    on_outcome: Callable[[Outcome], None] | None = None,
    rehash: bool = False,
    ahead: ReadAhead | None = None,
    arrays: Path | None = None,
) -> ScanStats:
    """Index every included file under `paths`; returns what was found.

    With `dry_run` every decision is made exactly as it would be, then rolled back.
    With `rehash` unchanged files are read again too, so that fingerprints added by a
    newer watcherd (region hashes, thumbnails, dates) reach files indexed before it;
    their decisions stand. `ahead`: files already being read (see readahead), taken
    over if they are the first this scan reads. `arrays`: the daemon's saved matcher
    arrays, to start from (see Pipeline).
    """
    with ctrl_c_stops() as stop:
        return _scan(
            paths, config, index, dry_run=dry_run, progress=progress, on_outcome=on_outcome,
            rehash=rehash, ahead=ahead, arrays=arrays, stop=stop,
        )  # fmt: skip


def _scan(
    paths: Iterable[Path],
    config: Config,
    index: Index,
    *,
    dry_run: bool,
    progress: Progress | None,
    on_outcome: Callable[[Outcome], None] | None,
    rehash: bool,
    ahead: ReadAhead | None,
    arrays: Path | None,
    stop: Callable[[], bool],
) -> ScanStats:
    started = time.monotonic()
    stats = ScanStats()
    paths = [Path(p).expanduser().absolute() for p in paths]
    try:
        todo = reconcile(paths, config, index, stats, rehash=rehash, hold=HOLD, stop=stop)
    except Interrupted:
        index.rollback()
        stats.interrupted = True
        return _finish(stats, index, dry_run, started)

    if progress is not None:
        progress.start(len(todo))
    if not len(todo):
        # Nothing new or changed: no matcher arrays, which take a second or more per
        # 100,000 indexed photos to build from the index's rows.
        return _finish(stats, index, dry_run, started)
    extra = [Root(p) for p in paths if config.root_for(p) is None]
    mover = Mover(index, config, extra)
    pipeline = Pipeline(index, config, mover=mover, dry_run=dry_run, arrays=arrays)
    work = reader(config.max_pixels)
    sent: deque[tuple[Entry, bool]] = deque()  # handed to the workers, not yet decided

    def paths_to_read() -> Iterator[str]:
        for e, new in todo.with_rows():
            sent.append((e, new))
            yield e.path

    results = ordered_map(
        work,
        paths_to_read(),
        config.effective_workers(),
        on_crash=crashed,
        timeout=config.read_timeout,
        on_timeout=partial(timed_out, seconds=config.read_timeout),
        count=len(todo),
        ahead=ahead,
    )
    for done, fp in enumerate(results, 1):
        e, new = sent.popleft()  # results come in the order the paths went out
        assert e.path == fp.path, (e.path, fp.path)
        outcome = pipeline.process(fp, e.root, new=new)
        log_outcome(outcome)
        _count(stats, fp, outcome)
        if on_outcome is not None:
            on_outcome(outcome)
        if not dry_run and done % COMMIT_EVERY == 0:
            index.commit()
        if progress is not None:
            progress.advance()
        if stop():  # Ctrl-C: what is decided is kept, the next scan goes on from here
            stats.interrupted = True
            results.close()  # its workers are stopped
            break
    _finish(stats, index, dry_run, started)
    if not dry_run and not stats.interrupted:  # a daemon started next then loads them
        pipeline.save_arrays_if_behind()
    return stats


@contextlib.contextmanager
def ctrl_c_stops() -> Iterator[Callable[[], bool]]:
    """Ctrl-C (SIGINT) asks a scan to stop between two files, keeping every decision
    made so far, instead of unwinding in the middle of one and losing the batch not yet
    committed; a second Ctrl-C stops at once. Yields the question "asked to stop?".
    Outside the main thread (where no signal handler can be set) it is never asked."""
    asked = threading.Event()
    if threading.current_thread() is not threading.main_thread():
        yield asked.is_set
        return

    def handler(_signum, _frame) -> None:
        if asked.is_set():
            raise KeyboardInterrupt
        asked.set()

    previous = signal.signal(signal.SIGINT, handler)
    try:
        yield asked.is_set
    finally:
        signal.signal(signal.SIGINT, previous)


def _finish(stats: ScanStats, index: Index, dry_run: bool, started: float) -> ScanStats:
    if dry_run:
        index.rollback()
    else:
        index.commit()
    stats.seconds = time.monotonic() - started
    return stats


def _count(stats: ScanStats, fp: Fingerprint, outcome: Outcome) -> None:
    if outcome.error:
        stats.errors += 1
        stats.error_paths.append((fp.path, outcome.error))
    elif outcome.verdict is not None:
        kind = outcome.verdict.kind
        if kind == "exact":
            stats.exact += 1
        elif kind == "near":
            stats.near += 1
        else:
            stats.similar += 1
        if outcome.verdict.action in ("quarantined", "would quarantine"):
            stats.quarantined += 1
        elif outcome.verdict.action in ("linked", "would link"):
            stats.linked += 1
        elif outcome.verdict.move_failed:
            stats.move_failures.append((outcome.verdict.redundant_path, outcome.verdict.note))
