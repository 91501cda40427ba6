"""Never deaf: what has become of each watched root since the daemon last looked.

watchdog goes quiet, without a word, when a root is deleted and made again, replaced by
a symlink, or when its own thread dies (its walk of a tree a thousand folders deep
recurses); and a root it cannot watch at all is reconciled by the daemon every
poll_interval instead. Every few seconds the daemon asks the guard what to do about
each root; the guard only tells, the daemon acts.
"""

from __future__ import annotations

import os
import stat

from .watcher import Watcher

CHECK_EVERY = 2.0  # seconds between looks at the roots

GONE = "gone"  # deleted, moved or replaced: stop watching it until it is back
BACK = "back"  # a folder again (a symlink only if it was one at first): watch it again
RECREATED = "recreated"  # gone and already a folder again since the last look
STOPPED = "stopped"  # its watch ended by itself: rescan it instead
RESCAN = "rescan"  # not watched by any observer: time to reconcile it again


def identity(path: str) -> tuple[int, int, bool]:
    """Which folder `path` is: device, inode, and whether it is a symlink."""
    return _state(path)[0]


def _state(path: str) -> tuple[tuple[int, int, bool], bool]:
    """`path`'s identity and whether it is a folder (through a symlink, if it is one),
    from one lstat: read twice, a swap between the reads (gone, then a symlink) looked
    like a folder made again."""
    try:
        st = os.lstat(path)
    except OSError:
        return (-1, -1, False), False
    link = stat.S_ISLNK(st.st_mode)
    is_dir = os.path.isdir(path) if link else stat.S_ISDIR(st.st_mode)
    return (st.st_dev, st.st_ino, link), is_dir


class RootGuard:
    def __init__(self) -> None:
        self._ids: dict[str, tuple[int, int, bool]] = {}
        self._link: dict[str, bool] = {}  # whether each root was a symlink at first
        self.lost: set[str] = set()
        self._rescan_due: dict[str, float] = {}
        self.checked = 0.0

    def watched(self, path: str) -> None:
        """`path` is being watched now, as it is now. Whether it may be a symlink is
        fixed by the first call: a rewatch can catch the root mid-swap, as a symlink
        where a folder was, and that must not become the root's self."""
        self._ids[path] = identity(path)
        self._link.setdefault(path, self._ids[path][2])
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
            now_id, is_dir = _state(path)
            own = is_dir and now_id[2] == self._link.get(path)  # what it may be watched as
            if path in self.lost:
                if own:
                    out.append((path, BACK))
            elif now_id != self._ids.get(path) or not own or watcher.root_deleted(path):
                self.lost.add(path)
                out.append((path, RECREATED if own else GONE))
            elif watcher.stopped(path):
                out.append((path, STOPPED))
            elif watcher.rescanned(path):
                due = self._rescan_due.setdefault(path, now + poll)
                if now >= due:
                    self._rescan_due[path] = now + poll
                    out.append((path, RESCAN))
        return out
