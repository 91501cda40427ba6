"""A first scan into a new index starts reading at once.

`watcherd scan` spends about half a second importing SQLAlchemy and opening the index
before it knows which files to read. Into an index that does not exist yet, that is
every file it finds: so the first files found go to the workers at once, while the
command is still starting, and the scan takes them over (scan_reads.ordered_map) when
they are the first it wants, as they are unless the folder changed in between. An index
that exists is not guessed at: a re-scan of an unchanged tree must read nothing.
"""

from __future__ import annotations

from collections.abc import Iterable
from functools import partial
from pathlib import Path

from . import index_location
from .config import Config
from .scan_reads import ReadAhead
from .walk import entries_under

# Enough to keep two workers busy for the half second (a few hundred phone pictures,
# a few dozen camera ones), and no more: these wait in memory until the scan takes them.
AHEAD_FILES = 256
AHEAD_BYTES = 48 * 1024 * 1024


def start(paths: Iterable[Path], config: Config, db_path: Path | str) -> ReadAhead | None:
    """Start reading the first files under `paths` when the index at `db_path` is new."""
    if index_location.exists(db_path):
        return None
    roots = [Path(p).expanduser().absolute() for p in paths]  # as scanner.scan has them

    def first() -> list[str]:
        found: list[str] = []
        size = 0
        for root in roots:
            for entry in entries_under(root, config, []):  # the scan records what fails
                found.append(entry.path)
                size += entry.size
                if len(found) >= AHEAD_FILES or size >= AHEAD_BYTES:
                    return found
        return found

    return ReadAhead(read(config.max_pixels), first, config.effective_workers())


def read(max_pixels: int):
    """fingerprint.reader, from a module the command imports before the decoders."""
    return partial(_fingerprint, max_pixels=max_pixels)


def _fingerprint(path: str, max_pixels: int):
    from .fingerprint import fingerprint_file

    return fingerprint_file(path, max_pixels)
