"""The root guard on a real folder swapped under it: what it tells the daemon."""

from __future__ import annotations

import os
import shutil
import threading
import time

from watcherd.root_guard import BACK, CHECK_EVERY, GONE, RECREATED, RootGuard
from watcherd.watcher import Watcher


def watched_root(tmp_path) -> tuple:
    """A watched root and a folder beside it, and a guard that has seen the root."""
    root, outside = tmp_path / "Pictures", tmp_path / "elsewhere"
    root.mkdir()
    outside.mkdir()
    guard = RootGuard()
    guard.watched(str(root))
    return root, outside, guard


def looks(guard: RootGuard, root: str, watcher: Watcher):
    """Each call is one look, a CHECK_EVERY after the last."""
    t = [0.0]

    def look() -> list[str]:
        t[0] += CHECK_EVERY
        return [what for _, what in guard.look(t[0], [root], watcher, 60.0)]

    return look


def test_a_rewatch_that_caught_the_root_as_a_symlink_does_not_make_it_deaf(tmp_path):
    """The daemon rewatches a recreated root; if the root is a symlink by the time the
    rewatch records it (swapped again in between), the guard must still call the symlink
    gone, and the real folder made in its place back. Before, the guard took the symlink
    as the root's new self: watched through the link, then never back for a folder."""
    root, outside, guard = watched_root(tmp_path)
    look = looks(guard, str(root), Watcher(lambda e: None))
    assert look() == []
    root.rmdir()
    root.symlink_to(outside)
    guard.watched(str(root))  # a rewatch that ran while the root was the symlink
    assert look() == [GONE]
    assert look() == []  # still a symlink: not back
    root.unlink()
    root.mkdir()
    assert look() == [BACK]


def test_a_root_swapped_for_a_symlink_is_never_called_back_while_it_is_one(tmp_path):
    """The look reads the root once: a swap between two reads (gone, then a symlink to a
    folder) looked like a folder made again. Another thread swaps the root between
    missing and a symlink as fast as it can while the guard looks 3,000 times; a real
    folder never stands there, so the guard must never say it is back."""
    root, outside, guard = watched_root(tmp_path)
    watcher = Watcher(lambda e: None)
    shutil.rmtree(root)
    stop = threading.Event()

    def swap() -> None:
        while not stop.is_set():
            os.symlink(outside, root)
            os.unlink(root)

    swapper = threading.Thread(target=swap)
    swapper.start()
    look, told = looks(guard, str(root), watcher), []
    try:
        for _ in range(3000):
            told += look()
    finally:
        stop.set()
        swapper.join()
    assert GONE in told
    assert BACK not in told and RECREATED not in told


def test_a_root_deleted_and_made_again_at_once_is_recreated(tmp_path):
    """`rm -r` and `mkdir` in one breath often give the new folder the old one's inode
    number (ext4, tmpfs): the guard must not take it for the folder it watched, whose
    inotify watch ended with it. Before, it said nothing, and the daemon later called
    the ended watch `stopped` and fell back to rescans."""
    root = tmp_path / "Pictures"
    root.mkdir()
    watcher = Watcher(lambda e: None)
    try:
        watcher.watch(str(root))
        guard = RootGuard()
        guard.watched(str(root))
        look = looks(guard, str(root), watcher)
        assert look() == []
        root.rmdir()
        root.mkdir()
        deadline = time.monotonic() + 10
        while not (told := look()) and time.monotonic() < deadline:
            time.sleep(0.01)  # the watch hears of the deletion on its own thread
        assert told == [RECREATED]
        watcher.unwatch(str(root))
        watcher.watch(str(root))
        guard.watched(str(root))
        assert look() == []
    finally:
        watcher.stop()


def test_a_root_that_was_a_symlink_at_first_is_back_as_a_symlink(tmp_path):
    """~/Pictures may be a link to a data disk from the start: then a link is its self."""
    root, disk = tmp_path / "Pictures", tmp_path / "disk"
    disk.mkdir()
    root.symlink_to(disk)
    guard = RootGuard()
    guard.watched(str(root))
    look = looks(guard, str(root), Watcher(lambda e: None))
    assert look() == []
    root.unlink()
    assert look() == [GONE]
    root.mkdir()
    assert look() == []  # a real folder where a link was: not the same root
    root.rmdir()
    root.symlink_to(disk)
    assert look() == [BACK]
