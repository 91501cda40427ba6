"""The folders the daemon watches, kept watched: a root deleted, moved away, replaced
or put back, a watch that stopped by itself, a tree past the inotify watch limit.

It never reads a file; it says which roots need a catch-up (what changed while they
were not watched), and the daemon does it.
"""

from __future__ import annotations

import logging

from . import root_guard
from .config import Root
from .root_guard import RootGuard
from .synced import sync_client
from .watcher import Watcher

log = logging.getLogger("watcherd")


class WatchedRoots:
    def __init__(self, watcher: Watcher) -> None:
        self.watcher = watcher
        self.roots: dict[str, Root] = {}  # path -> root, the ones watched now
        self.guard = RootGuard()
        self.rescans = 0  # roots that had to be caught up again (status: rescans)
        self.synced: dict[str, str] = {}  # root -> the sync client keeping it in step

    def __iter__(self):
        return iter(list(self.roots))

    def __len__(self) -> int:
        return len(self.roots)

    def root_of(self, path: str) -> str | None:
        """The deepest root `path` is in."""
        best = None
        for root in self.roots:
            if (path == root or path.startswith(root.rstrip("/") + "/")) and (
                best is None or len(root) > len(best)
            ):
                best = root
        return best

    def add(self, root: Root) -> bool:
        """Watch a root (the caller catches it up next); False if it cannot be."""
        path = str(root.path)
        if not root.path.is_dir():
            log.error(
                "root does not exist, not watched: %s",
                path,
                extra={"event": "error", "path": path, "reason": "root does not exist"},
            )
            return False
        try:
            method = self.watcher.watch(path, poll=root.poll)
        except OSError as exc:
            log.error("cannot watch %s: %s", path, exc, extra={"event": "error", "path": path})
            return False
        self.roots[path] = root
        self.guard.watched(path)
        log.info("watching %s (%s)", path, method, extra={"event": "watch", "path": path})
        self._say_if_synced(root)
        self.check_watched(path, path)
        return True

    def _say_if_synced(self, root: Root) -> None:
        """Once per root: a synced folder passes a quarantine move on to every device."""
        path = str(root.path)
        client = sync_client(root.path)
        if client is None or path in self.synced:
            return
        self.synced[path] = client
        advice = (
            "copies are only flagged there"
            if root.action == "flag"
            else 'moving a copy out deletes it on every device; set action = "flag" for this root'
            " to only flag"
        )
        log.warning("%s is kept in step by %s: %s", path, client, advice,
                    extra={"event": "synced", "path": path, "reason": client})  # fmt: skip

    def remove(self, path: str) -> None:
        self.watcher.unwatch(path)
        del self.roots[path]
        log.info("no longer watching %s", path, extra={"event": "unwatch", "path": path})

    def replace(self, wanted: list[Root]) -> list[Root]:
        """Watch these roots and no others (a reload); the ones newly watched, which the
        caller catches up."""
        paths = {str(r.path): r for r in wanted}
        for path in [p for p in self.roots if p not in paths]:
            self.remove(path)
        added = [r for p, r in paths.items() if p not in self.roots]
        return [r for r in added if self.add(r)]

    def deadline(self) -> float | None:
        return self.guard.deadline() if self.roots else None

    def check(self, now: float, poll_interval: float) -> list[str]:
        """Never deaf: act on what the root guard saw (see root_guard); the roots to
        catch up."""
        out = []
        for path, what in self.guard.look(now, list(self.roots), self.watcher, poll_interval):
            if what in (root_guard.GONE, root_guard.RECREATED):
                self.watcher.unwatch(path)
                log.error(
                    "root %s was deleted, moved or replaced: not watched until it is back",
                    path,
                    extra={"event": "error", "path": path, "reason": "root gone"},
                )
            if what in (root_guard.BACK, root_guard.RECREATED):
                how = "is back" if what == root_guard.BACK else "was recreated"
                if self._rewatch(path, how):
                    out.append(path)
            elif what == root_guard.STOPPED:
                log.error(
                    "the watch on %s stopped by itself: rescanning it instead",
                    path,
                    extra={"event": "error", "path": path, "reason": "watcher stopped"},
                )
                self.watcher.rescan_instead(path, "the watch stopped")
                out.append(path)
            elif what == root_guard.RESCAN:
                out.append(path)
        return out

    def _rewatch(self, path: str, how: str) -> bool:
        root = self.roots.pop(path)
        if not self.add(root):  # it could not be watched: still lost
            self.roots[path] = root
            return False
        log.info(
            "root %s %s: watching it again",
            path,
            how,
            extra={"event": "rescan", "path": path, "reason": how},
        )
        self.rescans += 1
        return True

    def check_watched(self, root: str, top: str) -> bool:
        """If inotify could not watch a folder (the watch limit), poll the root instead;
        True if so: what went unseen needs a catch-up."""
        missed = self.watcher.first_unwatched(root, top)
        if missed is None:
            return False
        reason = "inotify watch limit reached"
        log.warning(
            "inotify cannot watch %s (%s: fs.inotify.max_user_watches); polling %s",
            missed,
            reason,
            root,
            extra={"event": "rescan", "path": root, "reason": "watch_limit"},
        )
        self.rescans += 1
        self.watcher.poll_instead(root, reason)
        return True
