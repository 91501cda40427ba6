"""Matching: the in-memory fingerprint array and the rule that picks which copy is kept.

The array holds the pHash and dHash of every indexed image; a newcomer is compared
against all of them at once (XOR + popcount in numpy) in each of its eight poses, so a
rotated or mirrored copy is found as easily as a re-encoded one.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from .fingerprint import TRANSFORM_NAMES

# Matches through a region (a cropped copy) must be closer than whole-picture ones:
# more comparisons per newcomer, so a stricter bar keeps precision.
CROP_PHASH_DISTANCE = 8
# A turned or mirrored copy is the same pixels re-encoded, so it lands close; the seven
# extra poses searched would otherwise multiply chance matches between unrelated
# pictures (a pair of tools on white, one lying sideways, matched at distance 10).
TURNED_PHASH_DISTANCE = 6
# "similar": a different shot of the same scene, closer than unrelated pictures ever
# are but not the same picture. Reported, never moved.
SIMILAR_PHASH_DISTANCE = 16
SIMILAR_DHASH_DISTANCE = 22
CROP_DHASH_DISTANCE = 12
# At the edge of the whole-picture limit two shots of one scene a moment apart (the
# subject moved) can look alike as a whole; a copy looks alike everywhere. From this
# distance on, every region the two pictures share must be within REGIONS_AGREE too.
WHOLE_EDGE_PHASH = 9
REGIONS_AGREE = 16
CONTENT_REGION = 10  # fingerprint.CONTENT: the picture without bars or blank background
REGION_NAMES = {
    1: "centre", 2: "top-left", 3: "top-right", 4: "bottom-left", 5: "bottom-right",
    6: "top", 7: "square", 8: "square-85", 9: "square-70", 10: "content", 11: "16:9",
}  # fmt: skip


@dataclass(frozen=True, slots=True)
class Match:
    file_id: int
    distance: int  # pHash Hamming distance in the best pose
    ddistance: int  # dHash Hamming distance in that pose
    transform: str  # how the newcomer was turned to match (identity, mirror, rotate90, ...)


class IdMap:
    """Non-negative int id -> int, in a numpy array indexed by id (-1 means absent).

    File ids are small and dense (SQLite row ids), so this costs 8 bytes per id where a
    dict costs about a hundred: it is what keeps a large index's memory small.
    """

    def __init__(self) -> None:
        self._a = np.full(1024, -1, dtype=np.int64)

    def _fit(self, top: int) -> None:
        if top >= len(self._a):
            if top >= 2**34:
                raise ValueError(f"id {top} is too large for an IdMap")
            new = np.full(max(top + 1, len(self._a) * 2), -1, dtype=np.int64)
            new[: len(self._a)] = self._a
            self._a = new

    def get(self, key: int) -> int | None:
        if 0 <= key < len(self._a):
            value = int(self._a[key])
            return value if value >= 0 else None
        return None

    def __contains__(self, key: int) -> bool:
        return self.get(key) is not None

    def set(self, key: int, value: int) -> None:
        self._fit(key)
        self._a[key] = value

    def set_many(self, keys: np.ndarray, values: np.ndarray) -> None:
        if len(keys):
            self._fit(int(keys.max()))
            self._a[keys] = values

    def pop(self, key: int) -> int | None:
        value = self.get(key)
        if value is not None:
            self._a[key] = -1
        return value


class HashIndex:
    """Fingerprints of indexed images in flat numpy arrays, grown in place.

    Rows are addressed by file id; removal moves the last row into the hole, so the
    arrays stay dense and a search is one vectorised pass per pose.
    """

    def __init__(self, capacity: int = 1024) -> None:
        capacity = max(capacity, 16)
        self._ids = np.zeros(capacity, dtype=np.int64)
        self._ph = np.zeros(capacity, dtype=np.uint64)
        self._dh = np.zeros(capacity, dtype=np.uint64)
        self._n = 0
        self._row = IdMap()

    def __len__(self) -> int:
        return self._n

    def __contains__(self, file_id: int) -> bool:
        return file_id in self._row

    @classmethod
    def from_rows(cls, rows: Iterable[tuple[int, int, int]]) -> HashIndex:
        """Build from (file_id, phash, dhash) rows of distinct ids; hashes unsigned or
        signed 64-bit."""
        dtype = np.dtype([("f", np.int64), ("p", np.uint64), ("d", np.uint64)])
        data = np.fromiter(
            ((f, p & 0xFFFFFFFFFFFFFFFF, d & 0xFFFFFFFFFFFFFFFF) for f, p, d in rows), dtype=dtype
        )
        n = len(data)
        index = cls(n)
        index._ids[:n], index._ph[:n], index._dh[:n] = data["f"], data["p"], data["d"]
        index._n = n
        index._row.set_many(data["f"], np.arange(n, dtype=np.int64))
        return index

    def _grow(self) -> None:
        capacity = len(self._ids) * 2
        for name in ("_ids", "_ph", "_dh"):
            old = getattr(self, name)
            new = np.zeros(capacity, dtype=old.dtype)
            new[: self._n] = old[: self._n]
            setattr(self, name, new)

    def add(self, file_id: int, phash: int, dhash: int) -> None:
        row = self._row.get(file_id)
        if row is None:
            if self._n == len(self._ids):
                self._grow()
            row = self._n
            self._n += 1
            self._row.set(file_id, row)
            self._ids[row] = file_id
        self._ph[row] = phash & 0xFFFFFFFFFFFFFFFF
        self._dh[row] = dhash & 0xFFFFFFFFFFFFFFFF

    def remove(self, file_id: int) -> None:
        row = self._row.pop(file_id)
        if row is None:
            return
        last = self._n - 1
        if row != last:
            moved = int(self._ids[last])
            self._ids[row] = moved
            self._ph[row] = self._ph[last]
            self._dh[row] = self._dh[last]
            self._row.set(moved, row)
        self._n = last

    def search(
        self,
        variants: Sequence[tuple[int, int]],
        max_phash: int,
        max_dhash: int,
        exclude: int | None = None,
    ) -> list[Match]:
        """All indexed images within both distances of any pose of the newcomer.

        `variants` are the newcomer's (phash, dhash) in the order of TRANSFORM_NAMES.
        Each file appears once, in its closest pose; best matches first.
        """
        n = self._n
        if n == 0 or not variants:
            return []
        ph, dh, ids = self._ph[:n], self._dh[:n], self._ids[:n]
        best: dict[int, tuple[int, int, int]] = {}
        for pose, (vp, vd) in enumerate(variants):
            pdist = np.bitwise_count(ph ^ np.uint64(vp & 0xFFFFFFFFFFFFFFFF))
            rows = np.flatnonzero(pdist <= max_phash)
            if rows.size == 0:
                continue
            ddist = np.bitwise_count(dh[rows] ^ np.uint64(vd & 0xFFFFFFFFFFFFFFFF))
            keep = ddist <= max_dhash
            for row, p, d in zip(rows[keep], pdist[rows[keep]], ddist[keep], strict=True):
                file_id = int(ids[row])
                key = (int(p), int(d), pose)
                if file_id != exclude and (file_id not in best or key < best[file_id]):
                    best[file_id] = key
        ordered = sorted(best.items(), key=lambda item: (item[1], item[0]))
        return [Match(fid, p, d, TRANSFORM_NAMES[pose]) for fid, (p, d, pose) in ordered]

    def distance(self, file_id: int, variants: Sequence[tuple[int, int]]) -> int | None:
        """pHash distance from the newcomer (closest pose) to one indexed file."""
        row = self._row.get(file_id)
        if row is None or not variants:
            return None
        stored = int(self._ph[row])
        return min((stored ^ (vp & 0xFFFFFFFFFFFFFFFF)).bit_count() for vp, _ in variants)


class Candidate(Protocol):
    """What the keep rule needs to know about a file."""

    width: int | None
    height: int | None
    size: int
    mtime_ns: int


def _pixels(f: Candidate) -> int:
    return (f.width or 0) * (f.height or 0)


def newcomer_wins(newcomer: Candidate, indexed: Candidate, keep: str) -> bool:
    """True when the newcomer should be kept and the indexed copy becomes the duplicate.

    `best`: more pixels, then the larger file, then the older file (earlier mtime); a full
    tie keeps the indexed copy, so re-deciding never flips a settled pair. `first`: the
    indexed copy is always kept.
    """
    if keep == "first":
        return False
    new_key = (_pixels(newcomer), newcomer.size, -newcomer.mtime_ns)
    old_key = (_pixels(indexed), indexed.size, -indexed.mtime_ns)
    return new_key > old_key


class RegionIndex:
    """Region hashes: several rows per file, kept in flat numpy arrays.

    A file's rows are appended together and found again through one (start, count) span
    per file, so the only Python objects are one dict entry per file (a dict entry per
    row would cost more memory than the hashes themselves). Removed rows are left as
    holes (file id -1) and squeezed out once they are a quarter of the array.
    """

    def __init__(self, capacity: int = 1024) -> None:
        capacity = max(capacity, 16)
        self._fid = np.full(capacity, -1, dtype=np.int64)
        self._reg = np.zeros(capacity, dtype=np.int8)
        self._ph = np.zeros(capacity, dtype=np.uint64)
        self._dh = np.zeros(capacity, dtype=np.uint64)
        self._n = 0
        self._dead = 0
        self._start, self._count = IdMap(), IdMap()  # each file's rows

    def __len__(self) -> int:
        return self._n - self._dead

    def __contains__(self, file_id: int) -> bool:
        return file_id in self._start

    @classmethod
    def from_rows(cls, rows: Iterable[tuple[int, int, int, int]]) -> RegionIndex:
        """Build from (file_id, region, phash, dhash) rows grouped by file id."""
        dtype = np.dtype([("f", np.int64), ("r", np.int8), ("p", np.int64), ("d", np.int64)])
        data = np.fromiter(rows, dtype=dtype)
        index = cls(len(data))
        n = len(data)
        index._fid[:n] = data["f"]
        index._reg[:n] = data["r"]
        index._ph[:n] = data["p"].view(np.uint64)
        index._dh[:n] = data["d"].view(np.uint64)
        index._n = n
        index._index_spans()
        return index

    def _index_spans(self) -> None:
        """Record where each file's (adjacent) rows start and how many there are."""
        fids = self._fid[: self._n]
        live = fids >= 0
        if not live.any():
            return
        rows = np.flatnonzero(live)
        f = fids[rows]
        first = np.r_[True, f[1:] != f[:-1]]
        starts = rows[first]
        counts = np.diff(np.r_[np.flatnonzero(first), len(rows)])
        self._start.set_many(f[first], starts)
        self._count.set_many(f[first], counts)

    def _reserve(self, extra: int) -> None:
        if self._n + extra <= len(self._fid):
            return
        capacity = max(len(self._fid) * 2, self._n + extra)
        for name, fill in (("_fid", -1), ("_reg", 0), ("_ph", 0), ("_dh", 0)):
            old = getattr(self, name)
            new = np.full(capacity, fill, dtype=old.dtype)
            new[: self._n] = old[: self._n]
            setattr(self, name, new)

    def add(self, file_id: int, regions: Sequence[tuple[int, int, int]]) -> None:
        self.remove(file_id)
        if not regions:
            return
        self._reserve(len(regions))
        start = self._n
        for i, (region, ph, dh) in enumerate(regions):
            self._fid[start + i] = file_id
            self._reg[start + i] = region
            self._ph[start + i] = ph & 0xFFFFFFFFFFFFFFFF
            self._dh[start + i] = dh & 0xFFFFFFFFFFFFFFFF
        self._n += len(regions)
        self._start.set(file_id, start)
        self._count.set(file_id, len(regions))

    def remove(self, file_id: int) -> None:
        start, count = self._start.pop(file_id), self._count.pop(file_id)
        if start is None or count is None:
            return
        self._fid[start : start + count] = -1
        self._dead += count
        if self._dead > 1024 and self._dead * 4 > self._n:
            self._compact()

    def _compact(self) -> None:
        keep = np.flatnonzero(self._fid[: self._n] >= 0)
        for name in ("_fid", "_reg", "_ph", "_dh"):
            arr = getattr(self, name)
            arr[: len(keep)] = arr[keep]
        self._fid[len(keep) : self._n] = -1
        self._n, self._dead = len(keep), 0
        self._start, self._count = IdMap(), IdMap()
        self._index_spans()

    def search(
        self, phash: int, dhash: int, max_phash: int, max_dhash: int
    ) -> list[tuple[int, int, int, int]]:
        """(file_id, region, pHash distance, dHash distance) of every region within both."""
        n = self._n
        if n == 0:
            return []
        pdist = np.bitwise_count(self._ph[:n] ^ np.uint64(phash & 0xFFFFFFFFFFFFFFFF))
        rows = np.flatnonzero(pdist <= max_phash)
        if rows.size == 0:
            return []
        ddist = np.bitwise_count(self._dh[rows] ^ np.uint64(dhash & 0xFFFFFFFFFFFFFFFF))
        rows, ddist = rows[ddist <= max_dhash], ddist[ddist <= max_dhash]
        return [
            (int(self._fid[r]), int(self._reg[r]), int(pdist[r]), int(d))
            for r, d in zip(rows, ddist, strict=True)
            if self._fid[r] >= 0
        ]

    def distance(
        self, file_id: int, region: int, variants: Sequence[tuple[int, int]]
    ) -> int | None:
        """pHash distance from any of `variants` to one region of one file."""
        start, count = self._start.get(file_id), self._count.get(file_id)
        if start is None or count is None:
            return None
        for row in range(start, start + count):
            if int(self._reg[row]) == region:
                stored = int(self._ph[row])
                return min((stored ^ (vp & 0xFFFFFFFFFFFFFFFF)).bit_count() for vp, _ in variants)
        return None
