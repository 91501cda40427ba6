"""The watcher: watchdog observers per root, turning filesystem events into FsEvents.

Kept apart from the daemon in watchdog's own spirit (observer, handler, event): the
handler only translates and enqueues; every decision is the daemon's, in its one thread.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass

from watchdog.events import (
    DirCreatedEvent,
    DirDeletedEvent,
    DirMovedEvent,
    EventsLostEvent,
    FileAttribEvent,
    FileClosedEvent,
    FileCreatedEvent,
    FileDeletedEvent,
    FileModifiedEvent,
    FileMovedEvent,
    FileSystemEvent,
    FileSystemEventHandler,
)
from watchdog.observers.api import BaseObserver
from watchdog.observers.inotify import InotifyObserver
from watchdog.observers.polling import PollingObserver

log = logging.getLogger("watcherd")

# The events the daemon acts on; inotify is asked for these alone. Without a filter the
# kernel queues an open and a close-without-write for every file the catch-up lists or
# a worker reads, so that after an overflow each rescan refilled the queue it was
# answering (a livelock: no decision, full CPU).
EVENTS = [
    FileClosedEvent,
    FileCreatedEvent,
    FileModifiedEvent,
    FileAttribEvent,
    FileDeletedEvent,
    FileMovedEvent,
    DirCreatedEvent,
    DirDeletedEvent,
    DirMovedEvent,
    EventsLostEvent,
]

# Filesystems where inotify sees only this machine's changes (or nothing at all).
NETWORK_FILESYSTEMS = frozenset(
    {
        "nfs", "nfs4", "cifs", "smb3", "smbfs", "9p", "afs", "ceph", "glusterfs", "lustre",
        "davfs", "fuse.sshfs", "fuse.rclone", "fuse.davfs2", "fuse.s3fs", "fuse.gvfsd-fuse",
    }
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class FsEvent:
    """What happened, reduced to what the daemon acts on.

    kind: closed | created | modified | attrib | deleted | moved | arrived |
    dir_created | dir_deleted | dir_moved | overflow
    """

    kind: str
    path: str
    dest: str = ""
    polled: bool = False


def _s(path: str | bytes) -> str:
    return os.fsdecode(path)


class Handler(FileSystemEventHandler):
    def __init__(
        self,
        put: Callable[[FsEvent], None],
        polled: bool,
        root: str = "",
        root_deleted: Callable[[str], None] | None = None,
    ) -> None:
        self.put = put
        self.polled = polled
        self.root = root
        self.root_deleted = root_deleted

    def on_any_event(self, event: FileSystemEvent) -> None:
        fs = translate(event, self.polled)
        if fs is None:
            return
        if fs.kind == "dir_deleted" and fs.path == self.root and self.root_deleted:
            self.root_deleted(self.root)
        self.put(fs)


def translate(event: FileSystemEvent, polled: bool = False) -> FsEvent | None:
    if isinstance(event, EventsLostEvent):  # the kernel's queue overflowed
        return FsEvent("overflow", "", polled=polled)
    src, dest = _s(event.src_path), _s(getattr(event, "dest_path", "") or "")
    if isinstance(event, FileClosedEvent):
        return FsEvent("closed", src, polled=polled)
    if isinstance(event, FileCreatedEvent):
        return FsEvent("created", src, polled=polled)
    if isinstance(event, FileModifiedEvent):
        return FsEvent("modified", src, polled=polled)
    if isinstance(event, FileAttribEvent):
        return FsEvent("attrib", src, polled=polled)
    if isinstance(event, FileDeletedEvent):
        return FsEvent("deleted", src, polled=polled)
    if isinstance(event, FileMovedEvent):
        # Full events: a move from outside the tree has no source, one out of it no dest.
        if not src:
            return FsEvent("arrived", dest, polled=polled)
        if not dest:
            return FsEvent("deleted", src, polled=polled)
        return FsEvent("moved", src, dest, polled=polled)
    if isinstance(event, DirCreatedEvent):
        return FsEvent("dir_created", src, polled=polled)
    if isinstance(event, DirDeletedEvent):
        return FsEvent("dir_deleted", src, polled=polled)
    if isinstance(event, DirMovedEvent):
        if not src:
            return FsEvent("dir_created", dest, polled=polled)
        if not dest:
            return FsEvent("dir_deleted", src, polled=polled)
        return FsEvent("dir_moved", src, dest, polled=polled)
    return None  # opened, closed without writing, directory modified: nothing to do


def filesystem_type(path: str) -> str:
    """The type of the filesystem holding `path`, from /proc/self/mountinfo."""
    best, fstype = "", ""
    try:
        with open("/proc/self/mountinfo", encoding="utf-8", errors="replace") as fh:
            for line in fh:
                left, _, right = line.partition(" - ")
                fields = left.split()
                if len(fields) < 5 or not right:
                    continue
                mount = fields[4].replace("\\040", " ")
                inside = path == mount or path.startswith(mount.rstrip("/") + "/")
                if inside and len(mount) >= len(best):
                    best, fstype = mount, right.split()[0]
    except OSError:
        return ""
    return fstype


class _OverflowHandler(logging.Handler):
    """watchdog reports a kernel queue overflow only in its log; turn that into an event.

    watchdog re-adds its watches after an overflow, but the events the kernel dropped
    are gone: the daemon answers with a rescan of the roots.
    """

    def __init__(self, put: Callable[[FsEvent], None]) -> None:
        super().__init__(logging.WARNING)
        self.put = put

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        if "overflow" in message.lower():
            self.put(FsEvent("overflow", ""))
        elif record.levelno >= logging.ERROR:
            log.error("watchdog: %s", message, extra={"event": "error", "reason": message})


class Watcher:
    """One observer per root: inotify where it works, polling where it cannot."""

    def __init__(self, put: Callable[[FsEvent], None], poll_interval: float = 5.0) -> None:
        self.put = put
        self.poll_interval = poll_interval
        self._observers: dict[str, BaseObserver] = {}
        self._rescanned: set[str] = set()  # see rescan_instead
        self._deleted: set[str] = set()  # see root_deleted
        self.methods: dict[str, str] = {}
        wd_log = logging.getLogger("watchdog")
        wd_log.handlers[:] = [_OverflowHandler(put)]
        wd_log.propagate = False

    def watch(self, root: str, poll: bool = False) -> str:
        """Start watching `root` recursively; returns "inotify" or "polling" (and why)."""
        if root in self._observers:
            return self.methods[root]
        fstype = filesystem_type(root)
        method = "inotify"
        if poll:
            method = "polling (poll = true)"
        elif fstype in NETWORK_FILESYSTEMS:
            method = f"polling ({fstype} is a network filesystem)"
        try:
            observer = self._start(root, polled=method != "inotify")
        except OSError:
            raise
        except Exception as exc:  # watchdog's own walk failed (RecursionError on a deep tree)
            log.error(
                "watchdog cannot watch %s (%r): rescanning it every %.0f s instead",
                root,
                exc,
                self.poll_interval,
                extra={"event": "error", "path": root, "reason": "watcher failed"},
            )
            self.rescan_instead(root, f"watchdog failed: {type(exc).__name__}")
            return self.methods[root]
        if observer is None:  # inotify refused: watch limit or instance limit reached
            method = "polling (inotify watch limit reached)"
            observer = self._start(root, polled=True)
            if observer is None:
                raise OSError(f"cannot watch {root}")
        self._observers[root] = observer
        self.methods[root] = method
        return method

    def _start(self, root: str, polled: bool) -> BaseObserver | None:
        observer: BaseObserver
        if polled:
            observer = PollingObserver(timeout=self.poll_interval)
        else:
            observer = InotifyObserver(generate_full_events=True)
        observer.daemon = True
        try:
            handler = Handler(self.put, polled, root, lambda r: self._mark_deleted(r, observer))
            observer.schedule(handler, root, recursive=True, event_filter=EVENTS)
            observer.start()
        except OSError as exc:
            if exc.errno in (errno.ENOSPC, errno.EMFILE) and not polled:
                log.warning(
                    "inotify refused %s (%s); polling it instead",
                    root,
                    exc.strerror or exc,
                    extra={"event": "rescan", "path": root, "reason": str(exc)},
                )
                with contextlib.suppress(Exception):
                    observer.stop()
                return None
            raise
        return observer

    def first_unwatched(self, root: str, top: str) -> str | None:
        """A folder at or below `top` that inotify is not watching, if any.

        watchdog skips, silently, a subfolder it cannot watch once the kernel's watch
        limit (fs.inotify.max_user_watches) is reached, and events there would be lost.
        Only inotify roots are checked; None also when watchdog's bookkeeping cannot be
        read (another watchdog version): then nothing is claimed either way.
        """
        observer = self._observers.get(root)
        if observer is None or self.methods.get(root) != "inotify":
            return None
        watched: set[bytes] = set()
        for emitter in list(observer.emitters):
            group = getattr(emitter, "_inotify", None)
            paths = getattr(group, "_active_callbacks_by_path", None)
            if paths is None:
                return None
            watched.update(os.fsencode(p) for p in list(paths))
        for folder, dirs, _ in os.walk(top):
            if os.fsencode(folder) not in watched and os.access(folder, os.R_OK | os.X_OK):
                return folder
            dirs[:] = [d for d in dirs if not os.path.islink(os.path.join(folder, d))]
        return None

    def rescan_instead(self, root: str, reason: str) -> None:
        """Watch `root` by no observer at all: the daemon reconciles it with the index
        every poll_interval (`rescanned`), with its own iterative walk. The last resort
        where watchdog cannot walk the tree (a thousand folders deep)."""
        self.unwatch(root)
        self._rescanned.add(root)
        self.methods[root] = f"rescanned every {self.poll_interval:g} s ({reason})"

    def rescanned(self, root: str) -> bool:
        return root in self._rescanned

    def _mark_deleted(self, root: str, observer: BaseObserver) -> None:
        if self._observers.get(root) is observer:  # not a late word from an old watch
            self._deleted.add(root)

    def root_deleted(self, root: str) -> bool:
        """Whether the folder watched as `root` was itself deleted. `rm -r` and `mkdir`
        in one breath often give the new folder the old one's inode number (ext4, tmpfs),
        so its identity alone does not tell; the watch ended with the old folder."""
        return root in self._deleted

    def stopped(self, root: str) -> bool:
        """Whether the watch on `root` has stopped by itself: its observer's thread, or
        one of its emitters' threads (an exception in watchdog's own walk of the tree),
        is no longer alive. Events there would be lost, silently."""
        observer = self._observers.get(root)
        if observer is None:
            return False
        if not observer.is_alive():
            return True
        if all(emitter.is_alive() for emitter in list(observer.emitters)):
            return False
        # An emitter ends itself when the root is deleted, just after queueing the
        # deletion: until that has reached the handler (root_deleted), it is not stopped.
        return not getattr(observer.event_queue, "unfinished_tasks", 0)

    def poll_instead(self, root: str, reason: str) -> None:
        """Watch `root` by polling from now on (the caller rescans it)."""
        self.unwatch(root)
        observer = self._start(root, polled=True)
        if observer is None:
            raise OSError(f"cannot watch {root}")
        self._observers[root] = observer
        self.methods[root] = f"polling ({reason})"

    def unwatch(self, root: str) -> None:
        self._rescanned.discard(root)
        self._deleted.discard(root)
        observer = self._observers.pop(root, None)
        self.methods.pop(root, None)
        if observer is not None:
            observer.stop()
            observer.join(timeout=2)

    def stop(self) -> None:
        observers = list(self._observers.values())
        self._observers.clear()
        self._rescanned.clear()
        self._deleted.clear()
        self.methods.clear()
        for observer in observers:
            observer.stop()
        for observer in observers:
            observer.join(timeout=2)
