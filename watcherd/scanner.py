"""`watcherd scan`: bring the index up to date with folders as they are on disk.

Two passes: reconcile (walk the tree, stat only, merged with the index's rows in path
order: skip unchanged files, follow renames by inode, mark vanished files missing),
then fingerprint what is new or changed in worker processes and decide each file in
walk order through the shared Pipeline.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Protocol, TypeVar

from .actions import Mover
from .config import Config, Root
from .fingerprint import Fingerprint, crashed, reader, timed_out
from .index import Index, KnownFile
from .models import ACTIVE, ERROR, MISSING
from .pipeline import Outcome, Pipeline, log_outcome
from .workers import ordered_map

log = logging.getLogger("watcherd")

COMMIT_EVERY = 500
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
    seconds: float = 0.0
    error_paths: list[tuple[str, str]] = field(default_factory=list)

    def as_dict(self) -> dict:
        d = dict(self.__dict__)
        d.pop("error_paths")
        d["seconds"] = round(self.seconds, 3)
        return d


@dataclass(frozen=True, slots=True)
class Entry:
    path: str
    root: str
    size: int
    mtime_ns: int
    inode: int


def _in_path_order(entry: os.DirEntry) -> str:
    """A folder's entries sort as their full paths do, byte for byte (the index's order):
    a subfolder's files come where `name/` sorts, not where `name` does, so "a b.jpg"
    and "a.jpg" come before everything in "a/"."""
    try:
        return entry.name + "/" if entry.is_dir(follow_symlinks=False) else entry.name
    except OSError:
        return entry.name


def _walk(folder: str, config: Config, errors: list[tuple[str, str]]) -> Iterator[os.DirEntry]:
    """Included regular files below `folder`, in path order; symlinks are not followed.

    A symlink is not clutter (it takes no space) and following links risks loops, so
    links to files and folders are both skipped.
    """
    try:
        with os.scandir(folder) as it:
            entries = sorted(it, key=_in_path_order)
    except OSError as exc:
        errors.append((folder, f"cannot list folder: {exc.strerror or exc}"))
        return
    for entry in entries:
        try:
            if entry.is_symlink():
                continue
            if entry.is_dir(follow_symlinks=False):
                if not config.is_included_dir(entry.name) or config.in_quarantine(entry.path):
                    continue
                yield from _walk(entry.path, config, errors)
            elif entry.is_file(follow_symlinks=False) and config.is_included(entry.name):
                yield entry
        except OSError as exc:
            errors.append((entry.path, f"cannot stat: {exc.strerror or exc}"))


def entries_under(path: Path, config: Config, errors: list[tuple[str, str]]) -> Iterator[Entry]:
    """Stat every included file under `path` (or `path` itself), in path order, each
    tagged with its root. A generator: a tree of a million files is never held whole."""
    root_cfg = config.root_for(path)
    if path.is_file():
        if config.is_included(path):
            st = path.stat()
            root = str(root_cfg.path if root_cfg else path.parent)
            yield Entry(str(path), root, st.st_size, st.st_mtime_ns, st.st_ino)
        return
    root = str(root_cfg.path if root_cfg else path)
    for entry in _walk(str(path), config, errors):
        try:
            st = entry.stat(follow_symlinks=False)
        except OSError as exc:
            errors.append((entry.path, f"cannot stat: {exc.strerror or exc}"))
            continue
        yield Entry(entry.path, root, st.st_size, st.st_mtime_ns, st.st_ino)


def _paired(
    entries: Iterator[Entry], known: Iterator[tuple[str, KnownFile]]
) -> Iterator[tuple[Entry | None, str, KnownFile | None]]:
    """(entry, path, known) for every path on disk or in the index, merging two streams
    that are both in path order: an entry with no row has known None, a row with no
    file on disk has entry None."""
    e, k = next(entries, None), next(known, None)
    while e is not None or k is not None:
        if k is None or (e is not None and e.path < k[0]):
            yield e, e.path, None
            e = next(entries, None)
        elif e is None or k[0] < e.path:
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


def reconcile(
    paths: list[Path],
    config: Config,
    index: Index,
    stats: ScanStats,
    new_paths: set[str] | None = None,
    rehash: bool = False,
) -> list[Entry]:
    """Compare folders on disk with the index; returns the files that need reading.

    Unchanged files are skipped on size and mtime alone; a new path whose inode, size
    and mtime match a vanished file is that file renamed (its row follows it, no
    re-read); files no longer on disk are marked missing. Used by `scan` and by the
    daemon's catch-up at start and after lost events.
    """
    # Both the tree and the index's rows are read as streams in path order and merged:
    # what is held is only what changed (to read, vanished, perhaps renamed), so a tree
    # of a million unchanged files costs no more memory than a small one.
    changed: list[tuple[Entry, KnownFile | None]] = []
    vanished: dict[str, KnownFile] = {}
    for path in paths:
        pairs = _paired(
            entries_under(path, config, stats.error_paths), index.known_in_order(str(path))
        )
        for e, p, k in pairs:
            if e is None:
                if k is not None and k.status in (ACTIVE, ERROR) and not Path(p).exists():
                    vanished[p] = k
                continue
            stats.seen += 1
            if not rehash and _unchanged(e, k):
                stats.skipped += 1
            else:
                changed.append((e, k))
    # A file the merge found no row for is looked up by path too: the two orders agree
    # for every path SQLite can store, and this keeps it right if they ever do not.
    unmatched = index.known_by_path(e.path for e, k in changed if k is None)
    by_inode = {(k.inode, k.size, k.mtime_ns): p for p, k in vanished.items()}

    todo: list[Entry] = []
    for e, k in changed:
        if k is None and e.path in unmatched:
            k = unmatched[e.path]
            if not rehash and _unchanged(e, k):
                stats.skipped += 1
                continue
        old_path = by_inode.pop((e.inode, e.size, e.mtime_ns), None) if k is None else None
        if old_path is not None:
            f = index.get(vanished.pop(old_path).id)
            if f is not None:
                index.move_file(f, e.path, e.root)
                stats.moved += 1
                log.info(
                    "moved %s -> %s",
                    old_path,
                    e.path,
                    extra={"event": "moved", "path": e.path, "from": old_path},
                )
                continue
        if k is None or k.status == MISSING:
            stats.new += 1
            if k is None and new_paths is not None:
                new_paths.add(e.path)  # no row in the index yet
        else:
            stats.changed += 1
        todo.append(e)

    index.mark_missing_many(k.id for k in vanished.values())
    for p in vanished:
        stats.missing += 1
        log.info("missing %s", p, extra={"event": "missing", "path": p})
    return todo


def scan(
    paths: Iterable[Path],
    config: Config,
    index: Index,
    *,
    dry_run: bool = False,
    progress: Progress | None = None,
    on_outcome: Callable[[Outcome], None] | None = None,
    rehash: bool = False,
) -> ScanStats:
    """Index every included file under `paths`; returns what was found.

    With `dry_run` every decision is made exactly as it would be, then rolled back.
    With `rehash` unchanged files are read again too, so that fingerprints added by a
    newer watcherd (region hashes, thumbnails, dates) reach files indexed before it;
    their decisions stand.
    """
    started = time.monotonic()
    stats = ScanStats()
    paths = [Path(p).expanduser().absolute() for p in paths]
    new_paths: set[str] = set()
    todo = reconcile(paths, config, index, stats, new_paths, rehash=rehash)

    if progress is not None:
        progress.start(len(todo))
    extra = [Root(p) for p in paths if config.root_for(p) is None]
    pipeline = Pipeline(index, config, mover=Mover(index, config, extra), dry_run=dry_run)
    work = reader(config.max_pixels)
    roots = {e.path: e.root for e in todo}
    paths_todo = [e.path for e in todo]
    results = ordered_map(
        work,
        paths_todo,
        config.effective_workers(),
        on_crash=crashed,
        timeout=config.read_timeout,
        on_timeout=partial(timed_out, seconds=config.read_timeout),
    )
    for done, fp in enumerate(results, 1):
        outcome = pipeline.process(fp, roots[fp.path], new=fp.path in new_paths)
        log_outcome(outcome)
        _count(stats, fp, outcome)
        if on_outcome is not None:
            on_outcome(outcome)
        if not dry_run and done % COMMIT_EVERY == 0:
            index.commit()
        if progress is not None:
            progress.advance()
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
