"""The daemon: `watcherd run`, deciding each file the moment it is complete.

One thread owns the index and makes every decision (the single writer). Watchdog's
observer threads, worker-pool callbacks and signal handlers only post messages to its
inbox, so the loop sleeps until there is something to do: an idle daemon uses no CPU.

A file is ready when its writer closes it; a file that arrives without a close (moved
in, polled folders) once its size and mtime have held still for `settle_seconds`.
Ready files are fingerprinted in worker processes (at most a few in flight: a bounded
queue) and decided in the order they became ready, through the same Pipeline as
`watcherd scan`.
"""

from __future__ import annotations

import fcntl
import heapq
import itertools
import json
import logging
import os
import queue
import signal
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

from sqlalchemy.exc import OperationalError

from . import exits, private, root_guard
from .actions import ActionError, Mover
from .big_lane import LARGE_FILE, BigLane
from .config import Config, Root
from .fingerprint import Fingerprint, crashed, reader, timed_out
from .index import Index
from .index_trouble import IndexTrouble
from .models import ACTIVE, ERROR
from .notifications import DesktopNotifier
from .pipeline import Pipeline, arrays_path, log_outcome, release_free_memory
from .root_guard import RootGuard
from .scanner import Interrupted, ScanStats, reconcile
from .sdnotify import Notifier
from .watcher import FsEvent, Watcher
from .workers import end_pool, make_pool, run_isolated

log = logging.getLogger("watcherd")

POOL_IDLE_SECONDS = 60.0  # idle decoding processes are let go, to keep an idle daemon small
STATUS_EVERY = 1.0
SIGNAL_MESSAGES = {
    signal.SIGTERM: ("stop",),
    signal.SIGINT: ("stop",),
    signal.SIGHUP: ("reload",),
}
QUIET_CATCH_UP = 100  # a first catch-up with more files to read is summed up, not listed
CLOSE_FALLBACK_FACTOR = 5  # a created file never closed is taken once still this many settles


class AlreadyRunning(Exception):
    """Another daemon holds this index; two writers would decide every file twice."""


def lock_path(db_path: Path) -> Path:
    return db_path.with_name(db_path.name + ".lock")


def status_path(db_path: Path) -> Path:
    return db_path.with_name(db_path.name + ".status.json")


def daemon_running(db_path: Path) -> bool:
    """Whether a daemon holds the index's lock right now."""
    path = lock_path(db_path)
    if not path.exists():
        return False
    with open(path, "a+") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        fcntl.flock(fh, fcntl.LOCK_UN)
    return False


def read_status(db_path: Path) -> dict | None:
    try:
        return json.loads(status_path(db_path).read_text())
    except (OSError, ValueError):
        return None


@dataclass
class Pending:
    """A file seen but not yet complete."""

    root: str
    due: float
    wait_close: bool  # a writer has it open: its close makes it ready
    size: int = -1
    mtime_ns: int = -1


@dataclass
class Counters:
    indexed: int = 0
    duplicates: int = 0
    errors: int = 0
    moved: int = 0
    missing: int = 0
    rescans: int = 0
    last_event: dict = field(default_factory=dict)


class Daemon:
    def __init__(
        self,
        config: Config,
        db_path: Path,
        paths: list[Path] | None = None,
        reload_config: Callable[[], Config] | None = None,
        environ: dict[str, str] | None = None,
        dry_run: bool = False,
        show_command: list[str] | None = None,
    ) -> None:
        self.dry_run = dry_run
        self.show_command = show_command
        self.config = config
        self.db_path = db_path
        self.explicit = [Path(p).expanduser().absolute() for p in paths or []]
        self.reload_config = reload_config
        self.inbox: queue.SimpleQueue = queue.SimpleQueue()
        self.notifier = Notifier(environ)
        self.pending: dict[str, Pending] = {}
        self._due: list[tuple[float, int, str]] = []  # heap of (due, seq, path)
        self._seq = itertools.count()
        self.ready: deque[tuple[str, str]] = deque()  # (path, root) waiting for a worker
        self.inflight: deque[tuple[str, str, Future]] = deque()
        # the oldest file being read, and since when it is the oldest (see _expire_stuck)
        self._head: Future | None = None
        self._head_since = 0.0
        self.ready_paths: set[str] = set()
        self.counters = Counters()
        self.pool: ProcessPoolExecutor | None = None
        # files over LARGE_FILE bytes: read apart, decided when done (see big_lane)
        self.big = BigLane(
            lambda: reader(self.config.max_pixels), lambda: self.inbox.put(("done",))
        )
        self.pool_idle_since = time.monotonic()
        self._burst_ended = False  # work drained since the last release_free_memory
        self.roots: dict[str, Root] = {}
        self._stop = False
        self._stop_requested = False  # set by the signal thread at once (see _stopping)
        self._status_dirty = True
        self._last_status = 0.0
        self._lock_fh = None
        self._signal_pipe: tuple[int, int] | None = None  # see _install_signals
        self._resync_at: float | None = None
        self._quiet: dict | None = None  # a large first catch-up under way (see _catch_up)
        self.trouble = IndexTrouble()
        self.guard = RootGuard()
        self.desktop: DesktopNotifier | None = None

    # -- lifecycle -------------------------------------------------------------------------

    def _extra_roots(self) -> list[Root]:
        """Folders named on the command line count as roots for what may be moved."""
        return [Root(p) for p in self.explicit if self.config.root_for(p) is None]

    def _mover(self, config: Config) -> Mover:
        return Mover(self.index, config, self._extra_roots())

    def configured_roots(self, config: Config) -> list[Root]:
        if self.explicit:
            return [config.root_for(p) or Root(p) for p in self.explicit]
        return list(config.roots)

    def run(self) -> int:
        self._acquire_lock()
        self.index = Index(self.db_path, writer=True)
        mover = self._mover(self.config)
        mover.recover()
        self.index.commit()
        self.pipeline = Pipeline(
            self.index,
            self.config,
            mover=mover,
            dry_run=self.dry_run,
            arrays=arrays_path(self.db_path),
        )
        self.index.rollback()
        self.watcher = Watcher(self.inbox.put, self.config.poll_interval)
        self._install_signals()
        self._desktop_notifications(self.config.notifications)
        try:
            roots = self.configured_roots(self.config)
            if not roots:
                log.error(
                    "nothing to watch: give folders to `watcherd run` or set `roots`",
                    extra={"event": "error", "reason": "no roots"},
                )
                return exits.CONFIG  # not restarted by systemd: see exits.py
            for root in roots:
                self._add_root(root)
            if not self.roots:
                return 1
            # Watches first, then catch up: whatever changes during the catch-up is
            # already being collected in the inbox.
            for root in list(self.roots):
                self._catch_up([Path(root)], first=True)
            self._log(
                "ready",
                "watching %s",
                ", ".join(self.roots),
                roots=list(self.roots),
                methods=dict(self.watcher.methods),
            )
            self.notifier.ready(self._status_text())
            self._loop()
        finally:
            self._shutdown()
        return 0

    def _save_arrays(self) -> None:
        """Save the matcher arrays for a quick next start (brought up to date with what
        other processes wrote meanwhile), but not after a dry run: its decisions were
        not kept, and the arrays hold them."""
        pipeline = getattr(self, "pipeline", None)
        if pipeline is None:
            return
        if self.dry_run:
            arrays_path(self.db_path).unlink(missing_ok=True)
            return
        try:
            pipeline.save_arrays()
        except OperationalError as exc:  # the index is locked or gone: start from rows
            log.warning("matcher arrays not saved: %s", exc)
            arrays_path(self.db_path).unlink(missing_ok=True)

    def _stopping(self) -> bool:
        return self._stop_requested

    def stop(self) -> None:
        """Ask the loop to finish (safe from signal handlers and other threads)."""
        self._stop_requested = True
        self.inbox.put(("stop",))

    def _acquire_lock(self) -> None:
        path = lock_path(self.db_path)
        private.folder(path.parent)
        # held open for the daemon's lifetime
        fh = open(private.create(path, os.O_RDWR), "r+")  # noqa: SIM115
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            fh.close()
            raise AlreadyRunning(
                f"a watcherd daemon is already running on {self.db_path}"
            ) from None
        fh.seek(0)
        fh.truncate()
        fh.write(f"{os.getpid()}\n")
        fh.flush()
        self._lock_fh = fh

    def _install_signals(self) -> None:
        """SIGTERM and SIGINT stop the daemon, SIGHUP reloads its configuration.

        Not through Python signal handlers that post to the inbox: the kernel hands a
        signal to any one of the process's threads, and Python runs the handler in the
        main thread only once that thread wakes, which an idle daemon asleep on its
        inbox did not do for a minute, or ever (the stop that hung now and then). The
        handlers do nothing; Python writes each signal's number to a wakeup pipe
        whichever thread takes it, and a thread of ours turns it into a message."""
        read_end, write_end = os.pipe()
        os.set_blocking(write_end, False)  # set_wakeup_fd requires it; the reader blocks
        for sig in SIGNAL_MESSAGES:
            signal.signal(sig, lambda *_: None)
        signal.set_wakeup_fd(write_end, warn_on_full_buffer=False)
        self._signal_pipe = (read_end, write_end)
        threading.Thread(
            target=self._relay_signals, args=(read_end,), name="watcherd-signals", daemon=True
        ).start()

    def _relay_signals(self, read_end: int) -> None:
        while data := os.read(read_end, 64):  # empty: the write end closed at shutdown
            for number in data:
                message = SIGNAL_MESSAGES.get(number)
                if message is not None:
                    self._stop_requested |= message == ("stop",)  # seen inside long walks
                    self.inbox.put(message)
        os.close(read_end)

    def _uninstall_signals(self) -> None:
        if self._signal_pipe is not None:
            signal.set_wakeup_fd(-1)
            os.close(self._signal_pipe[1])
            self._signal_pipe = None

    def _shutdown(self) -> None:
        self._log("stopping", "stopping", pending=len(self.pending) + len(self.ready))
        self.notifier.stopping()
        self._desktop_notifications(False)
        watcher = getattr(self, "watcher", None)
        if watcher is not None:
            watcher.stop()
        if self.pool is not None:
            # Files still being read are not indexed; the next start's catch-up finds them.
            end_pool(self.pool)
            self.pool = None
        self.big.close()
        index = getattr(self, "index", None)
        if index is not None:
            index.rollback()  # every decision was committed whole; nothing half-written
            self._save_arrays()
            index.close()
        self._write_status(final=True)
        self.notifier.close()
        self._uninstall_signals()
        if self._lock_fh is not None:
            self._lock_fh.close()

    # -- the loop --------------------------------------------------------------------------

    def _loop(self) -> None:
        next_ping = time.monotonic()
        ping = self.notifier.watchdog_interval
        while not self._stop:
            now = time.monotonic()
            if ping and now >= next_ping:
                self.notifier.watchdog()
                next_ping = now + ping
            timeout = self._next_timeout(now, next_ping if ping else None)
            try:
                msg = self.inbox.get(timeout=timeout)
            except queue.Empty:
                msg = None
            try:
                self._step(msg)
            except OperationalError as exc:
                self._index_trouble(exc)
            else:
                self._index_ok()

    def _index_trouble(self, exc: OperationalError) -> None:
        """The index could not be written (see index_trouble): drop this step's work and
        rescan later."""
        self.index.rollback()
        wait = self.trouble.failed(str(exc.orig), self._decided(), self.config.settle_seconds)
        self._resync_at = time.monotonic() + wait

    def _decided(self) -> int:
        c = self.counters
        return c.indexed + c.errors + c.missing + c.moved

    def _index_ok(self) -> None:
        self.trouble.ok(self._decided())

    def _step(self, msg) -> None:
        while msg is not None:
            self._handle(msg)
            try:
                msg = self.inbox.get_nowait()
            except queue.Empty:
                msg = None
        if self._stop:
            return
        if self._resync_at is not None and time.monotonic() >= self._resync_at:
            self._resync_at = None
            self.counters.rescans += 1
            self._catch_up([Path(r) for r in self.roots])
        self._check_roots(time.monotonic())
        self._promote_due(time.monotonic())
        self._dispatch()
        self._expire_stuck(time.monotonic())
        for fp, root in self.big.expired(time.monotonic(), self.config.read_timeout):
            self._decide(fp, root)
        self._collect()
        if self.index.session.in_transaction():
            self.index.commit()  # never hold the write lock while idle
        if self._burst_ended and not self.inflight:
            # Searching a large index makes temporaries of a few MB that glibc keeps
            # once freed (about 30 MB at a million photos): give them back as each
            # burst of work ends, so a daemon that waits holds only its index.
            self._burst_ended = False
            release_free_memory()
        self._maybe_release_pool()
        self._maybe_status()
        if self._quiet is not None and not (self.ready or self.inflight or self.pending):
            self._caught_up()

    def _tally(self) -> tuple[int, int, int]:
        c = self.counters
        return (c.indexed, c.duplicates, c.errors)

    def _caught_up(self) -> None:
        """The summary of a quiet catch-up (see _catch_up), once nothing is left to read."""
        if len(self.big):
            return
        before, now = self._quiet["counted"], self._tally()
        indexed, duplicates, errors = (b - a for a, b in zip(before, now, strict=True))
        self._log(
            "caught_up",
            "caught up: %d files indexed, %d duplicates, %d errors in %.1f s",
            indexed,
            duplicates,
            errors,
            time.monotonic() - self._quiet["since"],
            indexed=indexed,
            duplicates=duplicates,
            errors=errors,
        )
        self._quiet = None

    def _next_timeout(self, now: float, next_ping: float | None) -> float | None:
        while self._due and not self._current(self._due[0]):
            heapq.heappop(self._due)  # superseded by a later _touch, or no longer pending
        deadlines = [self._due[0][0]] if self._due else []
        if next_ping is not None:
            deadlines.append(next_ping)
        if self._resync_at is not None:
            deadlines.append(self._resync_at)
        if self.roots:
            deadlines.append(self.guard.deadline())
        if self._status_dirty:
            deadlines.append(self._last_status + STATUS_EVERY)
        if self.pool is not None and not self.inflight:
            deadlines.append(self.pool_idle_since + POOL_IDLE_SECONDS)
        if self.inflight:
            self._watch_head(now)
            deadlines.append(self._head_since + self.config.read_timeout)
        big = self.big.deadline(now, self.config.read_timeout)
        if big is not None:
            deadlines.append(big)
        if not deadlines:
            return None  # sleep until something happens
        return max(0.0, min(deadlines) - now)

    def _handle(self, msg) -> None:
        if isinstance(msg, FsEvent):
            self._on_fs_event(msg)
        elif msg[0] == "stop":
            self._stop = True
        elif msg[0] == "reload":
            self._reload()
        elif msg[0] == "undo":
            self._undo(msg[1], msg[2])
        # ("done",) from a finished worker future needs no action: _collect runs next

    # -- filesystem events -----------------------------------------------------------------

    def _root_of(self, path: str) -> str | None:
        best = None
        for root in self.roots:
            if (path == root or path.startswith(root.rstrip("/") + "/")) and (
                best is None or len(root) > len(best)
            ):
                best = root
        return best

    def _included(self, path: str) -> str | None:
        """The root of `path` when it is a file watcherd indexes, else None."""
        root = self._root_of(path)
        if root is None or not self.config.is_included(path, root):
            return None
        return root

    def _on_fs_event(self, ev: FsEvent) -> None:
        kind = ev.kind
        if kind == "overflow":
            # One rescan pending at a time: overflows reported while it waits (watchdog
            # tells us twice, and a full queue overflows again) are merged into it.
            if self._resync_at is None:
                self._log("rescan", "kernel event queue overflowed: rescanning", reason="overflow")
                self._resync_at = time.monotonic()
        elif kind == "closed":
            root = self._included(ev.path)
            if root is not None:
                self.pending.pop(ev.path, None)
                self._make_ready(ev.path, root)
        elif kind in ("created", "modified", "attrib"):
            root = self._included(ev.path)
            if root is None:
                return
            if kind == "attrib":  # permissions fixed on a file we could not open?
                f = self.index.file_by_path(ev.path)
                if f is None or f.status != ERROR or not (f.error or "").startswith("cannot "):
                    return
            wait_close = not ev.polled and kind != "attrib"
            self._touch(ev.path, root, wait_close)
        elif kind == "arrived":
            root = self._included(ev.path)
            if root is not None:
                self._touch(ev.path, root, wait_close=False)
        elif kind == "deleted":
            self.pending.pop(ev.path, None)
            f = self.index.file_by_path(ev.path)
            if f is not None and f.status in (ACTIVE, ERROR) and not os.path.lexists(ev.path):
                self.index.mark_missing(f)
                self.index.commit()
                self.counters.missing += 1
                self._log("missing", "gone: %s", ev.path, path=ev.path)
        elif kind == "moved":
            self._on_moved(ev.path, ev.dest)
        elif kind == "dir_moved":
            self._on_dir_moved(ev.path, ev.dest)
        elif kind == "dir_deleted":
            self._on_dir_deleted(ev.path)
        elif kind == "dir_created" and self._root_of(ev.path) and os.path.isdir(ev.path):
            root = self._root_of(ev.path)
            self._check_watched(root, ev.path)
            self._catch_up([Path(ev.path)])

    def _touch(self, path: str, root: str, wait_close: bool) -> None:
        """A file changed: (re)start its wait for completeness."""
        now = time.monotonic()
        settle = self.config.settle_seconds
        p = self.pending.get(path)
        if p is None:
            p = Pending(root, 0.0, wait_close)
            self.pending[path] = p
        else:
            p.wait_close = p.wait_close or wait_close
        p.due = now + (settle * CLOSE_FALLBACK_FACTOR if p.wait_close else settle)
        p.size, p.mtime_ns = _stat(path)
        self._schedule(path, p)

    def _schedule(self, path: str, p: Pending) -> None:
        heapq.heappush(self._due, (p.due, next(self._seq), path))

    def _current(self, entry: tuple[float, int, str]) -> bool:
        p = self.pending.get(entry[2])
        return p is not None and p.due == entry[0]

    def _promote_due(self, now: float) -> None:
        """Pending files whose wait is over: ready if they held still, else wait again."""
        while self._due and self._due[0][0] <= now:
            entry = heapq.heappop(self._due)
            if not self._current(entry):
                continue
            path = entry[2]
            p = self.pending[path]
            size, mtime_ns = _stat(path)
            if size < 0:  # gone before it was complete
                del self.pending[path]
            elif (size, mtime_ns) == (p.size, p.mtime_ns):
                del self.pending[path]
                self._make_ready(path, p.root)
            else:
                p.size, p.mtime_ns = size, mtime_ns
                wait = self.config.settle_seconds
                p.due = now + (wait * CLOSE_FALLBACK_FACTOR if p.wait_close else wait)
                self._schedule(path, p)

    def _make_ready(self, path: str, root: str) -> None:
        if any(path == fpath for fpath, _, _ in self.inflight) or path in self.big.paths():
            return  # being read now; if it changed meanwhile, _decide sees and re-reads it
        if path not in self.ready_paths:
            self.ready_paths.add(path)
            self.ready.append((path, root))

    def _on_moved(self, src: str, dest: str) -> None:
        src_pending = self.pending.pop(src, None)
        dest_root = self._included(dest)
        f = self.index.file_by_path(src)
        if f is not None and f.status in (ACTIVE, ERROR):
            if dest_root is None:  # renamed to a name we skip, or out of the roots
                self.index.mark_missing(f)
                self.index.commit()
                self.counters.missing += 1
                self._log("missing", "gone: %s", src, path=src)
            else:
                self.index.move_file(f, dest, dest_root)
                self.index.commit()
                self.counters.moved += 1
                self._log("moved", "moved %s -> %s", src, dest, path=dest, **{"from": src})
            return
        if dest_root is None:
            return
        known = self.index.file_by_path(dest)
        if known is not None and (known.size, known.mtime_ns) == _stat(dest):
            return  # already followed (a folder move moves its files first)
        if src_pending is not None and src_pending.wait_close:
            self._touch(dest, dest_root, wait_close=True)
        else:
            # renamed from a temporary name (x.part -> x.jpg): complete, if it holds still
            self._touch(dest, dest_root, wait_close=False)

    def _on_dir_moved(self, src: str, dest: str) -> None:
        dest_root = self._root_of(dest)
        for path in [p for p in self.pending if p.startswith(src.rstrip("/") + "/")]:
            p = self.pending.pop(path)
            if dest_root is not None:
                new = dest + path[len(src) :]
                moved = Pending(dest_root, p.due, p.wait_close, p.size, p.mtime_ns)
                self.pending[new] = moved
                self._schedule(new, moved)
        if dest_root is None or not self.config.is_included_dir(os.path.basename(dest)):
            self._on_dir_deleted(src)
            return
        moved = self.index.move_folder(src, dest, dest_root)
        self.index.commit()
        if moved:
            self.counters.moved += moved
            self._log("moved", "moved folder %s -> %s", src, dest, path=dest, **{"from": src})
        self._catch_up([Path(dest)])  # files the folder held that were never indexed

    def _on_dir_deleted(self, folder: str) -> None:
        for path in [p for p in self.pending if p.startswith(folder.rstrip("/") + "/")]:
            del self.pending[path]
        missing = [fid for fid, path in self.index.live_under(folder) if not os.path.lexists(path)]
        self.index.mark_missing_many(missing)
        self.index.commit()
        gone = len(missing)
        if gone:
            self.counters.missing += gone
            self._log("missing", "folder gone: %s (%d files)", folder, gone, path=folder)

    # -- catch-up --------------------------------------------------------------------------

    def _catch_up(self, folders: list[Path], first: bool = False) -> None:
        """Reconcile folders with the index: what changed while we were not looking.
        `first`: the catch-up at start; when it has more than QUIET_CATCH_UP files to
        read, each one merely indexed is not logged at info level (a first start on a
        folder of 10,000 photos wrote 10,000 lines to the journal): one summary line says
        what it did once they are all decided (duplicates and errors are still logged)."""
        stats = ScanStats()
        try:
            todo = reconcile(folders, self.config, self.index, stats, stop=self._stopping)
        except Interrupted:  # SIGTERM during a long walk: the next start catches up
            self.index.rollback()
            self._stop = True
            return
        self.index.commit()
        self.counters.moved += stats.moved
        self.counters.missing += stats.missing
        if first and len(todo) > QUIET_CATCH_UP:
            self._quiet = self._quiet or {"since": time.monotonic(), "counted": self._tally()}
        now_wall = time.time()
        settle = self.config.settle_seconds
        for e in todo:
            if e.path in self.pending:
                continue
            if now_wall - e.mtime_ns / 1e9 > settle:
                self._make_ready(e.path, e.root)  # untouched for a while: complete
            else:
                self._touch(e.path, e.root, wait_close=False)
        if todo or stats.moved or stats.missing:
            log.info(
                "catch-up: %d to read, %d unchanged, %d moved, %d missing",
                len(todo),
                stats.skipped,
                stats.moved,
                stats.missing,
                extra={
                    "event": "rescan",
                    "path": ", ".join(map(str, folders)),
                    "to_read": len(todo),
                    "unchanged": stats.skipped,
                },
            )

    # -- reading and deciding --------------------------------------------------------------

    def _dispatch(self) -> None:
        limit = self.config.effective_workers() * 2
        while self.ready and len(self.inflight) < limit:
            path, root = self.ready.popleft()
            self.ready_paths.discard(path)
            f = self.index.file_by_path(path)
            if f is not None and f.status == ACTIVE and (f.size, f.mtime_ns) == _stat(path):
                # already indexed as it is now (a catch-up and an event both saw it, or
                # it came back from quarantine): only make sure it can be matched again
                self.pipeline.rematch(f)
                continue
            size = _stat(path)[0]
            if size > LARGE_FILE:
                self.big.submit(path, root, size)
                continue
            if self.pool is None:
                self.pool = make_pool(self.config.effective_workers())
            work = reader(self.config.max_pixels)
            try:
                fut = self.pool.submit(work, path)
            except BrokenProcessPool:
                self.ready.appendleft((path, root))
                self.ready_paths.add(path)
                self._recover_pool()
                continue
            fut.add_done_callback(lambda _f: self.inbox.put(("done",)))
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
            self.pool_idle_since = time.monotonic()  # the pool's idle time starts now
            self._burst_ended = True
        self._dispatch()

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
        without this one such file would hold up every file after it for ever.

        It is recorded as an error; the workers are replaced, all of them since the
        stuck one cannot be told apart, and the other files in flight are read again.
        The clock starts when a file becomes the oldest in flight, never earlier than
        its worker can have started on it.
        """
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
        for p, r in reversed(others):
            self.ready.appendleft((p, r))
            self.ready_paths.add(p)
        self._decide(timed_out(path, self.config.read_timeout), root)
        self._dispatch()

    def _decide(self, fp: Fingerprint, root: str) -> None:
        path = fp.path
        if fp.error and not os.path.lexists(path):
            return  # deleted before we could read it: nothing to index
        if (fp.size, fp.mtime_ns) != _stat(path):
            # written to while we read it: wait until it holds still, then read it again
            self._touch(path, root, wait_close=False)
            return
        if self.index.move_under_way_to(path) and self.index.file_by_path(path) is None:
            # being restored here by another process, which has not recorded it yet:
            # indexed now, it would count as a new file (and in quarantine mode be moved
            # straight back); read again once the restore is on record
            self.index.commit()
            self._touch(path, root, wait_close=False)
            return
        outcome = self.pipeline.process(fp, root)
        self.index.commit()
        log_outcome(outcome, quiet=self._quiet is not None)
        if outcome.error:
            self.counters.errors += 1
            self.counters.last_event = {"event": "error", "path": path, "reason": outcome.error}
        elif outcome.verdict is not None and outcome.verdict.kind == "similar":
            self.counters.indexed += 1
            self.counters.last_event = {"event": "similar", "path": path}
        elif outcome.verdict is not None:
            self.counters.duplicates += 1
            self.counters.last_event = {
                "event": "duplicate",
                "path": outcome.verdict.redundant_path,
                "original": outcome.verdict.kept_path,
            }
        else:
            self.counters.indexed += 1
            self.counters.last_event = {"event": "indexed", "path": path}
        v = outcome.verdict
        if self.desktop is not None and v is not None and v.kind != "similar":
            self.desktop.add(v)  # `similar` is reported only: not worth a pop-up
        self.counters.last_event["ts"] = time.time()
        self._status_dirty = True

    def _undo(self, burst: int, paths: list[str]) -> None:
        """Undo pressed on a notification: bring back what that burst quarantined."""
        restored, failed = [], []
        for path in paths:
            f = self.index.file_by_path(path)
            try:
                if f is None:
                    raise ActionError(f"{path} is no longer in the quarantine")
                out = self.pipeline.mover.restore(f)
                self.index.commit()
            except ActionError as exc:
                self.index.rollback()
                failed.append(path)
                log.warning("not restored: %s: %s", path, exc,
                            extra={"event": "error", "path": path, "reason": str(exc)})  # fmt: skip
                continue
            restored.append(out.path)
            self._log("restored", "restored %s", out.path, path=out.path, quarantined=path)
        if self.desktop is not None:
            self.desktop.restored(burst, restored, failed)

    def _desktop_notifications(self, wanted: bool) -> None:
        if wanted and self.desktop is None:
            self.desktop = DesktopNotifier(
                lambda key, paths: self.inbox.put(("undo", key, paths)),
                show_command=self.show_command,
            )
            self.desktop.start()
        elif not wanted and self.desktop is not None:
            self.desktop.stop()
            self.desktop = None

    def _maybe_release_pool(self) -> None:
        self.big.release_if_idle(POOL_IDLE_SECONDS)
        idle = time.monotonic() - self.pool_idle_since
        if self.pool is not None and not self.inflight and idle >= POOL_IDLE_SECONDS:
            log.debug("idle: letting the decoding processes go")
            self.pool.shutdown(wait=False)
            self.pool = None

    # -- roots and reload ------------------------------------------------------------------

    def _add_root(self, root: Root) -> None:
        path = str(root.path)
        if not root.path.is_dir():
            log.error(
                "root does not exist, not watched: %s",
                path,
                extra={"event": "error", "path": path, "reason": "root does not exist"},
            )
            return
        try:
            method = self.watcher.watch(path, poll=root.poll)
        except OSError as exc:
            log.error("cannot watch %s: %s", path, exc, extra={"event": "error", "path": path})
            return
        self.roots[path] = root
        self.guard.watched(path)
        log.info("watching %s (%s)", path, method, extra={"event": "watch", "path": path})
        # no catch-up here: both callers (start, reload) catch the new root up next
        self._check_watched(path, path, catch_up=False)

    def _check_roots(self, now: float) -> None:
        """Never deaf: act on what the root guard saw (see root_guard)."""
        seen = self.guard.look(now, list(self.roots), self.watcher, self.config.poll_interval)
        for path, what in seen:
            if what in (root_guard.GONE, root_guard.RECREATED):
                self.watcher.unwatch(path)
                log.error(
                    "root %s was deleted, moved or replaced: not watched until it is back",
                    path,
                    extra={"event": "error", "path": path, "reason": "root gone"},
                )
            if what in (root_guard.BACK, root_guard.RECREATED):
                self._rewatch(path, "is back" if what == root_guard.BACK else "was recreated")
            elif what == root_guard.STOPPED:
                log.error(
                    "the watch on %s stopped by itself: rescanning it instead",
                    path,
                    extra={"event": "error", "path": path, "reason": "watcher stopped"},
                )
                self.watcher.rescan_instead(path, "the watch stopped")
                self._catch_up([Path(path)])
            elif what == root_guard.RESCAN:
                self._catch_up([Path(path)])

    def _rewatch(self, path: str, how: str) -> None:
        root = self.roots.pop(path)
        self._add_root(root)
        if path not in self.roots:  # it could not be watched: still lost
            self.roots[path] = root
            return
        self._log("rescan", "root %s %s: watching it again", path, how, path=path, reason=how)
        self.counters.rescans += 1
        self._catch_up([Path(path)])

    def _check_watched(self, root: str, top: str, catch_up: bool = True) -> None:
        """If inotify could not watch a folder (the watch limit), poll the root instead
        and (unless the caller is about to) catch up on what went unseen."""
        missed = self.watcher.first_unwatched(root, top)
        if missed is None:
            return
        reason = "inotify watch limit reached"
        log.warning(
            "inotify cannot watch %s (%s: fs.inotify.max_user_watches); polling %s",
            missed,
            reason,
            root,
            extra={"event": "rescan", "path": root, "reason": "watch_limit"},
        )
        self.counters.rescans += 1
        self.watcher.poll_instead(root, reason)
        if catch_up:
            self._catch_up([Path(root)])

    def _reload(self) -> None:
        if self.reload_config is None:
            return
        try:
            new = self.reload_config()
        except Exception as exc:  # a broken edit must not stop a running daemon
            log.error(
                "configuration not reloaded: %s",
                exc,
                extra={"event": "error", "reason": str(exc)},
            )
            return
        self.notifier.reloading()
        self.config = new
        self._desktop_notifications(new.notifications)
        self.pipeline.config = new
        self.pipeline.mover = self._mover(new)
        wanted = {str(r.path): r for r in self.configured_roots(new)}
        for path in [p for p in self.roots if p not in wanted]:
            self.watcher.unwatch(path)
            del self.roots[path]
            log.info("no longer watching %s", path, extra={"event": "unwatch", "path": path})
        added = [r for p, r in wanted.items() if p not in self.roots]
        for root in added:
            self._add_root(root)
            if str(root.path) in self.roots:
                self._catch_up([root.path])
        self._log("reload", "configuration reloaded", roots=list(self.roots))
        self.notifier.ready(self._status_text())

    # -- reporting -------------------------------------------------------------------------

    def _log(self, event: str, msg: str, *args, **details) -> None:
        log.info(msg, *args, extra={"event": event, **details})

    def _status_text(self) -> str:
        c = self.counters
        return (
            f"{c.indexed} indexed, {c.duplicates} duplicates, {c.errors} errors; "
            f"{len(self.pending) + len(self.ready) + len(self.inflight) + len(self.big)} waiting"
        )

    def _maybe_status(self) -> None:
        now = time.monotonic()
        if self._status_dirty and now - self._last_status >= STATUS_EVERY:
            self.notifier.status(self._status_text())
            self._write_status()
            self._last_status = now
            self._status_dirty = False

    def _write_status(self, final: bool = False) -> None:
        c = self.counters
        data = {
            "pid": os.getpid(),
            "running": not final,
            "roots": list(self.roots),
            "methods": dict(getattr(self, "watcher", None).methods)
            if getattr(self, "watcher", None)
            else {},
            "session": {
                "indexed": c.indexed,
                "duplicates": c.duplicates,
                "errors": c.errors,
                "moved": c.moved,
                "missing": c.missing,
                "rescans": c.rescans,
            },
            "last_event": c.last_event,
            "updated": time.time(),
        }
        path = status_path(self.db_path)
        tmp = path.with_name(path.name + ".tmp")
        try:
            private.write(tmp, json.dumps(data))
            os.replace(tmp, path)
        except OSError as exc:
            log.debug("cannot write status file %s: %s", path, exc)


def _stat(path: str) -> tuple[int, int]:
    try:
        st = os.stat(path)
    except OSError:
        return (-1, -1)
    return (st.st_size, st.st_mtime_ns)
