"""Which quarantine folder a file goes to: one per volume, as the freedesktop trash does.

A photo on an external disk or a NAS mount moved into the home quarantine is copied
across filesystems (slow) and fills the home partition. So, unless `quarantine_dir` is
set explicitly, a file on another filesystem than the home quarantine goes to
`.watcherd-quarantine-$UID/` at the top of its own volume: one rename, nothing copied.
That folder is created 0700 and refused when it is a symbolic link, not a folder, or
somebody else's (anyone who can write the volume's top could plant one); a volume that
cannot take it (read-only, no permission) sends the file to the home quarantine, and
the log says so once per volume.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import re
import stat
from dataclasses import dataclass
from pathlib import Path

from . import moving

log = logging.getLogger("watcherd")

VOLUME_FOLDER = f".watcherd-quarantine-{os.getuid()}"
_said: set[Path] = set()  # volumes whose fallback has been logged by this process


@dataclass(frozen=True)
class Place:
    folder: Path  # the quarantine folder the file goes to
    volume: bool  # a per-volume folder (checked and opened without following links)
    note: str = ""  # why a volume's own folder could not be used


_INSIDE, _AT = f"/{VOLUME_FOLDER}/", f"/{VOLUME_FOLDER}"


def in_volume_quarantine(path: str) -> bool:
    """Whether `path` lies in some volume's quarantine folder (asked of every file a
    scan walks: two substring tests)."""
    return _INSIDE in path or path.endswith(_AT)


def device_of(path: str | os.PathLike[str]) -> int | None:
    """The filesystem of `path`, or of the nearest folder above it that exists."""
    here = Path(path)
    while True:
        with contextlib.suppress(OSError):
            return os.stat(here).st_dev
        if here == here.parent:
            return None
        here = here.parent


def mount_points() -> list[str]:
    """Every mount point of this process's namespace (from /proc/self/mountinfo: a
    bind mount shares its filesystem's device number, yet a rename out of it fails
    with EXDEV, so it is a volume of its own here as for the trash)."""
    try:
        with open("/proc/self/mountinfo", "rb") as fh:
            lines = fh.read().splitlines()
    except OSError:
        return []
    out = []
    for line in lines:
        fields = line.split(b" ")
        if len(fields) > 4:
            raw = re.sub(rb"\\([0-7]{3})", lambda m: bytes([int(m[1], 8)]), fields[4])
            out.append(os.fsdecode(raw))
    return out


def volume_top(path: str | os.PathLike[str]) -> Path:
    """The top folder of the volume holding `path`: the deepest mount point above it,
    or, without /proc, the highest folder above it on the same device."""
    here = Path(os.path.realpath(path))
    tops = [Path(m) for m in mount_points() if here == Path(m) or Path(m) in here.parents]
    if tops:
        return max(tops, key=lambda p: len(p.parts))
    dev = device_of(here)
    while here != here.parent and device_of(here.parent) == dev:
        here = here.parent
    return here


def place_for(path: str, home: Path) -> Place:
    """The quarantine folder for the file at `path`, the home quarantine being `home`."""
    dev = device_of(os.path.dirname(path))
    top = volume_top(os.path.dirname(path))
    if dev is None or (dev == device_of(home) and volume_top(_existing(home)) == top):
        return Place(home, False)
    folder = top / VOLUME_FOLDER
    why = _usable(folder)
    if why is None:
        return Place(folder, True)
    note = f"{folder} {why}: quarantined in {home} instead (copied across filesystems)"
    if top not in _said:
        _said.add(top)
        log.warning(note, extra={"event": "quarantine_fallback", "path": str(folder)})
    return Place(home, False, note)


def _existing(path: Path) -> Path:
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def _usable(folder: Path) -> str | None:
    """Why the volume's quarantine folder cannot be used (None when it can), making it
    if it is missing."""
    try:
        os.mkdir(folder, 0o700)
        os.chmod(folder, 0o700, follow_symlinks=False)  # mkdir's mode is masked by the umask
    except FileExistsError:
        pass
    except OSError as exc:
        if exc.errno == errno.EROFS:
            return "cannot be made: the volume is read-only"
        return f"cannot be made: {exc.strerror}"
    try:
        st = os.lstat(folder)
    except OSError as exc:
        return f"cannot be read: {exc.strerror}"
    if stat.S_ISLNK(st.st_mode):
        return "is a symbolic link, refused"
    if not stat.S_ISDIR(st.st_mode):
        return "is not a folder, refused"
    if st.st_uid != os.geteuid():
        return "belongs to another user, refused"
    if not os.access(folder, os.W_OK | os.X_OK):
        return "cannot be written"
    return None


def open_folder(place: Place, parts: tuple[str, ...]) -> int:
    """A descriptor on `parts` below a volume's quarantine folder, each folder opened
    without following a symbolic link and made 0700 where missing; the quarantine
    folder itself is checked again once open (it may have been swapped since)."""
    top = moving.open_folder(str(place.folder.parent), (place.folder.name,), create=False)
    try:
        if os.fstat(top).st_uid != os.geteuid():
            raise OSError(errno.EPERM, f"{place.folder} belongs to another user")
        return moving.open_folder(top, parts, create=True, mode=0o700)
    finally:
        os.close(top)
