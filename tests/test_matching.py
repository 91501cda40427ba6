import mmap

import numpy as np
import pytest

from watcherd.fingerprint import TRANSFORM_NAMES
from watcherd.matching import HashIndex, newcomer_kept, newcomer_wins


def variants_of(ph: int, dh: int = 0) -> list[tuple[int, int]]:
    """Identity pose plus seven poses that match nothing (all bits flipped)."""
    return [(ph, dh)] + [(~ph & (2**64 - 1), ~dh & (2**64 - 1))] * 7


def test_empty_index_finds_nothing():
    assert HashIndex().search(variants_of(123), 10, 10) == []


def test_finds_within_both_thresholds_only():
    idx = HashIndex()
    base = 0x0123456789ABCDEF
    idx.add(1, base, 0)
    idx.add(2, base ^ 0b111, 0)  # pHash distance 3
    idx.add(3, base ^ 0xFFFF, 0)  # distance 16
    idx.add(4, base ^ 0b1, 0xFFFFFF)  # close pHash, far dHash
    found = idx.search(variants_of(base, 0), max_phash=5, max_dhash=10)
    assert [(m.file_id, m.distance) for m in found] == [(1, 0), (2, 3)]


def test_dhash_near_ignores_the_phash_and_removed_files(monkeypatch):
    """The search for copies under a sticker: dHash alone decides, in every slice of a
    plain pass (slices made small here), and each match carries its pHash distance."""
    monkeypatch.setattr("watcherd.matching.TAIL_SLICE", 2)
    idx = HashIndex()
    idx.add(1, 0xFFFF_FFFF_0000_0000, 0b1011)  # pHash 32 bits away, dHash 1
    idx.add(2, 0, 0b1010 ^ 0b11111_00000)  # dHash 5 away
    idx.add(3, 0, 0b1010)  # dHash 0 away, then removed
    idx.add(4, 0, 0xFFFF_FF00)  # dHash 23 away
    idx.remove(3)
    found = {m.file_id: (m.distance, m.ddistance) for m in idx.dhash_near(0, 0b1010, 5)}
    assert found == {1: (32, 1), 2: (0, 5)}


def test_each_file_once_in_its_best_pose():
    idx = HashIndex()
    idx.add(7, 0b1010, 0)
    poses = [(0b1011, 0), (0b1010, 0)] + [(2**64 - 1, 2**64 - 1)] * 6
    found = idx.search(poses, 4, 4)
    assert len(found) == 1
    assert (found[0].distance, found[0].transform) == (0, "mirror")


def test_signed_values_accepted():
    idx = HashIndex()
    idx.add(1, -1, -2)  # as stored in SQLite
    found = idx.search(variants_of(2**64 - 1, 2**64 - 2), 0, 0)
    assert [m.file_id for m in found] == [1]


def test_grows_in_place_and_removes():
    rng = np.random.default_rng(0)
    values = [int(v) for v in rng.integers(0, 2**63, size=5000)]
    idx = HashIndex(capacity=16)
    for i, v in enumerate(values):
        idx.add(i, v, v)
    assert len(idx) == 5000
    for i in range(0, 5000, 2):
        idx.remove(i)
    assert len(idx) == 2500
    assert 2 not in idx and 3 in idx
    for i in (1, 999, 4999):
        found = idx.search(variants_of(values[i], values[i]), 0, 0)
        assert [m.file_id for m in found] == [i]
    assert idx.search(variants_of(values[2], values[2]), 0, 0) == []


def test_add_existing_id_updates():
    idx = HashIndex()
    idx.add(1, 0, 0)
    idx.add(1, 2**40, 0)
    assert len(idx) == 1
    assert idx.search(variants_of(0), 0, 64) == []


def test_exclude_and_distance():
    idx = HashIndex()
    idx.add(1, 0, 0)
    idx.add(2, 0b11, 0)
    assert [m.file_id for m in idx.search(variants_of(0), 5, 5, exclude=1)] == [2]
    assert idx.distance(2, variants_of(0)) == 2
    assert idx.distance(99, variants_of(0)) is None


class F:
    def __init__(self, w, h, size, mtime_ns):
        self.width, self.height, self.size, self.mtime_ns = w, h, size, mtime_ns


@pytest.mark.parametrize(
    ("new", "old", "expected"),
    [
        (F(4000, 3000, 1, 5), F(1600, 1200, 9, 1), True),  # more pixels wins
        (F(1600, 1200, 9, 5), F(4000, 3000, 1, 1), False),
        (F(100, 100, 20, 5), F(100, 100, 10, 1), True),  # then the larger file
        (F(100, 100, 10, 1), F(100, 100, 10, 5), True),  # then the older one
        (F(100, 100, 10, 5), F(100, 100, 10, 5), False),  # full tie keeps the indexed copy
    ],
)
def test_keep_best(new, old, expected):
    assert newcomer_wins(new, old, "best") is expected


def test_keep_first_always_keeps_indexed():
    assert newcomer_wins(F(9999, 9999, 99, 0), F(1, 1, 1, 9), "first") is False


class G(F):
    def __init__(self, path, *args):
        super().__init__(*args)
        self.path, self.id = path, hash(path)


@pytest.mark.parametrize(
    ("derived", "keep", "protected", "expected"),
    [
        ("newcomer", "best", (), False),  # a screenshot of the photo: never kept over it
        ("partner", "best", (), True),
        ("", "best", (), True),  # nothing added that can be told: more pixels
        ("partner", "first", (), False),  # `first` keeps the indexed copy whatever
        ("newcomer", "best", ("/cam/a.png",), True),  # a protected copy is always kept
    ],
)
def test_a_copy_with_something_added_is_never_the_one_kept(derived, keep, protected, expected):
    new, old = G("/cam/a.png", 1080, 2340, 9, 5), G("/dl/b.jpg", 800, 600, 1, 1)
    kept = newcomer_kept(new, old, keep, lambda p: p in protected, {}, derived)
    assert kept is expected


def test_region_index_add_remove_compact_and_search():
    from watcherd.matching import RegionIndex

    rows = [(fid, region, fid * 100 + region) for fid in range(1, 2001) for region in (1, 2, 3)]
    idx = RegionIndex.from_rows(rows)
    assert len(idx) == 6000 and 5 in idx
    assert idx.search([502], 0) == [(0, 5, 2, 0)]
    assert idx.distance(5, 3, [(503, 0)]) == 0 and idx.distance(5, 9, [(1, 0)]) is None
    for fid in range(1, 1500):  # enough holes to force a compaction
        idx.remove(fid)
    assert len(idx) == 501 * 3 and 5 not in idx
    assert idx.search([502], 0) == []
    assert idx.search([7, 1801 * 100 + 1], 0) == [(1, 1801, 1, 0)]
    assert idx.distance(1801, 3, [(1801 * 100 + 3, 0)]) == 0, "its span moved with it"
    assert idx.distance(2000, 3, [(2000 * 100 + 3, 0)]) == 0, "the last span ends at the end"
    idx.add(1801, [(4, 7, 7)])  # re-added with other regions: the old rows are gone
    assert idx.search([1801 * 100 + 1], 0) == []
    assert idx.search([7], 0) == [(0, 1801, 4, 0)]
    assert idx.distance(1801, 4, [(7, 0)]) == 0


@pytest.mark.parametrize("radius", [0, 6, 8, 10, 16])
@pytest.mark.parametrize("scan_ratio", [0, 10**9], ids=["tables", "plain-pass"])
@pytest.mark.parametrize("tail_slice", [1 << 18, 5], ids=["one-slice", "many-slices"])
def test_multi_index_search_finds_exactly_what_a_full_scan_finds(
    monkeypatch, radius, scan_ratio, tail_slice
):
    """With the multi-index tables on (a few hundred rows here instead of 65,536), the
    results equal a brute-force pass: after the build, in the tail, after removals and
    after a rebuild; whether the tables are used or a wide radius makes the search pass
    over every row, and whether that pass takes the rows in one slice or many."""
    import watcherd.matching as m

    monkeypatch.setattr(m, "MIH_MIN_ROWS", 256)
    monkeypatch.setattr(m, "SCAN_COST_RATIO", scan_ratio)
    monkeypatch.setattr(m, "TAIL_SLICE", tail_slice)
    rng = np.random.default_rng(radius)
    base = [int(v) for v in rng.integers(0, 2**64, size=40, dtype=np.uint64)]

    def near(v: int, bits: int) -> int:
        for b in rng.choice(64, size=bits, replace=False):
            v ^= 1 << int(b)
        return v

    values = {}
    fid = 0
    for v in base:  # each base value with neighbours at every distance up to 14
        for bits in range(15):
            fid += 1
            values[fid] = near(v, bits)
    idx = m.HashIndex.from_rows((f, v, 0) for f, v in values.items())
    assert idx._mih is not None

    def brute(q: int) -> list[int]:
        return sorted(f for f, v in values.items() if (q ^ v).bit_count() <= radius)

    def found(q: int) -> list[int]:
        return sorted(x.file_id for x in idx.search([(q, 0)], radius, 64))

    for q in base[:10]:
        assert found(q) == brute(q)
    for i in range(200):  # a tail of new rows, then some removed
        fid += 1
        values[fid] = near(base[i % 40], i % 12)
        idx.add(fid, values[fid], 0)
    for f in list(values)[::7]:
        idx.remove(f)
        del values[f]
    for q in base[10:30]:
        assert found(q) == brute(q)
    for i in range(400):  # enough to trigger a rebuild of the tables
        fid += 1
        values[fid] = near(base[i % 40], i % 13)
        idx.add(fid, values[fid], 0)
    assert idx._mih.n > 700
    for q in base:
        assert found(q) == brute(q)
    asked = base[:8]  # several queries in one pass: each row credited to its own query
    hits = idx.hits([(q, 0) for q in asked], radius, 64)
    for i, q in enumerate(asked):
        assert sorted(f for n, f, _, _ in hits if n == i) == brute(q)


def test_region_index_multi_index(monkeypatch):
    import watcherd.matching as m

    monkeypatch.setattr(m, "MIH_MIN_ROWS", 128)
    monkeypatch.setattr(m, "SCAN_COST_RATIO", 0)  # always through the tables
    rng = np.random.default_rng(5)
    rows = [(f, r, int(rng.integers(0, 2**63))) for f in range(1, 200) for r in (1, 2)]
    idx = m.RegionIndex.from_rows(rows)
    assert idx._mih is not None
    f, r, v = rows[77]
    assert (0, f, r, 0) in idx.search([v], 8)
    assert (1, f, r, 3) in idx.search([v, v ^ 0b10101], 8)
    idx.remove(f)
    assert idx.search([v], 8) == []


def test_saved_arrays_load_only_at_the_same_generation(tmp_path, monkeypatch):
    import watcherd.matching as m

    monkeypatch.setattr(m, "MIH_MIN_ROWS", 64)
    monkeypatch.setattr(m, "SCAN_COST_RATIO", 0)  # always through the tables
    rng = np.random.default_rng(9)
    values = [int(v) for v in rng.integers(0, 2**63, size=300)]
    hashes = m.HashIndex.from_rows((i, v, v >> 3) for i, v in enumerate(values, 1))
    parts = m.RegionIndex.from_rows((i, 1, v >> 1) for i, v in enumerate(values, 1))
    hashes.remove(5)
    hashes.add(301, values[0] ^ 1, 0)  # a tail row after the tables were built
    path = tmp_path / "arrays.npz"
    m.save_arrays(path, 42, hashes, parts)
    loaded_hashes, loaded_parts, generation = m.load_arrays(path)
    assert generation == 42
    assert loaded_hashes._mih is not None and len(loaded_hashes) == len(hashes)
    for q in values[:50]:
        want = hashes.search([(q, q >> 3)], 10, 64)
        assert loaded_hashes.search([(q, q >> 3)], 10, 64) == want
        assert loaded_parts.search([q >> 1], 8) == parts.search([q >> 1], 8)
    assert 5 not in loaded_hashes and 301 in loaded_hashes
    path.write_bytes(b"not an npz")
    assert m.load_arrays(path) is None


def test_packed_table_rows_read_back_as_stored():
    """Tables under 2**24 rows keep row numbers in three bytes; larger ones in four."""
    import watcherd.matching as m

    rows = np.array([0, 1, 255, 256, 65_536, 2**24 - 1, 12_345_678, 7], dtype=np.int32)
    packed = m._pack_rows(rows)
    assert packed.dtype == np.uint8 and len(packed) == 3 * len(rows) + 1
    positions = np.array([5, 0, 6, 7, 3, 5])
    assert m._rows_at(packed, positions).tolist() == rows[positions].tolist()
    assert m._rows_at(rows, positions).tolist() == rows[positions].tolist()


def test_slot_offsets_pack_and_fall_back_when_a_block_is_crowded():
    import watcherd.matching as m

    counts = np.random.default_rng(3).integers(0, 5, size=4096)
    offsets = np.zeros(4097, dtype=np.int32)
    np.cumsum(counts, out=offsets[1:])
    packed = m.SlotOffsets.pack(offsets)
    assert isinstance(packed, m.SlotOffsets) and packed.rel.dtype == np.uint16
    assert packed[np.arange(4097)].tolist() == offsets.tolist()
    counts[300] = 70_000  # many equal hashes in one slot: two bytes cannot count them
    np.cumsum(counts, out=offsets[1:])
    assert m.SlotOffsets.pack(offsets) is offsets


def test_region_rows_know_their_region_from_the_span_when_some_are_missing():
    """A file keeps only the regions it has (a blank one is left out): each row's region
    comes from its place among the regions its file has."""
    from watcherd.matching import RegionIndex

    idx = RegionIndex.from_rows([(3, 1, 100), (3, 5, 500), (3, 11, 1100), (4, 2, 200)])
    assert idx.search([1100, 500, 200], 0) == [(0, 3, 11, 0), (1, 3, 5, 0), (2, 4, 2, 0)]
    assert idx.distance(3, 5, [(501, 0)]) == 1 and idx.distance(3, 2, [(0, 0)]) is None
    idx.add(9, [(10, 1000, 0), (7, 700, 0)])  # given in any order
    assert idx.search([700, 1000], 0) == [(0, 9, 7, 0), (1, 9, 10, 0)]
    with pytest.raises(ValueError):
        RegionIndex.from_rows([(3, 5, 1), (3, 1, 2)])
    with pytest.raises(ValueError):
        RegionIndex.from_rows([(3, 16, 1)])
    with pytest.raises(ValueError):
        idx.add(10, [(16, 1, 1)])


def test_wide_radius_passes_over_every_row_narrow_uses_the_tables(monkeypatch):
    """The choice follows the tables' own estimate: at 1 M rows the `similar` radius
    (16) reaches so many slots that a plain pass is quicker; the near radius (10) not."""
    import watcherd.matching as m

    rng = np.random.default_rng(4)
    tables = m.ChunkTables.build(rng.integers(0, 2**64, size=1_000_000, dtype=np.uint64))
    assert tables.estimate(10) * m.SCAN_COST_RATIO < tables.n
    assert tables.estimate(16) * m.SCAN_COST_RATIO >= tables.n
    drawn = len(tables.candidates(rng.integers(0, 2**64, size=4, dtype=np.uint64), 10)[0])
    assert 0.5 < drawn / (4 * tables.estimate(10)) < 2, "the estimate is what a query draws"


def test_turned_poses_have_their_own_tighter_limit():
    """A file closer to a turned pose (8 bits) than to the upright one (9 bits), with
    turned poses limited to 6: the upright match stands, as it would with no turned pose
    close at all; a turned pose within 6 wins as the closest."""
    stored = 0
    idx = HashIndex.from_rows([(1, stored, 0)])
    upright, turned = (1 << 9) - 1, (1 << 8) - 1  # 9 and 8 bits from the stored hash
    poses = [(upright, 0), (turned, 0)] + [(2**64 - 1, 0)] * 6
    assert [(m.distance, m.transform) for m in idx.search(poses, 10, 10, max_turned=6)] == [
        (9, "identity")
    ]
    poses[1] = ((1 << 5) - 1, 0)
    found = idx.search(poses, 10, 10, max_turned=6)
    assert [(m.distance, m.transform) for m in found] == [(5, TRANSFORM_NAMES[1])]


def test_large_arrays_grow_into_their_own_zeroed_mappings():
    """Past a megabyte, IdMaps and grown rows live in mappings of their own (freed, they
    go back to the system): contents survive each growth, unset ids stay absent, and
    the arrays stay writable."""
    from watcherd.matching import IdMap, _grown

    ids = IdMap()
    ids.set(5, 0)
    ids.set(3_000_000, 7)  # 12 MB: a mapping
    ids.set(4_000_000, 2_000_000)  # grows again, copying what it holds
    assert ids.get(5) == 0 and ids.get(3_000_000) == 7 and ids.get(4_000_000) == 2_000_000
    assert ids.get(3_999_999) is None and 6 not in ids
    assert ids.pop(3_000_000) == 7 and ids.get(3_000_000) is None
    assert ids._a.base is not None  # not a plain numpy allocation

    rows = np.arange(2_000_000, dtype=np.uint64)
    grown = _grown(rows, 1_500_000, 2_500_000)
    assert len(grown) == 2_500_000 and grown.base is not None
    assert np.array_equal(grown[:1_500_000], rows[:1_500_000])
    grown[2_499_999] = 1
    assert grown[2_499_999] == 1


def test_saved_arrays_load_into_memory_of_their_own_with_room_to_grow(tmp_path):
    """Loaded columns are read straight into mappings of their own, with room: the
    first newcomer after a start appends in place instead of copying every column (and
    leaving the loaded copies in malloc's heap). A cut-short file is not used."""
    import zipfile

    import watcherd.matching as m

    rng = np.random.default_rng(5)
    n = 150_000  # a column over a megabyte: a mapping of its own
    values = rng.integers(0, 2**63, size=n)
    hashes = m.HashIndex.from_rows((i, int(v), int(v) >> 3) for i, v in enumerate(values, 1))
    parts = m.RegionIndex.from_rows((i, 1, int(v) >> 1) for i, v in enumerate(values, 1))
    path = tmp_path / "arrays.npz"
    m.save_arrays(path, 7, hashes, parts)
    loaded_hashes, loaded_parts, _ = m.load_arrays(path)

    def own(a: np.ndarray) -> bool:
        return isinstance(getattr(a.base, "obj", None), mmap.mmap)

    for index in (loaded_hashes, loaded_parts):
        assert len(index._ph) > index._n == n and own(index._ph)
    assert len(loaded_parts._span_start) > loaded_parts._spans == n

    def columns() -> list[np.ndarray]:
        return [loaded_hashes._ph, loaded_parts._ph, loaded_parts._span_start]

    before = columns()
    loaded_hashes.add(n + 1, 12345, 678)
    loaded_parts.add(n + 1, [(2, 999, 0)])
    assert all(a is b for a, b in zip(before, columns(), strict=True))
    assert loaded_hashes.distance(n + 1, [(12345, 678)]) == 0
    assert loaded_parts.search([999], 0) == [(0, n + 1, 2, 0)]
    assert loaded_hashes.search([(int(values[9]), int(values[9]) >> 3)], 0, 0)[0].file_id == 10

    cut = tmp_path / "cut.npz"  # the region column loses its last bytes
    with zipfile.ZipFile(path) as src, zipfile.ZipFile(cut, "w") as dst:
        for item in src.infolist():
            data = src.read(item)
            dst.writestr(item, data[:-8] if item.filename == "r_ph.npy" else data)
    assert m.load_arrays(cut) is None


def test_distinct_keys_as_numpy_unique_gives_them():
    """_first_of_each and _distinct stand in for np.unique (which imports numpy.ma)."""
    import watcherd.matching as m

    keys = np.random.default_rng(6).integers(0, 50, size=500)
    _, first = np.unique(keys, return_index=True)
    assert m._first_of_each(keys).tolist() == first.tolist()
    assert m._distinct(keys).tolist() == np.unique(keys).tolist()
    assert m._first_of_each(np.empty(0, dtype=np.int64)).tolist() == []


def test_region_search_does_not_copy_the_span_starts():
    """The rows found are looked up among the spans' int32 starts as int32: int64 rows
    made numpy copy every start to int64 first (8 MB per search at a million photos)."""
    import tracemalloc

    from watcherd.matching import RegionIndex

    n = 500_000  # starts: 2 MB as int32, 4 MB as an int64 copy
    values = np.random.default_rng(7).integers(0, 2**63, size=n)
    idx = RegionIndex.from_rows((i, 1, int(v)) for i, v in enumerate(values, 1))
    queries = [int(v) for v in values[:20]]
    tracemalloc.start()
    try:
        found = idx.search(queries, 8)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert [(q, f) for q, f, _, _ in found][:20] == [(q, q + 1) for q in range(20)]
    assert peak < 3_000_000, f"a search drew {peak / 1e6:.1f} MB"
