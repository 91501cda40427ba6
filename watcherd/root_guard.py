"""Never deaf: what has become of each watched root since the daemon last looked.

watchdog goes quiet, without a word, when a root is deleted and made again, replaced by
a symlink, or when its own thread dies (its walk of a tree a thousand folders deep
recurses); and a root it cannot watch at all is reconciled by the daemon every
poll_interval instead. Every few seconds the daemon asks the guard what to do about
each root; the guard only tells, the daemon acts.
"""

from __future__ import annotations

import os

from .watcher import Watcher

CHECK_EVERY = 2.0  # seconds between looks at the roots

GONE = "gone"  # deleted, moved or replaced: stop watching it until it is back
BACK = "back"  # a folder again (a symlink only if it was one at first): watch it again
RECREATED = "recreated"  # gone and already a folder again since the last look
STOPPED = "stopped"  # its watch ended by itself: rescan it instead
RESCAN = "rescan"  # not watched by any observer: time to reconcile it again


def identity(path: str) -> tuple[int, int, bool]:
    """Which folder `path` is: device, inode, and whether it is a symlink."""
    try:
        st = os.lstat(path)
    except OSError:
        return (-1, -1, False)
    return (st.st_dev, st.st_ino, os.path.islink(path))


class RootGuard:
    def __init__(self) -> None:
        self._ids: dict[str, tuple[int, int, bool]] = {}
        self.lost: set[str] = set()
        self._rescan_due: dict[str, float] = {}
        self.checked = 0.0

    def watched(self, path: str) -> None:
        """`path` is being watched now, as it is now."""
        self._ids[path] = identity(path)
        self.lost.discard(path)

    def deadline(self) -> float:
        return self.checked + CHECK_EVERY

    def look(self, now: float, roots: list[str], watcher: Watcher, poll: float) -> list:
        """(root, what) for every root that needs the daemon, at most every CHECK_EVERY."""
        if now < self.deadline():
            return []
        self.checked = now
        out = []
        for path in roots:
            now_id, was = identity(path), self._ids.get(path)
            back = os.path.isdir(path) and was is not None and now_id[2] == was[2]
            if path in self.lost:
                if back:
                    out.append((path, BACK))
            elif now_id != was:
                self.lost.add(path)
                out.append((path, RECREATED if back else GONE))
            elif watcher.stopped(path):
                out.append((path, STOPPED))
            elif watcher.rescanned(path):
                due = self._rescan_due.setdefault(path, now + poll)
                if now >= due:
                    self._rescan_due[path] = now + poll
                    out.append((path, RESCAN))
        return out
