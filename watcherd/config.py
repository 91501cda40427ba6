"""Configuration: one TOML file, validated strictly, with defaults for everything.

A typo in a config file must not silently fall back to a default (a user who writes
`acton = "quarantine"` would otherwise believe files are being moved), so unknown keys,
wrong types and wrong values stop with one message naming the key and the file.
"""

from __future__ import annotations

import contextlib
import fnmatch
import functools
import os
import re
import sys
from dataclasses import dataclass, fields
from pathlib import Path, PurePath
from typing import Any

import platformdirs

from . import volumes

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised only on 3.10
    import tomli as tomllib

APP = "watcherd"

IMAGE_EXTENSIONS = (
    "jpg", "jpeg", "jpe", "png", "webp", "gif", "bmp", "tif", "tiff",
    "heic", "heif", "avif",
)  # fmt: skip
VIDEO_EXTENSIONS = ("mp4", "mov", "m4v", "3gp", "mkv", "avi", "webm")

DEFAULT_INCLUDE = tuple(f"*.{ext}" for ext in IMAGE_EXTENSIONS + VIDEO_EXTENSIONS)
# Hidden files and the temporary names browsers, sync tools and editors write before
# the final rename: such a file is incomplete by definition.
DEFAULT_EXCLUDE = (".*", "*.part", "*.crdownload", "*.tmp", "*~", "*.partial", "*.download")


def _globs(patterns: tuple[str, ...]) -> re.Pattern[str]:
    """One regex matching a (lower-cased) name exactly when fnmatchcase matches it with
    any of `patterns`: a re-scan checks every file's name, and one compiled match is
    several times quicker than a loop over the patterns."""
    return re.compile("|".join(f"(?:{fnmatch.translate(p.lower())})" for p in patterns) or "(?!)")


class ConfigError(Exception):
    """A configuration problem the user must fix; the message names file and key."""


def default_config_path() -> Path:
    return Path(platformdirs.user_config_dir(APP)) / "config.toml"


def default_data_dir() -> Path:
    return Path(platformdirs.user_data_dir(APP))


def default_db_path() -> Path:
    return default_data_dir() / "index.sqlite3"


@dataclass(frozen=True)
class Root:
    """A watched folder. `protect` marks a reference folder nothing is ever moved out of;
    `action`, when set, is this folder's own (a synced folder only flags)."""

    path: Path
    protect: bool = False
    poll: bool = False
    action: str | None = None


@dataclass(frozen=True)
class Config:
    roots: tuple[Root, ...] = ()
    include: tuple[str, ...] = DEFAULT_INCLUDE
    exclude: tuple[str, ...] = DEFAULT_EXCLUDE
    action: str = "flag"
    flag_only: tuple[str, ...] = ()  # globs on file names only ever flagged, never moved
    keep: str = "best"
    phash_distance: int = 10
    dhash_distance: int = 16
    # Stricter limits where more comparisons are made (regions, the seven turned poses),
    # and looser ones for `similar` shots; see matching.py and the README.
    crop_phash_distance: int = 8
    crop_dhash_distance: int = 12
    turned_phash_distance: int = 6
    similar_phash_distance: int = 16
    similar_dhash_distance: int = 22
    # None: the home quarantine below, and a quarantine at the top of each other volume
    # (volumes.py); set, every quarantined file goes there.
    quarantine_dir: Path | None = None
    notifications: bool = True
    max_pixels: int = 250_000_000
    workers: int = 0
    settle_seconds: float = 2.0
    poll_interval: float = 5.0
    read_timeout: float = 120.0
    source: Path | None = None
    # this machine's name in an index several machines share; "" is the host name
    machine: str = ""

    def is_included(
        self, path: str | os.PathLike[str], root: str | os.PathLike[str] | None = None
    ) -> bool:
        """Whether a file is one watcherd should index: name matches include, no part excluded.

        Matching is case-insensitive because phones write `IMG_0001.JPG` and `.jpg` alike.
        With `root`, every folder between the root and the file is checked against
        `exclude` too, so a file inside `.thumbnails/` is skipped, while a root that
        itself lives in a hidden folder still works.
        """
        text = os.fspath(path)
        if self.in_quarantine(text):
            return False
        name = os.path.basename(text) or PurePath(text).name
        if not self._include_re.match(name.lower()):
            return False
        parts = [name]
        if root is not None:
            with contextlib.suppress(ValueError):
                parts = list(PurePath(text).relative_to(root).parts)
        return not any(self._excluded(part) for part in parts)

    @functools.cached_property
    def _include_re(self) -> re.Pattern[str]:
        return _globs(self.include)

    @functools.cached_property
    def _exclude_re(self) -> re.Pattern[str]:
        return _globs(self.exclude)

    @property
    def home_quarantine(self) -> Path:
        """Where quarantined files go when their own volume is not used for them."""
        return self.quarantine_dir or default_data_dir() / "quarantine"

    @property
    def per_volume(self) -> bool:
        """Whether a file on another volume is quarantined at the top of that volume."""
        return self.quarantine_dir is None

    def in_quarantine(self, path: str | os.PathLike[str]) -> bool:
        """Files in a quarantine are never indexed as newcomers, even inside a root."""
        q = self._quarantine_text
        p = os.fspath(path)
        return p == q or p.startswith(q + "/") or volumes.in_volume_quarantine(p)

    @functools.cached_property
    def _quarantine_text(self) -> str:
        return str(self.home_quarantine).rstrip("/")

    def _excluded(self, name: str) -> bool:
        return self._exclude_re.match(name.lower()) is not None

    def is_included_dir(self, name: str) -> bool:
        """Whether to descend into a folder called `name` (hidden folders are skipped)."""
        return not self._excluded(name)

    def root_for(self, path: Path) -> Root | None:
        """The configured root containing `path` (the deepest one), if any."""
        best: Root | None = None
        for root in self.roots:
            inside = path == root.path or root.path in path.parents
            if inside and (best is None or len(root.path.parts) > len(best.path.parts)):
                best = root
        return best

    def action_for(self, path: str) -> str:
        """What is done with a redundant copy at `path`: flagged if its name matches
        `flag_only`, else its root's own action, else `action`."""
        name = os.path.basename(path).lower()
        if any(fnmatch.fnmatchcase(name, glob.lower()) for glob in self.flag_only):
            return "flag"
        root = self.root_for(Path(path))
        return root.action if root is not None and root.action else self.action

    def effective_workers(self) -> int:
        return self.workers or os.cpu_count() or 1

    def to_dict(self) -> dict[str, Any]:
        return {
            "roots": [
                {"path": str(r.path), "protect": r.protect, "poll": r.poll}
                | ({"action": r.action} if r.action else {})
                for r in self.roots
            ],
            "include": list(self.include),
            "exclude": list(self.exclude),
            "action": self.action,
            "flag_only": list(self.flag_only),
            "keep": self.keep,
            "phash_distance": self.phash_distance,
            "dhash_distance": self.dhash_distance,
            "crop_phash_distance": self.crop_phash_distance,
            "crop_dhash_distance": self.crop_dhash_distance,
            "turned_phash_distance": self.turned_phash_distance,
            "similar_phash_distance": self.similar_phash_distance,
            "similar_dhash_distance": self.similar_dhash_distance,
            **({"quarantine_dir": str(self.quarantine_dir)} if self.quarantine_dir else {}),
            "notifications": self.notifications,
            "max_pixels": self.max_pixels,
            "workers": self.workers,
            "settle_seconds": self.settle_seconds,
            "poll_interval": self.poll_interval,
            "read_timeout": self.read_timeout,
            **({"machine": self.machine} if self.machine else {}),
        }


_FLOAT_RANGES = {
    "settle_seconds": (0.0, 3600.0),
    "poll_interval": (0.1, 3600.0),
    "read_timeout": (1.0, 86400.0),
}
_CHOICES = {"action": ("flag", "quarantine", "link"), "keep": ("best", "first")}
NEAR_KEYS = (
    "phash_distance", "dhash_distance", "crop_phash_distance", "crop_dhash_distance",
    "turned_phash_distance", "similar_phash_distance", "similar_dhash_distance",
)  # fmt: skip
_INT_RANGES = {
    **{key: (0, 32) for key in NEAR_KEYS},
    "max_pixels": (1, 10**10),
    "workers": (0, 256),
}


def _did_you_mean(key: str, known) -> str:
    """ " (did you mean 'action'?)" for a key one typo away from a known one."""
    import difflib

    close = difflib.get_close_matches(key, sorted(known), n=1)
    return f" (did you mean '{close[0]}'?)" if close else ""


def _expand(value: str) -> Path:
    return Path(os.path.expandvars(os.path.expanduser(value))).absolute()


def _parse_roots(value: Any, where: str) -> tuple[Root, ...]:
    if not isinstance(value, list):
        raise ConfigError(f"{where}: 'roots' must be a list of folders")
    roots = []
    for i, item in enumerate(value):
        key = f"roots[{i}]"
        if isinstance(item, str):
            roots.append(Root(_expand(item)))
            continue
        if not isinstance(item, dict):
            raise ConfigError(f"{where}: '{key}' must be a path or a table with 'path'")
        unknown = set(item) - {"path", "protect", "poll", "action"}
        if unknown:
            raise ConfigError(f"{where}: unknown key '{key}.{sorted(unknown)[0]}'")
        if not isinstance(item.get("path"), str):
            raise ConfigError(f"{where}: '{key}.path' must be a string")
        for flag in ("protect", "poll"):
            if not isinstance(item.get(flag, False), bool):
                raise ConfigError(f"{where}: '{key}.{flag}' must be true or false")
        action = item.get("action")
        if action is not None and action not in _CHOICES["action"]:
            allowed = '"flag", "quarantine" or "link"'
            raise ConfigError(f"{where}: '{key}.action' must be {allowed}")
        flags = bool(item.get("protect")), bool(item.get("poll"))
        roots.append(Root(_expand(item["path"]), *flags, action))
    return tuple(roots)


def from_mapping(data: dict[str, Any], source: Path | None = None) -> Config:
    """Build a validated Config from parsed TOML; keys may sit at top level or in [near]."""
    where = str(source) if source else "configuration"
    data = dict(data)
    near = data.pop("near", {})
    if not isinstance(near, dict):
        raise ConfigError(f"{where}: 'near' must be a table")
    for key, value in near.items():
        if key not in NEAR_KEYS:
            raise ConfigError(f"{where}: unknown key 'near.{key}'{_did_you_mean(key, NEAR_KEYS)}")
        data[key] = value

    known = {f.name for f in fields(Config)} - {"source"}
    kwargs: dict[str, Any] = {"source": source}
    for key, value in data.items():
        if key not in known:
            raise ConfigError(f"{where}: unknown key '{key}'{_did_you_mean(key, known)}")
        if key == "roots":
            kwargs[key] = _parse_roots(value, where)
        elif key in ("include", "exclude", "flag_only"):
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                raise ConfigError(f"{where}: '{key}' must be a list of glob strings")
            kwargs[key] = tuple(value)
        elif key in _CHOICES:
            if value not in _CHOICES[key]:
                allowed = " or ".join(f'"{c}"' for c in _CHOICES[key])
                raise ConfigError(f"{where}: '{key}' must be {allowed}, not {value!r}")
            kwargs[key] = value
        elif key in _INT_RANGES:
            lo, hi = _INT_RANGES[key]
            if not isinstance(value, int) or isinstance(value, bool) or not lo <= value <= hi:
                raise ConfigError(f"{where}: '{key}' must be a whole number from {lo} to {hi}")
            kwargs[key] = value
        elif key in _FLOAT_RANGES:
            lo, hi = _FLOAT_RANGES[key]
            ok = isinstance(value, (int, float)) and not isinstance(value, bool)
            if not ok or not lo <= value <= hi:
                raise ConfigError(f"{where}: '{key}' must be a number of seconds from {lo} to {hi}")
            kwargs[key] = float(value)
        else:
            kwargs[key] = _single(key, value, where)
    return Config(**kwargs)


def _single(key: str, value: Any, where: str) -> Any:
    """A key of its own kind: quarantine_dir, notifications, machine."""
    if key == "quarantine_dir":
        if not isinstance(value, str):
            raise ConfigError(f"{where}: 'quarantine_dir' must be a string")
        return _expand(value)
    if key == "notifications":
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: 'notifications' must be true or false")
        return value
    if not isinstance(value, str) or not 0 < len(value) <= 64:  # machine
        raise ConfigError(f"{where}: 'machine' must be a name of 1 to 64 characters")
    return value


def config_path(path: str | os.PathLike[str] | None = None) -> tuple[Path, bool]:
    """The file to use (explicit path, else $WATCHERD_CONFIG, else the default) and
    whether the user named it."""
    explicit = path or os.environ.get("WATCHERD_CONFIG")
    return (Path(explicit).expanduser() if explicit else default_config_path()), bool(explicit)


def load(path: str | os.PathLike[str] | None = None) -> Config:
    """Load the configuration file (see `config_path`).

    A missing default file means defaults; a missing file the user named is an error,
    because they clearly expected it to be read.
    """
    cfg_path, explicit = config_path(path)
    if not cfg_path.exists():
        if explicit:
            raise ConfigError(f"{cfg_path}: configuration file not found")
        return Config()
    try:
        with open(cfg_path, "rb") as fh:
            data = tomllib.load(fh)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{cfg_path}: not valid TOML: {exc}") from None
    except OSError as exc:
        raise ConfigError(f"{cfg_path}: cannot read: {exc.strerror}") from None
    return from_mapping(data, cfg_path)


def resolve_db_path(option: str | os.PathLike[str] | None = None) -> Path | str:
    """The index: `--db`, else $WATCHERD_DB, else the default file. A path, or a URL
    (`sqlite:///path`, `postgresql+psycopg://user@host/db`): see index_location.resolve,
    which never takes a URL for a file name in the current folder."""
    from . import index_location

    explicit = option or os.environ.get("WATCHERD_DB")
    if not explicit:
        return default_db_path()
    try:
        return index_location.resolve(os.fspath(explicit))
    except index_location.BadTarget as exc:
        raise ConfigError(str(exc)) from None


DEFAULT_FILE = """\
# watcherd configuration. Every key is optional; the values shown are the defaults.

# Folders to watch and scan. A plain path, or a table:
#   roots = ["~/Pictures", {{ path = "~/Camera originals", protect = true }}]
# `protect = true` marks a reference folder: matched against, never moved out of.
# `poll = true` watches by polling (network filesystems where inotify sees nothing).
# `action = "flag"` gives a root its own action: a synced folder (Syncthing,
# Nextcloud) passes a move out of it on to every device as a deletion.
roots = [{roots}]

# Files to index (case-insensitive globs on the file name). Images and videos are
# matched by appearance too; other files byte-for-byte only.
include = [{include}]

# Names to skip: any path component matching one of these excludes the file.
exclude = [{exclude}]

# What to do with a duplicate: "flag" (record it, touch nothing), "quarantine"
# (move it to a quarantine folder, from where `watcherd restore` brings it back) or
# "link" (an exact copy becomes a reflink or hard link of the kept file, its path
# staying; near copies are flagged; `watcherd restore` gives it its own bytes back).
action = "flag"

# Names (case-insensitive globs) only ever flagged, whatever `action` says:
#   flag_only = ["Screenshot_*"]
flag_only = []

# Which copy is kept: "best" (more pixels, then larger file, then older) or
# "first" (the copy indexed first is always kept).
keep = "best"

# Quarantined files go to {quarantine}, or, for a file on another
# disk or mount, to .watcherd-quarantine-UID at the top of that volume (one rename,
# nothing copied across). Set quarantine_dir to send every one to a single folder:
#   quarantine_dir = "~/Duplicates"
notifications = true

# Images with more pixels than this are recorded as errors instead of decoded
# (protects against decompression bombs).
max_pixels = 250000000

# Parallel decoding processes; 0 means one per CPU core.
workers = 0

# The daemon decides a file when its writer closes it; a file that arrives without a
# close (moved in, or on a polled network folder) once its size and modification time
# have not changed for this many seconds.
settle_seconds = 2.0

# How often folders with `poll = true` (and network filesystems) are checked.
poll_interval = 5.0

# A file still being read after this many seconds (a stalled network mount, a
# pathological image) is recorded as an error and skipped, so it cannot hold up
# every file after it.
read_timeout = 120.0

# This machine's name in an index several machines share (a PostgreSQL server): each
# machine moves and restores only its own files. The host name when unset:
#   machine = "laptop"

[near]
# Largest Hamming distances (out of 64 bits) at which two images count as the same
# picture. Both the pHash and the dHash must be within their limit.
phash_distance = 10
dhash_distance = 16
# A copy that is a crop of the other picture (matched through region hashes).
crop_phash_distance = 8
crop_dhash_distance = 12
# A copy turned or mirrored relative to the other (pHash; the dHash limit as above).
turned_phash_distance = 6
# "similar": another shot of the same scene, reported and never moved.
similar_phash_distance = 16
similar_dhash_distance = 22
"""


def home_relative(path: Path) -> str:
    """`path` as a user writes it in the file: `~/Pictures` rather than /home/me/Pictures."""
    home = Path.home()
    path = Path(path).expanduser().absolute()
    return "~/" + str(path.relative_to(home)) if path.is_relative_to(home) else str(path)


def default_file_text(roots: list[Path] | None = None) -> str:
    return DEFAULT_FILE.format(
        roots=", ".join(f'"{home_relative(p)}"' for p in roots or []),
        include=", ".join(f'"{p}"' for p in DEFAULT_INCLUDE),
        exclude=", ".join(f'"{p}"' for p in DEFAULT_EXCLUDE),
        quarantine=home_relative(default_data_dir() / "quarantine"),
    )


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return str(value)
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{k} = {_toml_value(v)}" for k, v in value.items()) + " }"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    raise TypeError(type(value))


def dump_toml(data: dict[str, Any]) -> list[str]:
    """The settings as TOML lines that `load` would read back to the same values."""
    return [f"{key} = {_toml_value(value)}" for key, value in data.items()]
