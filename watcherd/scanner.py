"""`watcherd scan`: bring the index up to date with folders as they are on disk.

Three passes: walk (stat only), reconcile (skip unchanged files, follow renames by
inode, mark vanished files missing), then fingerprint what is new or changed in worker
processes and decide each file in walk order through the shared Pipeline.
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


def _walk(folder: str, config: Config, errors: list[tuple[str, str]]) -> Iterator[os.DirEntry]:
    """Included regular files below `folder`, in sorted order; symlinks are not followed.

    A symlink is not clutter (it takes no space) and following links risks loops, so
    links to files and folders are both skipped.
    """
    try:
        with os.scandir(folder) as it:
            entries = sorted(it, key=lambda e: e.name)
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


def collect(paths: Iterable[Path], config: Config, errors: list[tuple[str, str]]) -> list[Entry]:
    """Stat every included file under `paths`; each file is tagged with its root."""
    out: list[Entry] = []
    for path in paths:
        root_cfg = config.root_for(path)
        if path.is_file():
            root = str(root_cfg.path if root_cfg else path.parent)
            if config.is_included(path):
                st = path.stat()
                out.append(Entry(str(path), root, st.st_size, st.st_mtime_ns, st.st_ino))
            continue
        root = str(root_cfg.path if root_cfg else path)
        for entry in _walk(str(path), config, errors):
            try:
                st = entry.stat(follow_symlinks=False)
            except OSError as exc:
                errors.append((entry.path, f"cannot stat: {exc.strerror or exc}"))
                continue
            out.append(Entry(entry.path, root, st.st_size, st.st_mtime_ns, st.st_ino))
    return out


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
    entries = collect(paths, config, stats.error_paths)
    stats.seen += len(entries)
    known: dict[str, KnownFile] = {}
    for path in paths:
        known.update(index.known_under(str(path)))
    seen_paths = {e.path for e in entries}
    vanished = {
        p: k
        for p, k in known.items()
        if p not in seen_paths and k.status in (ACTIVE, ERROR) and not Path(p).exists()
    }
    by_inode = {(k.inode, k.size, k.mtime_ns): p for p, k in vanished.items()}

    todo: list[Entry] = []
    for e in entries:
        k = known.get(e.path)
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

    for p, k in vanished.items():
        f = index.get(k.id)
        if f is not None:
            index.mark_missing(f)
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
