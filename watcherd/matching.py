"""Matching: the in-memory fingerprint array and the rule that picks which copy is kept.

The arrays hold the pHash and dHash of every indexed image (and of its regions); a
newcomer is compared in each of its eight poses, so a rotated or mirrored copy is found
as easily as a re-encoded one. Comparisons are XOR + popcount in numpy, over the rows
that multi-index hashing says can be close (all rows, while there are few).
"""

from __future__ import annotations

import contextlib
import functools
import itertools
import mmap
import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple, Protocol

import numpy as np

from .fingerprint import TRANSFORM_NAMES

if TYPE_CHECKING:
    from .models import File

# The limits themselves are settings (config.py, [near]). Matches through a region (a
# cropped copy) must be closer than whole-picture ones: more comparisons per newcomer,
# so a stricter bar keeps precision. A turned or mirrored copy is the same pixels
# re-encoded, so it lands close; the seven extra poses searched would otherwise
# multiply chance matches between unrelated pictures (a pair of tools on white, one
# lying sideways, matched at distance 10). "similar": a different shot of the same
# scene, closer than unrelated pictures ever are but not the same picture.
#
# At the edge of the whole-picture limit (this close to it, or closer) two shots of
# one scene a moment apart (the subject moved) can look alike as a whole; a copy looks
# alike everywhere, so every region the two pictures share must be within
# REGIONS_AGREE too.
WHOLE_EDGE_MARGIN = 1
REGIONS_AGREE = 16
CONTENT_REGION = 10  # fingerprint.CONTENT: the picture without bars or blank background
REGION_NAMES = {
    1: "centre", 2: "top-left", 3: "top-right", 4: "bottom-left", 5: "bottom-right",
    6: "top", 7: "square", 8: "square-85", 9: "square-70", 10: "content", 11: "16:9",
    12: "photo", 13: "photo", 14: "photo",  # readings of one photo's edges (photo_boxes)
}  # fmt: skip


@dataclass(frozen=True, slots=True)
class Match:
    file_id: int
    distance: int  # pHash Hamming distance in the best pose
    ddistance: int  # dHash Hamming distance in that pose
    transform: str  # how the newcomer was turned to match (identity, mirror, rotate90, ...)


class IdMap:
    """Non-negative int id -> row number (< 2**31 - 1), in a numpy array indexed by id.

    File ids are small and dense (SQLite row ids), so this costs 4 bytes per id where a
    dict costs about a hundred: it is what keeps a large index's memory small. Slots
    hold the row plus one, so that an absent id is 0: the array grows with np.zeros,
    whose new pages the kernel provides only once they are written.
    """

    def __init__(self) -> None:
        self._a = np.zeros(1024, dtype=np.int32)

    def _fit(self, top: int) -> None:
        if top >= len(self._a):
            if top >= 2**34:
                raise ValueError(f"id {top} is too large for an IdMap")
            capacity = max(top + 1, len(self._a) + len(self._a) // 4)
            new = _unwritten(capacity, np.dtype(np.int32), len(self._a), zeroed=True)
            new[: len(self._a)] = self._a
            self._a = new

    def get(self, key: int) -> int | None:
        if 0 <= key < len(self._a):
            value = int(self._a[key])
            return value - 1 if value else None
        return None

    def __contains__(self, key: int) -> bool:
        return self.get(key) is not None

    def set(self, key: int, value: int) -> None:
        self._fit(key)
        self._a[key] = value + 1

    def set_many(self, keys: np.ndarray, values: np.ndarray) -> None:
        if len(keys):
            self._fit(int(keys.max()))
            self._a[keys] = np.asarray(values) + 1

    def pop(self, key: int) -> int | None:
        value = self.get(key)
        if value is not None:
            self._a[key] = 0
        return value


# Multi-index hashing: a 64-bit hash is cut into three chunks; two hashes within
# distance d agree to within d // 3 bits on at least one chunk (pigeonhole), so only
# rows whose chunk lies within that radius need comparing. Each chunk has a table of
# rows by chunk value (counts as offsets, then row numbers), built once over the rows
# present at the time; rows added since form a tail searched linearly until the next
# rebuild. Below MIH_MIN_ROWS a linear pass is quicker than building anything.
MIH_MIN_ROWS = 65_536
# A row drawn through the tables costs about twenty times a row of a plain pass (random
# reads against one sequential XOR + popcount; benchmarks/scale.py, 1 M rows): at wide
# radii (the `similar` search, 16 bits) the plain pass wins.
SCAN_COST_RATIO = 20
TAIL_SLICE = 1 << 18  # hash comparisons per slice of a plain pass (2 MB of XORs)
_CHUNKS = ((0, 21), (21, 21), (42, 22))  # (shift, bits)
_FULL = 0xFFFFFFFFFFFFFFFF


@functools.cache
def _masks(bits: int, radius: int, tbits: int) -> np.ndarray:
    """Every `bits`-bit value with at most `radius` bits set, cut to its low `tbits`
    bits, without repeats: the XOR offsets that reach every table slot to probe."""
    out = [0]
    for r in range(1, radius + 1):
        out += [sum(1 << b for b in combo) for combo in itertools.combinations(range(bits), r)]
    return _distinct(np.array(out, dtype=np.int64) & ((1 << tbits) - 1))


def _first_of_each(keys: np.ndarray) -> np.ndarray:
    """Where each distinct key first occurs, in key order: np.unique(return_index=True)
    without it, since np.unique imports numpy.ma (1.2 MB of a daemon) on first use."""
    order = np.argsort(keys, kind="stable")
    ordered = keys[order]
    return order[np.r_[True, ordered[1:] != ordered[:-1]][: len(order)]]


def _distinct(values: np.ndarray) -> np.ndarray:
    """The distinct values, sorted (np.unique: see _first_of_each)."""
    return values[_first_of_each(values)]


def _pack_rows(rows: np.ndarray) -> np.ndarray:
    """Row numbers below 2**24 in three bytes each (plus one spare byte, so the last can
    be read as a 4-byte word): the tables' largest arrays shrink by a quarter."""
    packed = np.zeros(3 * len(rows) + 1, dtype=np.uint8)
    packed[:-1].reshape(-1, 3)[:] = rows.astype("<u4").view(np.uint8).reshape(-1, 4)[:, :3]
    return packed


def _rows_at(order: np.ndarray, positions: np.ndarray) -> np.ndarray:
    """order[positions], for plain int32 tables and for packed ones (uint8)."""
    if order.dtype != np.uint8:
        return order[positions].astype(np.int64)
    words = np.ndarray(((len(order) - 1) // 3,), dtype="<u4", buffer=order, strides=(3,))
    return (words[positions] & 0xFFFFFF).astype(np.int64)


class SlotOffsets:
    """Where each table slot's rows start, in 2 bytes a slot instead of 4: an int64
    start for every block of 256 slots and, per slot, its start within the block."""

    SHIFT = 8
    BLOCK = 1 << SHIFT

    def __init__(self, base: np.ndarray, rel: np.ndarray) -> None:
        self.base, self.rel = base, rel

    @classmethod
    def pack(cls, offsets: np.ndarray) -> SlotOffsets | np.ndarray:
        """The packed form, or `offsets` itself if a block holds more rows than 2 bytes
        can count (many equal hashes)."""
        base = offsets[:: cls.BLOCK].astype(np.int64)
        rel = offsets - np.repeat(base, cls.BLOCK)[: len(offsets)]
        if len(rel) and int(rel.max()) > 0xFFFF:
            return offsets
        return cls(base, rel.astype(np.uint16))

    def __getitem__(self, slots: np.ndarray) -> np.ndarray:
        return self.base[slots >> self.SHIFT] + self.rel[slots]


class ChunkTables:
    """The multi-index tables over rows [0, n) of one uint64 column."""

    def __init__(
        self, n: int, tables: list[tuple[int, int, int, SlotOffsets | np.ndarray, np.ndarray]]
    ):
        self.n = n  # rows covered
        self.tables = tables  # (shift, bits, table bits, slot offsets, rows by slot)

    @classmethod
    def build(cls, values: np.ndarray) -> ChunkTables:
        n = len(values)
        tables = []
        # Each table is keyed on a chunk's low `tb` bits, a slot (2 bytes) for every one
        # or two rows: cheaper than the rows themselves, and a slot holds a row or two.
        # Never more than 21 bits: the last chunk's 22nd would double its slots (4 MB at
        # ten million region rows) to spare one candidate row in eight.
        tb = min(21, max(12, int(n).bit_length() - 1))
        for shift, bits in _CHUNKS:
            tbits = min(bits, tb)
            keys = ((values >> np.uint64(shift)) & np.uint64((1 << tbits) - 1)).astype(np.int32)
            order = np.argsort(keys, kind="stable").astype(np.int32)
            if n < 1 << 24:
                order = _pack_rows(order)
            offsets = np.zeros((1 << tbits) + 1, dtype=np.int32)
            np.cumsum(np.bincount(keys, minlength=1 << tbits), out=offsets[1:])
            offsets = SlotOffsets.pack(offsets)
            if isinstance(offsets, SlotOffsets):
                offsets.rel = _owned(offsets.rel)
            else:
                offsets = _owned(offsets)
            tables.append((shift, bits, tbits, offsets, _owned(order)))
        return cls(n, tables)

    def estimate(self, radius: int) -> float:
        """Rows a query at `radius` is expected to draw from the tables (hashes spread
        evenly): the slots probed times the rows a slot holds."""
        r = radius // len(self.tables)
        return sum(len(_masks(bits, r, tbits)) * self.n / (1 << tbits)
                   for _, bits, tbits, _, _ in self.tables)  # fmt: skip

    def candidates(self, values: np.ndarray, radius: int) -> tuple[np.ndarray, np.ndarray]:
        """(rows, query numbers): the rows that may be within `radius` of each of
        `values` (uint64), all queries in one pass. A superset, possibly with repeats:
        callers verify each row and keep each file once."""
        r = radius // len(self.tables)
        rows, queries = [], []
        for shift, bits, tbits, offsets, order in self.tables:
            masks = _masks(bits, r, tbits)
            keys = ((values >> np.uint64(shift)) & np.uint64((1 << tbits) - 1)).astype(np.int64)
            probes = (masks[None, :] ^ keys[:, None]).ravel()
            lo = offsets[probes].astype(np.int64)
            lens = offsets[probes + 1] - lo
            hit = np.flatnonzero(lens)
            if hit.size == 0:
                continue
            lo, lens = lo[hit], lens[hit]
            first = np.repeat(lo - (np.cumsum(lens) - lens), lens)
            rows.append(_rows_at(order, first + np.arange(len(first))))
            queries.append(np.repeat(hit // len(masks), lens))
        if not rows:
            return np.empty(0, dtype=np.int64), np.empty(0, dtype=np.int64)
        return np.concatenate(rows), np.concatenate(queries)


def _grown(arr: np.ndarray, used: int, capacity: int) -> np.ndarray:
    """`arr` with room for `capacity` entries, its first `used` copied. The rest is left
    unwritten: the kernel gives memory to a page only once it is written, so a large
    index grows by what it holds, not by another copy of itself."""
    new = _unwritten(capacity, arr.dtype, used)
    new[:used] = arr[:used]
    return new


_HUGE_PAGE = 2 * 1024 * 1024
_OWN_MAPPING = 1024 * 1024  # arrays from this size on get a mapping of their own


def _unwritten(capacity: int, dtype: np.dtype, used: int = 0, zeroed: bool = False) -> np.ndarray:
    """An array (uninitialised unless `zeroed`) that will be filled from the front: its
    first `used` entries at once, the rest a row at a time.

    A large one gets an anonymous memory mapping of its own instead of np.empty: freed,
    it goes straight back to the system, where malloc would often have placed it in the
    heap (glibc's mmap threshold rises to 32 MB once big blocks are freed) and kept the
    pages around it. 2 MB pages are asked for only where the `used` entries go: a large
    index's random reads stay fast, and a row appended into the rest makes one 4 KB page
    resident, not 2 MB. About 8 MB of a million-photo daemon, after its first newcomer.
    """
    nbytes = capacity * np.dtype(dtype).itemsize
    if nbytes < _OWN_MAPPING:
        return (np.zeros if zeroed else np.empty)(capacity, dtype=dtype)
    mapping = mmap.mmap(-1, nbytes)  # zero-filled by the kernel, as each page is touched
    split = used * np.dtype(dtype).itemsize // _HUGE_PAGE * _HUGE_PAGE
    with contextlib.suppress(AttributeError, OSError, ValueError):  # not Linux: no advice
        if split:
            mapping.madvise(mmap.MADV_HUGEPAGE, 0, split)
        mapping.madvise(mmap.MADV_NOHUGEPAGE, split, nbytes - split)
    return np.frombuffer(mapping, dtype=dtype, count=capacity)


def _owned(arr: np.ndarray) -> np.ndarray:
    """A long-lived array copied into memory of its own (see _unwritten): left in
    malloc's heap, the heap would keep what is freed around it when it goes (a table
    rebuilt, a column grown), and the daemon's memory would only ever rise."""
    return _grown(arr, len(arr), len(arr))


def _spare(n: int) -> int:
    """Room for appended rows kept behind a column built or loaded with `n` rows (never
    written, so not resident, until rows come)."""
    return n + n // 4 + 16


def _read_saved(npz, key: str, spare: bool) -> tuple[np.ndarray, int]:
    """(array, entries saved): one array of a saved .npz read straight into memory of
    its own, plus room to grow if `spare`; np.load would read it into malloc's heap."""
    with npz.zip.open(f"{key}.npy") as fp:
        version = np.lib.format.read_magic(fp)
        if version == (1, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_1_0(fp)
        else:
            shape, fortran, dtype = np.lib.format.read_array_header_2_0(fp)
        if len(shape) != 1 or fortran or dtype.hasobject:
            raise ValueError(f"saved array {key} is not a plain vector")
        n = shape[0]
        arr = _unwritten(_spare(n) if spare else n, dtype, n)
        view = memoryview(arr[:n].view(np.uint8))
        done = 0
        while done < len(view):
            got = fp.readinto(view[done:])
            if not got:
                raise ValueError(f"saved array {key} is cut short")
            done += got
    return arr, n


class _Rows:
    """Append-only rows of (pHash, ...) in numpy arrays, each row belonging to a file:
    removed rows are holes (their file -1), squeezed out when they are many; searched
    through ChunkTables on pHash once there are enough rows. Subclasses say how a row
    finds its file (_files_of) and which rows still have one (_live_rows)."""

    _columns: tuple[tuple[str, np.dtype, int], ...] = (("_ph", np.dtype(np.uint64), 0),)

    def __init__(self, capacity: int = 1024, filled: int = 0) -> None:
        capacity = max(capacity, 16)
        for name, dtype, _ in self._columns:  # `filled`: rows written at once (_unwritten)
            setattr(self, name, _unwritten(capacity, dtype, filled))
        self._n = 0
        self._dead = 0
        self._mih: ChunkTables | None = None

    def _reserve(self, extra: int) -> None:
        """Room for `extra` more rows, growing by a quarter (see _grown)."""
        if self._n + extra <= len(self._ph):
            return
        capacity = max(len(self._ph) + len(self._ph) // 4, self._n + extra)
        for name, _, _ in self._columns:
            setattr(self, name, _grown(getattr(self, name), self._n, capacity))

    def _after_change(self) -> None:
        """Squeeze out holes and rebuild the tables when the tail or the holes grew."""
        built = self._mih.n if self._mih is not None else 0
        tail = self._n - built
        if self._dead > 1024 and self._dead * 4 > self._n:
            self._compact()
        elif self._n >= MIH_MIN_ROWS and tail > max(MIH_MIN_ROWS, built // 4):
            self._build()

    def _compact(self) -> None:
        keep = self._live_rows()
        self._squeeze_files()
        for name, _, fill in self._columns:
            arr = getattr(self, name)
            arr[: len(keep)] = arr[keep]
            arr[len(keep) : self._n] = fill
        self._n, self._dead = len(keep), 0
        self._reindex()
        self._mih = None
        if self._n >= MIH_MIN_ROWS:
            self._build()

    def _build(self) -> None:
        self._mih = ChunkTables.build(self._ph[: self._n])

    def _reindex(self) -> None:  # pragma: no cover - each subclass maps ids to rows
        raise NotImplementedError

    def _live_rows(self) -> np.ndarray:  # pragma: no cover
        raise NotImplementedError

    def _squeeze_files(self) -> None:
        """Compaction is about to keep only the live rows (the columns have not moved
        yet): follow them."""

    def _files_of(self, rows: np.ndarray) -> np.ndarray:  # pragma: no cover
        """The file id of each row (-1: removed)."""
        raise NotImplementedError

    def state(self, prefix: str) -> dict[str, np.ndarray]:
        """The arrays to save (see save_arrays), names prefixed."""
        out = {f"{prefix}{name}": getattr(self, name)[: self._n] for name, _, _ in self._columns}
        out[f"{prefix}counts"] = np.array([self._n, self._dead], dtype=np.int64)
        if self._mih is not None:
            out[f"{prefix}mih_n"] = np.array([self._mih.n], dtype=np.int64)
            for i, (shift, bits, tbits, offsets, order) in enumerate(self._mih.tables):
                out[f"{prefix}mih{i}_spec"] = np.array([shift, bits, tbits], dtype=np.int64)
                if isinstance(offsets, SlotOffsets):
                    out[f"{prefix}mih{i}_base"] = offsets.base
                    out[f"{prefix}mih{i}_rel"] = offsets.rel
                else:
                    out[f"{prefix}mih{i}_offsets"] = offsets
                out[f"{prefix}mih{i}_order"] = order
        return out

    def _restore(self, data: dict, lengths: dict, prefix: str) -> None:
        """Take over arrays read by load_arrays (`lengths`: entries saved in each; a
        column may have room for more)."""
        n, dead = (int(v) for v in data[f"{prefix}counts"])
        for name, dtype, _ in self._columns:  # the loaded arrays themselves, not copies
            column = data[f"{prefix}{name}"]
            if column.dtype != dtype or lengths[f"{prefix}{name}"] != n:
                raise ValueError(f"saved column {prefix}{name} does not fit")
            setattr(self, name, column)
        self._n, self._dead = n, dead
        if f"{prefix}mih_n" in data:
            tables = []
            i = 0
            while f"{prefix}mih{i}_spec" in data:
                shift, bits, tbits = (int(v) for v in data[f"{prefix}mih{i}_spec"])
                if f"{prefix}mih{i}_rel" in data:
                    offsets = SlotOffsets(data[f"{prefix}mih{i}_base"], data[f"{prefix}mih{i}_rel"])
                else:
                    offsets = data[f"{prefix}mih{i}_offsets"]
                tables.append((shift, bits, tbits, offsets, data[f"{prefix}mih{i}_order"]))
                i += 1
            self._mih = ChunkTables(int(data[f"{prefix}mih_n"][0]), tables)
        self._reindex()

    def _candidates(
        self, phashes: np.ndarray, max_phash: int
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(rows, query numbers, distances, file ids): the live rows within `max_phash`
        of each of `phashes` (uint64), each row once per query."""
        mih = self._mih
        if mih is not None and mih.estimate(max_phash) * SCAN_COST_RATIO >= mih.n:
            mih = None  # so wide a radius reaches so many slots that a plain pass is quicker
        parts = []  # (rows, query numbers, distances) within reach
        if mih is not None:
            found, asked = mih.candidates(phashes, max_phash)
            pdist = np.bitwise_count(self._ph[found] ^ phashes[asked])
            near = pdist <= max_phash
            parts.append((found[near], asked[near], pdist[near]))
        start = 0 if mih is None else mih.n  # rows the tables do not cover: all compared
        # All queries at once over slices of those rows: one pass of numpy calls per
        # slice instead of one per query (a newcomer asks a dozen), with temporaries
        # kept to a few MB however long the tail grows.
        step = max(1, TAIL_SLICE // max(1, len(phashes)))
        for lo in range(start, self._n, step):
            block = self._ph[lo : min(lo + step, self._n)]
            pdist = np.bitwise_count(block[np.newaxis, :] ^ phashes[:, np.newaxis])
            # flatnonzero and a divmod: np.nonzero on the 2-D mask took 3.5x as long
            hits = np.flatnonzero(pdist <= max_phash)
            asked, near = np.divmod(hits, len(block))
            parts.append((near + lo, asked, pdist.ravel()[hits]))
        if not parts:
            empty = np.empty(0, dtype=np.int64)
            return empty, empty, empty, empty
        if len(parts) == 1:  # a small index: the plain pass alone (most of a first scan)
            rows, queries, pdist = parts[0]
        else:
            rows, queries, pdist = (np.concatenate(column) for column in zip(*parts, strict=True))
        files = self._files_of(rows)  # for the few close rows only
        live = files >= 0
        if not live.all():
            rows, queries, pdist, files = rows[live], queries[live], pdist[live], files[live]
        # Each row once per query, in (query, row) order, as a single plain pass gives
        # them already: the tables may report a row twice.
        if len(rows) > 1 and (mih is not None or len(parts) > 1):
            first = _first_of_each(queries * self._n + rows)
            rows, queries, pdist, files = rows[first], queries[first], pdist[first], files[first]
        return rows, queries, pdist, files


class HashIndex(_Rows):
    """Whole-picture fingerprints of indexed images, one row per file.

    A search looks at the newcomer in each of its eight poses; with many files the
    multi-index tables keep that to the few rows that can be close.
    """

    _columns = (
        ("_fid", np.dtype(np.int32), -1),  # file ids: SQLite row ids, well below 2**31
        *_Rows._columns,
        ("_dh", np.dtype(np.uint64), 0),
    )

    def __init__(self, capacity: int = 1024, filled: int = 0) -> None:
        super().__init__(capacity, filled)
        self._row = IdMap()
        self._live = 0

    def __len__(self) -> int:
        return self._live

    def __contains__(self, file_id: int) -> bool:
        return file_id in self._row

    @classmethod
    def from_rows(cls, rows: Iterable[tuple[int, int, int]]) -> HashIndex:
        """Build from (file_id, phash, dhash) rows of distinct ids; hashes unsigned or
        signed 64-bit."""
        dtype = np.dtype([("f", np.int64), ("p", np.uint64), ("d", np.uint64)])
        data = np.fromiter(((f, p & _FULL, d & _FULL) for f, p, d in rows), dtype=dtype)
        n = len(data)
        index = cls(_spare(n), filled=n)
        index._fid[:n], index._ph[:n], index._dh[:n] = data["f"], data["p"], data["d"]
        index._n = index._live = n
        index._row.set_many(data["f"], np.arange(n, dtype=np.int64))
        if n >= MIH_MIN_ROWS:
            index._build()
        return index

    def _live_rows(self) -> np.ndarray:
        return np.flatnonzero(self._fid[: self._n] >= 0)

    def _files_of(self, rows: np.ndarray) -> np.ndarray:
        return self._fid[rows]

    def _reindex(self) -> None:
        self._row = IdMap()
        rows = self._live_rows()
        self._row.set_many(self._fid[rows], rows)
        self._live = len(rows)

    def add(self, file_id: int, phash: int, dhash: int) -> None:
        self.remove(file_id)  # a changed file: its old row becomes a hole
        self._reserve(1)
        row = self._n
        self._fid[row] = file_id
        self._ph[row] = phash & _FULL
        self._dh[row] = dhash & _FULL
        self._n += 1
        self._live += 1
        self._row.set(file_id, row)
        self._after_change()

    def remove(self, file_id: int) -> None:
        row = self._row.pop(file_id)
        if row is None:
            return
        self._fid[row] = -1
        self._dead += 1
        self._live -= 1
        self._after_change()

    def search(
        self,
        variants: Sequence[tuple[int, int]],
        max_phash: int,
        max_dhash: int,
        exclude: int | None = None,
        max_turned: int | None = None,
    ) -> list[Match]:
        """All indexed images within both distances of any pose of the newcomer.

        `variants` are the newcomer's (phash, dhash) in the order of TRANSFORM_NAMES.
        `max_turned`: a tighter pHash limit for the turned and mirrored poses (they are
        searched at it, which is also much quicker than at `max_phash`). Each file
        appears once, in its closest pose within its limit; best matches first.
        """
        turned = max_phash if max_turned is None else min(max_phash, max_turned)
        found = self.hits(variants[:1], max_phash, max_dhash)
        if len(variants) > 1:
            found += [
                (pose + 1, file_id, p, d)
                for pose, file_id, p, d in self.hits(variants[1:], turned, max_dhash)
            ]
        best: dict[int, tuple[int, int, int]] = {}
        for pose, file_id, p, d in found:
            key = (p, d, pose)
            if file_id != exclude and (file_id not in best or key < best[file_id]):
                best[file_id] = key
        ordered = sorted(best.items(), key=lambda item: (item[1], item[0]))
        return [Match(fid, p, d, TRANSFORM_NAMES[pose]) for fid, (p, d, pose) in ordered]

    def hits(
        self, queries: Sequence[tuple[int, int]], max_phash: int, max_dhash: int
    ) -> list[tuple[int, int, int, int]]:
        """(query number, file_id, pHash distance, dHash distance) of every row within
        both distances of any of the (phash, dhash) queries, all searched in one pass."""
        if self._live == 0 or not queries:
            return []
        vp = np.array([p & _FULL for p, _ in queries], dtype=np.uint64)
        vd = np.array([d & _FULL for _, d in queries], dtype=np.uint64)
        rows, asked, pdist, files = self._candidates(vp, max_phash)
        ddist = np.bitwise_count(self._dh[rows] ^ vd[asked])
        keep = ddist <= max_dhash
        return list(
            zip(asked[keep].tolist(), files[keep].tolist(), pdist[keep].tolist(),
                ddist[keep].tolist(), strict=True)
        )  # fmt: skip

    def dhash_near(self, phash: int, dhash: int, max_dhash: int) -> list[Match]:
        """Every file whose dHash is within `max_dhash` of `dhash`, whatever its pHash
        (given in each Match): one plain pass over the dHash column, in slices.

        For copies under a sticker or a label: an opaque shape over a tenth of the
        picture moves the pHash (every coefficient sees every pixel) past any limit
        unrelated pictures stay outside, while each dHash bit compares two
        neighbouring cells, so only the bits under the shape change. No tables: a
        narrow radius on one query costs one XOR and popcount per row (about 1 ms at
        a million files), and only newcomers with no near match ask."""
        if self._live == 0:
            return []
        d, p = np.uint64(dhash & _FULL), np.uint64(phash & _FULL)
        out = []
        for lo in range(0, self._n, TAIL_SLICE):
            block = self._dh[lo : min(lo + TAIL_SLICE, self._n)]
            rows = np.flatnonzero(np.bitwise_count(block ^ d) <= max_dhash) + lo
            rows = rows[self._fid[rows] >= 0]
            ddist = np.bitwise_count(self._dh[rows] ^ d)
            pdist = np.bitwise_count(self._ph[rows] ^ p)
            out += [
                Match(f, pd, dd, "identity")
                for f, pd, dd in zip(self._fid[rows].tolist(), pdist.tolist(), ddist.tolist(),
                                     strict=True)
            ]  # fmt: skip
        return out

    def distance(self, file_id: int, variants: Sequence[tuple[int, int]]) -> int | None:
        """pHash distance from the newcomer (closest pose) to one indexed file."""
        row = self._row.get(file_id)
        if row is None or not variants:
            return None
        stored = int(self._ph[row])
        return min((stored ^ (vp & _FULL)).bit_count() for vp, _ in variants)


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


def newcomer_kept(
    newcomer: File,
    indexed: File,
    keep: str,
    protected: Callable[[str], bool],
    lengths: dict[int, float],
    derived: str = "",
) -> bool:
    """Whether the newcomer is the copy to keep. A file in a protected root (camera
    originals, a reference folder) is always kept against one outside protected
    roots, as reference folders are in Czkawka and dupeGuru: otherwise a PNG export
    or a re-encode elsewhere, with more pixels, would be kept, and the redundant
    copy would sit in the protected root where nothing is moved. Between two videos
    (`lengths`, by file id) the longer (by more than a quarter second and 2%: a remux
    pads or rounds) is kept first: the other had its start or end cut off. A copy that
    verification saw with something added (`derived`: "newcomer" or "partner"; a
    screen around the picture, a sticker or caption over it) is
    never kept over the picture itself: a chat screenshot has more pixels than the
    photo in it, a stickered PNG more bytes. Then `newcomer_wins`."""
    mine, theirs = protected(newcomer.path), protected(indexed.path)
    if mine != theirs:
        return mine
    a, b = lengths.get(newcomer.id), lengths.get(indexed.id)
    if keep == "best" and a is not None and b is not None and abs(a - b) > max(0.25, 0.02 * b):
        return a > b
    if keep == "best" and derived:
        return derived == "partner"
    return newcomer_wins(newcomer, indexed, keep)


class RegionIndex(_Rows):
    """Region pHashes: several rows per file, kept in flat numpy arrays.

    A file's rows are appended together, in the order of their region ids, as one span;
    spans are recorded in the order they were added (first row, file id, which regions),
    so a row finds its file by binary search and its region by counting, and the rows
    themselves hold nothing but the pHash. Only the pHash is held: a region's dHash is
    read from the index for the few regions whose pHash comes close
    (Index.region_dhashes). Regions are most of a large index's rows, so this is most of
    the matcher's memory.
    """

    _SPAN_COLUMNS = (("_span_start", np.int32), ("_span_fid", np.int32), ("_span_mask", np.uint16))

    def __init__(self, capacity: int = 1024, filled: int = 0) -> None:
        super().__init__(capacity, filled)
        spans = max(capacity // 8, 16)
        for name, dtype in self._SPAN_COLUMNS:  # _span_fid -1: removed
            setattr(self, name, _unwritten(spans, np.dtype(dtype)))
        self._spans = 0
        self._span = IdMap()  # file id -> its span

    def __len__(self) -> int:
        return self._n - self._dead

    def __contains__(self, file_id: int) -> bool:
        return file_id in self._span

    def _set_spans(self, starts: np.ndarray, fids: np.ndarray, masks: np.ndarray) -> None:
        spans = len(starts)
        for (name, dtype), values in zip(self._SPAN_COLUMNS, (starts, fids, masks), strict=True):
            column = _unwritten(_spare(spans), np.dtype(dtype), spans)
            column[:spans] = values
            setattr(self, name, column)
        self._spans = spans

    def _span_rows(self, span: int) -> tuple[int, int]:
        end = int(self._span_start[span + 1]) if span + 1 < self._spans else self._n
        return int(self._span_start[span]), end

    def _span_lengths(self) -> np.ndarray:
        """Rows in each span (removed ones included)."""
        return np.diff(np.r_[self._span_start[: self._spans], self._n])

    def _live_rows(self) -> np.ndarray:
        return np.flatnonzero(np.repeat(self._span_fid[: self._spans] >= 0, self._span_lengths()))

    def _spans_of(self, rows: np.ndarray) -> np.ndarray:
        # Rows as the starts' own int32: with int64 rows numpy would first copy all the
        # starts to int64 (8 MB and a millisecond per search at a million photos).
        starts = self._span_start[: self._spans]
        return np.searchsorted(starts, rows.astype(starts.dtype), side="right") - 1

    def _files_of(self, rows: np.ndarray) -> np.ndarray:
        return self._span_fid[self._spans_of(rows)]

    def _region_of(self, row: int, span: int) -> int:
        """The region a row holds: its place in the span picks a set bit of the mask."""
        return _set_bits(int(self._span_mask[span]))[row - int(self._span_start[span])]

    def _squeeze_files(self) -> None:
        live = np.flatnonzero(self._span_fid[: self._spans] >= 0)
        counts = self._span_lengths()[live]
        starts = np.r_[0, np.cumsum(counts)[:-1]] if len(live) else np.empty(0)
        self._set_spans(starts, self._span_fid[live], self._span_mask[live])

    @classmethod
    def from_rows(cls, rows: Iterable[tuple[int, int, int]]) -> RegionIndex:
        """Build from (file_id, region, phash) rows ordered by file id, then region;
        pHashes signed 64-bit, as SQLite stores them."""
        dtype = np.dtype([("f", np.int64), ("r", np.int64), ("p", np.int64)])
        data = np.fromiter(rows, dtype=dtype)
        n = len(data)
        f, r = data["f"], data["r"]
        if n and not np.all((np.diff(f) > 0) | ((np.diff(f) == 0) & (np.diff(r) > 0))):
            raise ValueError("region rows must come ordered by file id, then region")
        if n and not (r.min() > 0 and r.max() < 16):  # a span's mask has 16 bits
            raise ValueError(f"region ids must be 1..15, not {int(r.min())}..{int(r.max())}")
        index = cls(_spare(n), filled=n)
        index._ph[:n] = data["p"].view(np.uint64)
        index._n = n
        first = np.flatnonzero(np.r_[True, f[1:] != f[:-1]]) if n else np.empty(0, np.int64)
        masks = np.bitwise_or.reduceat(1 << r, first) if n else np.empty(0, np.int64)
        index._set_spans(first, f[first], masks)
        index._reindex()
        if n >= MIH_MIN_ROWS:
            index._build()
        return index

    def _reindex(self) -> None:
        self._span = IdMap()
        fids = self._span_fid[: self._spans]
        live = np.flatnonzero(fids >= 0)
        self._span.set_many(fids[live], live)

    def state(self, prefix: str) -> dict[str, np.ndarray]:
        out = super().state(prefix)
        for name, _ in self._SPAN_COLUMNS:
            out[f"{prefix}{name}"] = getattr(self, name)[: self._spans]
        return out

    def _restore(self, data: dict, lengths: dict, prefix: str) -> None:
        keys = [f"{prefix}{name}" for name, _ in self._SPAN_COLUMNS]
        spans = lengths[keys[0]]
        for (name, dtype), key in zip(self._SPAN_COLUMNS, keys, strict=True):
            if data[key].dtype != dtype or lengths[key] != spans:
                raise ValueError(f"saved column {key} does not fit")
            setattr(self, name, data[key])
        self._spans = spans
        super()._restore(data, lengths, prefix)

    def add(self, file_id: int, regions: Sequence[tuple[int, int, int]]) -> None:
        """Hold a file's (region, phash, dhash) rows; the dHash stays in the index."""
        self.remove(file_id)
        if not regions:
            return
        regions = sorted(regions)
        if any(not 0 < region < 16 for region, _, _ in regions):
            raise ValueError(f"region ids must be 1..15: {[r for r, _, _ in regions]}")
        self._reserve(len(regions))
        if self._spans == len(self._span_start):
            capacity = self._spans + self._spans // 4 + 16
            for name, _ in self._SPAN_COLUMNS:
                setattr(self, name, _grown(getattr(self, name), self._spans, capacity))
        start = self._n
        for i, (_region, ph, _dh) in enumerate(regions):
            self._ph[start + i] = ph & _FULL
        self._n += len(regions)
        span = self._spans
        self._span_start[span] = start
        self._span_fid[span] = file_id
        self._span_mask[span] = sum(1 << region for region, _, _ in regions)
        self._span.set(file_id, span)
        self._spans += 1
        self._after_change()

    def remove(self, file_id: int) -> None:
        span = self._span.pop(file_id)
        if span is None:
            return
        start, end = self._span_rows(span)
        self._span_fid[span] = -1
        self._dead += end - start
        self._after_change()

    def search(self, phashes: Sequence[int], max_phash: int) -> list[tuple[int, int, int, int]]:
        """(query number, file_id, region, pHash distance) of every region within
        `max_phash` of any of `phashes`, all searched in one pass."""
        if self._n == 0 or not phashes:
            return []
        values = np.array([p & _FULL for p in phashes], dtype=np.uint64)
        rows, asked, pdist, files = self._candidates(values, max_phash)
        spans = self._spans_of(rows)
        found = {
            (q, fid, self._region_of(row, span), d)
            for q, fid, row, span, d in zip(asked.tolist(), files.tolist(), rows.tolist(),
                                            spans.tolist(), pdist.tolist(), strict=True)
        }  # fmt: skip
        return sorted(found)

    def distance(
        self, file_id: int, region: int, variants: Sequence[tuple[int, int]]
    ) -> int | None:
        """pHash distance from any of `variants` to one region of one file."""
        span = self._span.get(file_id)
        if span is None or not 0 <= region < 16:
            return None
        mask = int(self._span_mask[span])
        if not mask >> region & 1:
            return None
        row = int(self._span_start[span]) + (mask & ((1 << region) - 1)).bit_count()
        stored = int(self._ph[row])
        return min((stored ^ (vp & _FULL)).bit_count() for vp, _ in variants)


@functools.cache
def _set_bits(mask: int) -> tuple[int, ...]:
    """The bits set in a span's 16-bit region mask, lowest first (few masks occur)."""
    return tuple(b for b in range(16) if mask >> b & 1)


ARRAYS_FORMAT = 7  # bump when the saved layout changes: older files are then ignored


def save_arrays(path: Path, generation: int, hashes: HashIndex, parts: RegionIndex) -> None:
    """Save the matcher's arrays for a fast next start (written whole, then renamed)."""
    data = {**hashes.state("h"), **parts.state("r")}
    data["stamp"] = np.array([ARRAYS_FORMAT, generation], dtype=np.int64)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)  # whatever the umask
    with open(fd, "wb") as fh:
        np.savez(fh, **data)
        fh.flush()
        os.fsync(fh.fileno())  # on disk before the rename: a power cut leaves old or new
    os.replace(tmp, path)


class SavedArrays(NamedTuple):
    hashes: HashIndex
    parts: RegionIndex
    generation: int  # of the index when they were saved: changes after it are not in them


def load_arrays(path: Path) -> SavedArrays | None:
    """The saved arrays, or None if there are none usable (missing, cut short, another
    format)."""
    growing = {
        *(f"h{name}" for name, _, _ in HashIndex._columns),
        *(f"r{name}" for name, _, _ in RegionIndex._columns),
        *(f"r{name}" for name, _ in RegionIndex._SPAN_COLUMNS),
    }
    try:
        with np.load(path) as npz:
            stamp = npz["stamp"]
            if int(stamp[0]) != ARRAYS_FORMAT:
                return None
            data, lengths = {}, {}
            for key in npz.files:
                data[key], lengths[key] = _read_saved(npz, key, spare=key in growing)
        hashes, parts = HashIndex(16), RegionIndex(16)
        hashes._restore(data, lengths, "h")
        parts._restore(data, lengths, "r")
    except Exception:  # cut short, a bad zip, a bad CRC, another layout: rebuilt instead
        return None
    return SavedArrays(hashes, parts, int(stamp[1]))
