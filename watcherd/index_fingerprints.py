"""What the matcher and verification keep of each picture beside its row: region
hashes and thumbnails, and the rows the matcher's arrays are built from."""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from sqlalchemy import delete, insert, select
from sqlalchemy.orm import Session

from .index_sql import (
    _DELETE_REGIONS,
    _DELETE_THUMBNAIL,
    _INSERT_REGIONS,
    _INSERT_THUMBNAIL,
    _REGION_DHASHES,
    _THUMBNAILS,
    _batches,
)
from .models import (
    ACTIVE,
    File,
    RegionHash,
    Video,
    to_signed,
    to_unsigned,
)


class Fingerprints:
    """Part of `Index` (index.py), which owns the session they all use."""

    session: Session

    def hash_rows(self, ids: list[int] | None = None) -> Iterator[tuple[int, int, int]]:
        """(id, phash, dhash) of every active image (or of those among `ids`), streamed
        for building the HashIndex."""
        stmt = select(File.id, File.phash, File.dhash).where(
            File.status == ACTIVE, File.phash.is_not(None)
        )
        yield from self._rows_of(stmt, File.id, ids)

    def _rows_of(self, stmt, key, ids: list[int] | None) -> Iterator[tuple]:
        if ids is None:
            yield from self._plain_rows(stmt)
            return
        for chunk in _batches(sorted(ids)):  # in order across batches, as ordered within
            yield from self._plain_rows(stmt.where(key.in_(chunk)))

    def _plain_rows(self, stmt) -> Iterator[tuple]:
        """Rows as plain tuples straight from the database driver.

        Loading a million fingerprints through SQLAlchemy's Row objects takes seconds;
        the driver's own cursor takes a fraction of that. Still backend-neutral: the
        statement is compiled for whatever dialect the engine speaks, and read through
        a server-side cursor on PostgreSQL.
        """
        conn = self.session.connection()
        sql = stmt.compile(dialect=conn.dialect, compile_kwargs={"literal_binds": True})
        driver = conn.connection.driver_connection
        if conn.dialect.name == "postgresql":
            # a server-side cursor: a client-side one holds every row of the result in
            # the client at once (ten million region rows at a million photos)
            cursor = driver.cursor(name=f"watcherd_rows_{id(stmt)}")
            cursor.itersize = 10_000
        else:
            cursor = driver.cursor()
        try:
            cursor.execute(str(sql))
            while batch := cursor.fetchmany(10_000):
                yield from batch
        finally:
            cursor.close()

    def set_regions(self, file_id: int, regions, fresh: bool = False) -> None:
        """Replace a file's region hashes with (region, phash, dhash) rows (`fresh`: a
        row created just now, with nothing to replace)."""
        conn = self._core()  # no RegionHash objects are ever loaded: nothing to keep in step
        if not fresh:
            conn.execute(_DELETE_REGIONS, {"fid": file_id})
        if regions:
            _INSERT_REGIONS.run(
                conn,
                [
                    {"file_id": file_id, "region": r, "phash": to_signed(p), "dhash": to_signed(d)}
                    for r, p, d in regions
                ],
            )

    def set_thumbnail(self, file_id: int, jpeg: bytes | None, fresh: bool = False) -> None:
        conn = self._core()  # nor Thumbnail objects
        if not fresh:
            conn.execute(_DELETE_THUMBNAIL, {"fid": file_id})
        if jpeg:
            _INSERT_THUMBNAIL.run(conn, {"file_id": file_id, "jpeg": jpeg})

    def thumbnails(self, file_ids: Iterable[int]) -> dict[int, bytes]:
        """Stored thumbnails of these files (those that have one)."""
        out: dict[int, bytes] = {}
        conn = self._core()  # read on the driver: verification asks for them per newcomer
        for ids in _batches(file_ids):
            out.update({fid: jpeg for fid, jpeg in _THUMBNAILS.run(conn, {"ids": ids})})
        return out

    def regions_of(self, file_id: int) -> list[tuple[int, int, int]]:
        stmt = select(RegionHash.region, RegionHash.phash, RegionHash.dhash).where(
            RegionHash.file_id == file_id
        )
        return [tuple(r) for r in self.session.execute(stmt.order_by(RegionHash.region))]

    def region_dhashes(self, pairs: Iterable[tuple[int, int]]) -> dict[tuple[int, int], int]:
        """The dHash (unsigned) of each (file id, region) found, for the few regions whose
        pHash came close to a newcomer's: the matcher keeps only region pHashes in memory."""
        wanted = set(pairs)
        out: dict[tuple[int, int], int] = {}
        conn = self._core()
        for ids in _batches({fid for fid, _ in wanted}):
            for fid, region, dhash in _REGION_DHASHES.run(conn, {"ids": ids}):
                if (fid, region) in wanted:
                    out[fid, region] = to_unsigned(dhash)
        return out

    def region_rows(self, ids: list[int] | None = None) -> Iterator[tuple[int, int, int]]:
        """(file id, region, phash) of every active image (or of those among `ids`),
        ordered by file and region, for the region array."""
        stmt = (
            select(RegionHash.file_id, RegionHash.region, RegionHash.phash)
            .join(File, File.id == RegionHash.file_id)
            .where(File.status == ACTIVE)
            .order_by(RegionHash.file_id, RegionHash.region)
        )
        yield from self._rows_of(stmt, RegionHash.file_id, ids)

    def set_video(self, file_id: int, duration: float, frames: bytes, fresh: bool = False) -> None:
        """A video's length and packed sampled frames (video_match.packed)."""
        conn = self._core()
        if not fresh:
            conn.execute(delete(Video).where(Video.file_id == file_id))
        conn.execute(insert(Video).values(file_id=file_id, duration=duration, frames=frames))

    def videos_between(self, shortest: float, longest: float) -> list[tuple[int, float, bytes]]:
        """(file id, length, packed frames) of the active videos this long."""
        stmt = (
            select(Video.file_id, Video.duration, Video.frames)
            .join(File, File.id == Video.file_id)
            .where(Video.duration.between(shortest, longest), File.status == ACTIVE)
        )
        return [tuple(row) for row in self.session.execute(stmt)]

    def video_durations(self, file_ids: Iterable[int]) -> dict[int, float]:
        """The length in seconds of each of these files that is a video read as one."""
        out: dict[int, float] = {}
        for ids in _batches(file_ids):
            stmt = select(Video.file_id, Video.duration).where(Video.file_id.in_(ids))
            out.update({fid: duration for fid, duration in self.session.execute(stmt)})
        return out
