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
CONTENT_REGION = 10  # fingerprint.CONTENT: the picture without bars or blank background
REGION_NAMES = {
    1: "centre", 2: "top-left", 3: "top-right", 4: "bottom-left", 5: "bottom-right",
    6: "top", 7: "square", 8: "square-85", 9: "square-70", 10: "content",
}  # fmt: skip


@dataclass(frozen=True, slots=True)
class Match:
    file_id: int
    distance: int  # pHash Hamming distance in the best pose
    ddistance: int  # dHash Hamming distance in that pose
    transform: str  # how the newcomer was turned to match (identity, mirror, rotate90, ...)


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
        self._row: dict[int, int] = {}

    def __len__(self) -> int:
        return self._n

    def __contains__(self, file_id: int) -> bool:
        return file_id in self._row

    @classmethod
    def from_rows(cls, rows: Iterable[tuple[int, int, int]]) -> HashIndex:
        """Build from (file_id, phash, dhash) rows; hashes unsigned or signed 64-bit."""
        index = cls()
        for file_id, ph, dh in rows:
            index.add(file_id, ph, dh)
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
            self._row[file_id] = row
            self._ids[row] = file_id
        self._ph[row] = phash & 0xFFFFFFFFFFFFFFFF
        self._dh[row] = dhash & 0xFFFFFFFFFFFFFFFF

    def remove(self, file_id: int) -> None:
        row = self._row.pop(file_id, None)
        if row is None:
            return
        last = self._n - 1
        if row != last:
            moved = int(self._ids[last])
            self._ids[row] = moved
            self._ph[row] = self._ph[last]
            self._dh[row] = self._dh[last]
            self._row[moved] = row
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
        self._span: dict[int, tuple[int, int]] = {}

    def __len__(self) -> int:
        return self._n - self._dead

    def __contains__(self, file_id: int) -> bool:
        return file_id in self._span

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
        index._span = _spans(index._fid[:n])
        return index

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
        self._span[file_id] = (start, len(regions))

    def remove(self, file_id: int) -> None:
        span = self._span.pop(file_id, None)
        if span is None:
            return
        start, count = span
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
        self._span = _spans(self._fid[: self._n])

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
        span = self._span.get(file_id)
        if span is None:
            return None
        start, count = span
        for row in range(start, start + count):
            if int(self._reg[row]) == region:
                stored = int(self._ph[row])
                return min((stored ^ (vp & 0xFFFFFFFFFFFFFFFF)).bit_count() for vp, _ in variants)
        return None


def _spans(fids: np.ndarray) -> dict[int, tuple[int, int]]:
    """{file id: (first row, row count)} for an array where each file's rows are adjacent."""
    n = len(fids)
    if n == 0:
        return {}
    starts = np.flatnonzero(np.r_[True, fids[1:] != fids[:-1]])
    counts = np.diff(np.r_[starts, n])
    pairs = zip(starts.tolist(), counts.tolist(), strict=True)
    return dict(zip(fids[starts].tolist(), pairs, strict=True))
