"""The tree as it is on disk: every included file below a folder, in the index's path
order, from stat alone.

Light on purpose (no SQLAlchemy, numpy or Pillow): `watcherd scan` walks the first files
of a new index while it is still importing the rest (see readahead).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from .config import Config
from .pathtext import to_db


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
    and "a.jpg" come before everything in "a/". A name that is not UTF-8 sorts as the
    index stores it (pathtext)."""
    name = to_db(entry.name)
    try:
        return name + "/" if entry.is_dir(follow_symlinks=False) else name
    except OSError:
        return name


def _listed(folder: str, errors: list[tuple[str, str]]) -> list[os.DirEntry]:
    try:
        with os.scandir(folder) as it:
            return sorted(it, key=_in_path_order)
    except OSError as exc:
        errors.append((folder, f"cannot list folder: {exc.strerror or exc}"))
        return []


def _walk(folder: str, config: Config, errors: list[tuple[str, str]]) -> Iterator[os.DirEntry]:
    """Included regular files below `folder`, in path order; symlinks are not followed.

    A symlink is not clutter (it takes no space) and following links risks loops, so
    links to files and folders are both skipped. Iterative, one listing per level on a
    stack: a tree a thousand folders deep is walked like any other.
    """
    stack = [iter(_listed(folder, errors))]
    while stack:
        entry = next(stack[-1], None)
        if entry is None:
            stack.pop()
            continue
        try:
            if entry.is_symlink():
                continue
            if entry.is_dir(follow_symlinks=False):
                if config.is_included_dir(entry.name) and not config.in_quarantine(entry.path):
                    stack.append(iter(_listed(entry.path, errors)))
            elif entry.is_file(follow_symlinks=False) and config.is_included(entry.name):
                yield entry
        except OSError as exc:
            errors.append((entry.path, f"cannot stat: {exc.strerror or exc}"))


def entries_under(path: Path, config: Config, errors: list[tuple[str, str]]) -> Iterator[Entry]:
    """Stat every included file under `path` (or `path` itself), in path order, each
    tagged with its root. A generator: a tree of a million files is never held whole."""
    root_cfg = config.root_for(path)
    if path.is_symlink() and (root_cfg is None or root_cfg.path != path):
        # a link inside a root may lead anywhere (outside every root): never followed
        errors.append((str(path), "a symbolic link: not followed (name the folder it leads to)"))
        return
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
