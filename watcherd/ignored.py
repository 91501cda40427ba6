"""`watcherd ignore`: the pairs of files the user said are not copies of each other."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import delete, select
from sqlalchemy.orm import aliased

from .actions import Mover
from .config import Config
from .index import Index
from .models import File, IgnoredPair


def _files(index: Index, first: Path, second: Path) -> tuple[File, File]:
    a, b = index.file_by_path(str(first)), index.file_by_path(str(second))
    for given, f in ((first, a), (second, b)):
        if f is None:
            raise LookupError(f"not in the index: {given}")
    return a, b


def remember(index: Index, config: Config, first: Path, second: Path) -> bool:
    """Say two files are not copies: any live pairing of them ends."""
    with index.unit():
        a, b = _files(index, first, second)
        Mover(index, config).ignore(a, b.id)
    return True


def forget(index: Index, _config: Config, first: Path, second: Path) -> bool:
    """Take that back; True if they were ignored. They are paired again only when one
    of them is read again (a re-scan of a changed file, `scan --rehash`)."""
    with index.unit():
        a, b = _files(index, first, second)
        low, high = sorted((a.id, b.id))
        gone = index.session.execute(
            delete(IgnoredPair).where(IgnoredPair.file_a_id == low, IgnoredPair.file_b_id == high)
        ).rowcount
    return bool(gone)


def pairs(index: Index) -> list[tuple[str, str]]:
    """Every ignored pair, as paths."""
    fa, fb = aliased(File), aliased(File)
    rows = index.session.execute(
        select(fa.path, fb.path)
        .select_from(IgnoredPair)
        .join(fa, IgnoredPair.file_a_id == fa.id)
        .join(fb, IgnoredPair.file_b_id == fb.id)
        .order_by(fa.path, fb.path)
    )
    return [(a, b) for a, b in rows]
