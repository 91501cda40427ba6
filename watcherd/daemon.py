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

import logging
import os
import queue
import time
from collections.abc import Callable
from pathlib import Path

from sqlalchemy.exc import OperationalError

from . import exits
from .actions import Mover, restore_paths
from .catch_up import CatchUp
from .config import Config, Root
from .daemon_files import acquire_lock
from .daemon_status import Counters, Status
from .file_events import FileEvents
from .fingerprint import Fingerprint
from .inbox import ReadDone, Reload, Stop, Undo
from .index import Index
from .index_location import is_server
from .index_trouble import IndexTrouble
from .models import ACTIVE
from .notifications import DesktopNotifier
from .pipeline import Pipeline, arrays_path, keep_arrays, log_outcome, release_free_memory
from .read_queue import ReadQueue
from .remote_verdicts import RemoteVerdicts
from .sdnotify import Notifier
from .settling import Settler, stat_of
from .signal_relay import SignalRelay
from .watched_roots import WatchedRoots
from .watcher import FsEvent, Watcher

log = logging.getLogger("watcherd")


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
        self.settler = Settler(config.settle_seconds)  # arriving files, until complete
        self.reads = ReadQueue(  # complete files, read by workers, decided in order
            config, self._decide, self._already_read, lambda: self.inbox.put(ReadDone())
        )
        self.counters = Counters()
        self.status = Status(db_path, self.notifier, self.counters)
        self.watched: WatchedRoots | None = None  # made with the watcher, in run()
        self._stop = False
        self._stop_requested = False  # set by the signal thread at once (see _stopping)
        self._lock_fh = None
        self.signals = SignalRelay(self.inbox.put, self._request_stop)
        self._resync_at: float | None = None
        self.trouble = IndexTrouble()
        self.desktop: DesktopNotifier | None = None

    def _mover(self, config: Config) -> Mover:
        return Mover(self.index, config, extra_roots(self.explicit, config))

    def run(self) -> int:
        self._lock_fh = acquire_lock(self.db_path)  # held open for the daemon's lifetime
        self.index = Index(self.db_path, writer=True, machine=self.config.machine)
        mover, arrays = self._mover(self.config), arrays_path(self.db_path)
        self.pipeline = open_pipeline(self.index, mover, self.dry_run, arrays)
        self.remote = RemoteVerdicts(self.index, is_server(self.db_path), not self.dry_run)
        self.watcher = Watcher(self.inbox.put, self.config.poll_interval)
        self.watched = WatchedRoots(self.watcher)
        self.events = FileEvents(
            self.config, self.index, self._root_of, self.settler, self.reads, self.counters
        )
        self.catch_up = CatchUp(
            self.config, self.index, self.settler, self.reads, self.counters, self._stopping
        )
        self.signals.install()
        self._desktop_notifications(self.config.notifications)
        try:
            roots = configured_roots(self.explicit, self.config)
            if not roots:
                log.error(
                    "nothing to watch: give folders to `watcherd run` or set `roots`",
                    extra={"event": "error", "reason": "no roots"},
                )
                return exits.CONFIG  # not restarted by systemd: see exits.py
            for root in roots:
                self.watched.add(root)
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

    def _stopping(self) -> bool:
        return self._stop_requested

    def _request_stop(self) -> None:
        self._stop_requested = True

    def stop(self) -> None:
        """Ask the loop to finish (safe from signal handlers and other threads)."""
        self._stop_requested = True
        self.inbox.put(Stop())

    def _shutdown(self) -> None:
        self._log("stopping", "stopping", pending=len(self.settler) + len(self.reads.ready))
        self.notifier.stopping()
        self._desktop_notifications(False)
        watcher = getattr(self, "watcher", None)
        if watcher is not None:
            watcher.stop()
        self.reads.close()
        index = getattr(self, "index", None)
        if index is not None:
            index.rollback()  # every decision was committed whole; nothing half-written
            if getattr(self, "pipeline", None) is not None:
                keep_arrays(self.pipeline, self.dry_run)
            index.close()
        self.status.write(self._described(), final=True)
        self.notifier.close()
        self.signals.uninstall()
        if self._lock_fh is not None:
            self._lock_fh.close()

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
                self.trouble.ok(self.counters.decided())

    def _index_trouble(self, exc: OperationalError) -> None:
        """The index could not be written (see index_trouble): drop this step's work and
        rescan later."""
        self.index.rollback()
        wait = self.trouble.failed(exc, self.counters.decided(), self.config.settle_seconds)
        self._resync_at = time.monotonic() + wait

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
        for path, root in self.settler.settled(time.monotonic()):
            self.reads.add(path, root)
        self.reads.step(time.monotonic())
        if self.index.session.in_transaction():
            self.index.commit()  # never hold the write lock while idle
        if self.reads.release_if_idle():  # the workers went: the kept pictures go too
            self.pipeline.judge.rest()
            release_free_memory()
        self.remote.look(self.config, self.pipeline.mover, time.monotonic())
        self.status.maybe_write(len(self.settler) + len(self.reads), self._described)
        self.catch_up.summarise_if_done()

    def _next_timeout(self, now: float, next_ping: float | None) -> float | None:
        deadlines = [self.settler.deadline(), next_ping, self._resync_at, self.remote.next_at]
        deadlines += [self.watched.deadline(), self.status.deadline(), *self.reads.deadlines(now)]
        deadlines = [d for d in deadlines if d is not None]
        if not deadlines:
            return None  # sleep until something happens
        return max(0.0, min(deadlines) - now)

    def _handle(self, msg) -> None:
        if isinstance(msg, FsEvent):
            self._on_fs_event(msg)
        elif isinstance(msg, Stop):
            self._stop = True
        elif isinstance(msg, Reload):
            self._reload()
        elif isinstance(msg, Undo):
            self._undo(msg.burst, list(msg.paths))
        # ReadDone from a finished read needs no action: the step takes the results

    def _root_of(self, path: str) -> str | None:
        return self.watched.root_of(path)

    def _on_fs_event(self, ev: FsEvent) -> None:
        kind = ev.kind
        if kind == "overflow":
            # One rescan pending at a time: overflows reported while it waits (watchdog
            # tells us twice, and a full queue overflows again) are merged into it.
            if self._resync_at is None:
                self._log("rescan", "kernel event queue overflowed: rescanning", reason="overflow")
                self._resync_at = time.monotonic()
        elif kind == "dir_created":
            root = self._root_of(ev.path)
            if root is not None and os.path.isdir(ev.path):
                if self.watched.check_watched(root, ev.path):
                    self._catch_up([Path(root)])  # polled now: what went unseen
                self._catch_up([Path(ev.path)])
        else:
            for folder in self.events.handle(ev):
                self._catch_up([folder])

    def _touch(self, path: str, root: str, wait_close: bool) -> None:
        self.settler.touch(path, root, wait_close, time.monotonic())

    # -- catch-up --------------------------------------------------------------------------

    def _catch_up(self, folders: list[Path], first: bool = False) -> None:
        if not self.catch_up.run(folders, first):  # SIGTERM during a long walk
            self._stop = True

    def _already_read(self, path: str) -> bool:
        """Indexed as it is now (a catch-up and an event both saw it, or it came back
        from quarantine): only make sure it can be matched again."""
        f = self.index.file_by_path(path)
        if f is not None and f.status == ACTIVE and (f.size, f.mtime_ns) == stat_of(path):
            self.pipeline.rematch(f)
            return True
        return False

    def _decide(self, fp: Fingerprint, root: str) -> None:
        again = read_again(self.index, fp)
        if again is not None:
            if again:
                self._touch(fp.path, root, wait_close=False)
            return
        outcome = self.pipeline.process(fp, root)
        self.index.commit()
        log_outcome(outcome, quiet=self.catch_up.quiet)
        self.counters.count(outcome)
        v = outcome.verdict
        if self.desktop is not None and v is not None and v.kind != "similar":
            self.desktop.add(v)  # `similar` is reported only: not worth a pop-up
        self.status.dirty = True

    def _undo(self, burst: int, paths: list[str]) -> None:
        """Undo pressed on a notification: bring back what that burst quarantined."""
        restored, failed = restore_paths(self.index, self.pipeline.mover, paths)
        if self.desktop is not None:
            self.desktop.restored(burst, restored, failed)

    def _desktop_notifications(self, wanted: bool) -> None:
        post = self.inbox.put
        on_undo = lambda key, paths: post(Undo(key, tuple(paths)))  # noqa: E731
        self.desktop = toggled(self.desktop, wanted, on_undo, self.show_command)

    @property
    def roots(self) -> dict[str, Root]:
        return self.watched.roots if self.watched is not None else {}

    def _check_roots(self, now: float) -> None:
        """Never deaf: roots gone and back, watches stopped (see watched_roots)."""
        for path in self.watched.check(now, self.config.poll_interval):
            self._catch_up([Path(path)])

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
        self.settler.settle_seconds = new.settle_seconds
        self.reads.config = self.events.config = self.catch_up.config = new
        self._desktop_notifications(new.notifications)
        self.pipeline.config = new
        self.pipeline.mover = self._mover(new)
        for root in self.watched.replace(configured_roots(self.explicit, new)):
            self._catch_up([root.path])
        self._log("reload", "configuration reloaded", roots=list(self.roots))
        self.notifier.ready(self._status_text())

    def _log(self, event: str, msg: str, *args, **details) -> None:
        log.info(msg, *args, extra={"event": event, **details})

    def _status_text(self) -> str:
        return self.status.text(len(self.settler) + len(self.reads))

    def _described(self) -> dict:
        watcher = getattr(self, "watcher", None)
        return {
            "roots": list(self.roots),
            "methods": dict(watcher.methods) if watcher is not None else {},
            "rescans": self.watched.rescans if self.watched is not None else 0,
            "synced": dict(self.watched.synced) if self.watched is not None else {},
        }


def configured_roots(explicit: list[Path], config: Config) -> list[Root]:
    """The folders to watch: those named on the command line, else the configured."""
    if explicit:
        return [config.root_for(p) or Root(p) for p in explicit]
    return list(config.roots)


def extra_roots(explicit: list[Path], config: Config) -> list[Root]:
    """Folders named on the command line count as roots for what may be moved."""
    return [Root(p) for p in explicit if config.root_for(p) is None]


def open_pipeline(index: Index, mover: Mover, dry_run: bool, arrays: Path) -> Pipeline:
    """The pipeline of a daemon starting: moves a crash left half done finished or
    undone first (see recovery), the matcher arrays from the saved file if any."""
    mover.recover()
    index.commit()
    pipeline = Pipeline(index, mover.config, mover=mover, dry_run=dry_run, arrays=arrays)
    index.rollback()
    return pipeline


def read_again(index: Index, fp: Fingerprint) -> bool | None:
    """Whether a file read is not to be decided as read: True, read it again once it
    holds still; False, drop it; None: decide it."""
    path = fp.path
    if fp.error and not os.path.lexists(path):
        return False  # deleted before we could read it: nothing to index
    if (fp.size, fp.mtime_ns) != stat_of(path):
        return True  # written to while we read it
    if index.move_under_way_to(path) and index.file_by_path(path) is None:
        # being restored here by another process, which has not recorded it yet:
        # indexed now, it would count as a new file (and in quarantine mode be moved
        # straight back); read again once the restore is on record
        index.commit()
        return True
    return None


def toggled(
    desktop: DesktopNotifier | None, wanted: bool, on_undo: Callable, show: list[str] | None
) -> DesktopNotifier | None:
    """Desktop notifications started or stopped as the configuration wants them."""
    if wanted and desktop is None:
        desktop = DesktopNotifier(on_undo, show_command=show)
        desktop.start()
    elif not wanted and desktop is not None:
        desktop.stop()
        desktop = None
    return desktop
