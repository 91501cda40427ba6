"""The index schema: one row per file, one row per duplicate decision.

Perceptual hashes are unsigned 64-bit values stored as signed int64 (SQLite and
PostgreSQL have no unsigned 64-bit integer); `to_signed`/`to_unsigned` convert.
"""

from __future__ import annotations

from datetime import datetime, timezone

from sqlalchemy import BigInteger, Float, ForeignKey, Index, Integer, LargeBinary, String, Text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship
from sqlalchemy.types import DateTime, TypeDecorator

from . import pathtext

ACTIVE, QUARANTINED, MISSING, ERROR = "active", "quarantined", "missing", "error"


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


def to_signed(value: int | None) -> int | None:
    if value is None:
        return None
    return value - (1 << 64) if value >= (1 << 63) else value


def to_unsigned(value: int | None) -> int | None:
    if value is None:
        return None
    return value + (1 << 64) if value < 0 else value


class UTCDateTime(TypeDecorator):
    """Timezone-aware UTC datetimes on every backend (SQLite stores naive text)."""

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value, dialect):
        if value is not None and value.tzinfo is not None:
            value = value.astimezone(timezone.utc).replace(tzinfo=None)
        return value

    def process_result_value(self, value, dialect):
        return value.replace(tzinfo=timezone.utc) if value is not None else None


class PathText(TypeDecorator):
    """A file path: any name Linux allows, non-UTF-8 bytes included (see pathtext)."""

    impl = Text
    cache_ok = True

    def load_dialect_impl(self, dialect):
        # Paths sort and compare as their bytes: the folder-range queries (`path >=
        # 'dir/' AND path < 'dir0'`) count `/ph/A/x` and `/ph/a#b/x` as inside `/ph/a`
        # under a language's collation, and a folder rename would rewrite a neighbour.
        if dialect.name == "postgresql":
            return dialect.type_descriptor(Text(collation="C"))
        return dialect.type_descriptor(Text())

    def process_bind_param(self, value, dialect):
        return None if value is None else pathtext.to_db(value)

    def process_result_value(self, value, dialect):
        return None if value is None else pathtext.from_db(value)


class Base(DeclarativeBase):
    pass


class SchemaVersion(Base):
    __tablename__ = "schema_version"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    version: Mapped[int] = mapped_column(Integer)


class File(Base):
    __tablename__ = "files"
    # A path is one machine's: the same path on two machines of one index (a server
    # index shared by a family) is two files.
    __table_args__ = (Index("ux_files_machine_path", "machine", "path", unique=True),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    path: Mapped[str] = mapped_column(PathText)
    root: Mapped[str] = mapped_column(PathText, index=True)
    size: Mapped[int] = mapped_column(BigInteger)
    mtime_ns: Mapped[int] = mapped_column(BigInteger)
    inode: Mapped[int | None] = mapped_column(BigInteger)
    sha256: Mapped[str | None] = mapped_column(String(64), index=True)
    width: Mapped[int | None] = mapped_column(Integer)
    height: Mapped[int | None] = mapped_column(Integer)
    format: Mapped[str | None] = mapped_column(String(16))
    phash: Mapped[int | None] = mapped_column(BigInteger)
    dhash: Mapped[int | None] = mapped_column(BigInteger)
    # No index on status: nearly every row is "active", and with one SQLite may prefer it
    # to the selective sha256 and path indexes.
    status: Mapped[str] = mapped_column(String(16), default=ACTIVE)
    error: Mapped[str | None] = mapped_column(Text)
    # The file this one was judged a redundant copy of (its direct partner); None when kept.
    duplicate_of_id: Mapped[int | None] = mapped_column(
        ForeignKey("files.id", ondelete="SET NULL"), index=True
    )
    # When the photo was taken, from EXIF DateTimeOriginal, as "YYYY-MM-DD HH:MM:SS"
    # in the camera's local time (EXIF rarely says which zone).
    taken_at: Mapped[str | None] = mapped_column(String(19))
    first_seen: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    indexed_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    # the machine whose disk holds the file (config `machine`, the host name by default)
    machine: Mapped[str] = mapped_column(String(64), default="", server_default="")

    duplicate_of: Mapped[File | None] = relationship(remote_side=[id])

    @property
    def pixels(self) -> int:
        return (self.width or 0) * (self.height or 0)


class Decision(Base):
    __tablename__ = "decisions"
    __table_args__ = (
        Index("ix_decisions_file_id", "file_id"),
        Index("ix_decisions_original_id", "original_id"),  # since schema 6
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    file_id: Mapped[int] = mapped_column(ForeignKey("files.id", ondelete="CASCADE"))
    original_id: Mapped[int] = mapped_column(ForeignKey("files.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(String(16))  # exact | near | similar
    distance: Mapped[int] = mapped_column(Integer)
    transform: Mapped[str | None] = mapped_column(String(16))
    decided_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)
    action: Mapped[str] = mapped_column(String(16))  # flagged | quarantined
    quarantined_path: Mapped[str | None] = mapped_column(PathText)
    # False once the pair stops being a live duplicate (file gone, restored, re-decided).
    current: Mapped[bool] = mapped_column(default=True)
    # the machine that reached it: when the redundant copy is another machine's, that
    # machine applies its own action to it (remote_verdicts.py)
    decided_on: Mapped[str] = mapped_column(String(64), default="", server_default="")

    file: Mapped[File] = relationship(foreign_keys=[file_id])
    original: Mapped[File] = relationship(foreign_keys=[original_id])


# Move journal states. A move is committed as an intent before the file is touched and
# marked done (or rolled back) after, so recovery knows what to look for and where.
INTENT, DONE, ROLLED_BACK = "intent", "done", "rolled_back"


class Move(Base):
    """One file move watcherd made or meant to make: into quarantine, or back out."""

    __tablename__ = "moves"
    __table_args__ = (Index("ix_moves_state", "state"), Index("ix_moves_file_id", "file_id"))

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    machine: Mapped[str] = mapped_column(
        String(64), default="", server_default=""
    )  # whose disk it moves on
    file_id: Mapped[int] = mapped_column(ForeignKey("files.id", ondelete="CASCADE"))
    decision_id: Mapped[int | None] = mapped_column(ForeignKey("decisions.id", ondelete="SET NULL"))
    kind: Mapped[str] = mapped_column(String(16))  # quarantine | restore
    src: Mapped[str] = mapped_column(PathText)
    dest: Mapped[str] = mapped_column(PathText)
    sha256: Mapped[str] = mapped_column(String(64))
    size: Mapped[int] = mapped_column(BigInteger)
    mtime_ns: Mapped[int] = mapped_column(BigInteger)
    state: Mapped[str] = mapped_column(String(16), default=INTENT)
    note: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # since schema 8: the process that journalled it (see owners.py), and the root the
    # file was moved out of (a restore may always write under it)
    owner: Mapped[str | None] = mapped_column(String(64))
    root: Mapped[str | None] = mapped_column(PathText)
    root_real: Mapped[str | None] = mapped_column(PathText)  # that root, no symlink in it

    file: Mapped[File] = relationship()
    decision: Mapped[Decision | None] = relationship()


class IgnoredPair(Base):
    """Two files the user said are not duplicates (`watcherd ignore`, or a restore)."""

    __tablename__ = "ignored_pairs"
    __table_args__ = (Index("ux_ignored_pair", "file_a_id", "file_b_id", unique=True),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    file_a_id: Mapped[int] = mapped_column(ForeignKey("files.id", ondelete="CASCADE"))
    file_b_id: Mapped[int] = mapped_column(ForeignKey("files.id", ondelete="CASCADE"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class RegionHash(Base):
    """Hashes of parts of a picture (centre, corners, top), so cropped copies match."""

    __tablename__ = "region_hashes"

    file_id: Mapped[int] = mapped_column(
        ForeignKey("files.id", ondelete="CASCADE"), primary_key=True
    )
    region: Mapped[int] = mapped_column(Integer, primary_key=True)
    phash: Mapped[int] = mapped_column(BigInteger)
    dhash: Mapped[int] = mapped_column(BigInteger)


class Thumbnail(Base):
    """A small JPEG of each picture, made while it was decoded for hashing anyway, so
    the HTML report shows duplicates side by side without reading a photo again."""

    __tablename__ = "thumbnails"

    file_id: Mapped[int] = mapped_column(
        ForeignKey("files.id", ondelete="CASCADE"), primary_key=True
    )
    jpeg: Mapped[bytes] = mapped_column(LargeBinary)


class Video(Base):
    """What matching needs of a video: its length and the hashes of frames sampled
    across it (video.SAMPLES of them, upright), packed as (ms, pHash, dHash) triples of
    unsigned 64-bit integers."""

    __tablename__ = "videos"

    file_id: Mapped[int] = mapped_column(
        ForeignKey("files.id", ondelete="CASCADE"), primary_key=True
    )
    duration: Mapped[float] = mapped_column(Float, index=True)
    frames: Mapped[bytes] = mapped_column(LargeBinary)
