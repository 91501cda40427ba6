"""The scanner and pipeline, called directly: what gets indexed and what gets decided."""

import logging
import os

import pytest
from helpers import copies, photo, save
from PIL import Image

from watcherd import pipeline as pipeline_mod
from watcherd.config import Config
from watcherd.fingerprint import fingerprint_file
from watcherd.index import Index
from watcherd.models import ERROR, MISSING, Decision, File
from watcherd.pipeline import Pipeline
from watcherd.scanner import scan
from watcherd.walk import entries_under


def decisions(index: Index) -> dict[str, tuple[str, str]]:
    """redundant file name -> (kept file name, kind) over current decisions."""
    rows = index.session.query(Decision).filter(Decision.current.is_(True)).all()
    return {
        os.path.basename(d.file.path): (os.path.basename(index.group_root(d.file).path), d.kind)
        for d in rows
    }


def test_links_every_kind_of_copy_and_nothing_else(tmp_path, index, config):
    lib = tmp_path / "lib"
    for s in range(6):
        save(photo(s), lib / f"a{s}.jpg")
    for k in copies(photo(0), lib / "z", "a0").values():
        assert k.exists()
    stats = scan([lib], config, index)
    assert stats.seen == 6 + 7 and stats.new == 13 and stats.errors == 0
    found = decisions(index)
    # The lossless PNG has the original's pixels in the larger file: keep="best" keeps it.
    assert set(found) == {
        "a0.jpg", "a0-half.jpg", "a0-q35.jpg", "a0-rot90.jpg",
        "a0-mirror.jpg", "a0-exif6.jpg", "a0-bright.jpg",
    }  # fmt: skip
    assert {kept for kept, _ in found.values()} == {"a0.png"}
    assert stats.exact == 0 and stats.near == 7


def test_exact_copies_of_any_file_type(tmp_path, index, config):
    (tmp_path / "a.mp4").write_bytes(b"\x00video" * 1000)
    (tmp_path / "b.mp4").write_bytes(b"\x00video" * 1000)
    os.utime(tmp_path / "a.mp4", ns=(10**18, 10**18))
    os.utime(tmp_path / "b.mp4", ns=(2 * 10**18, 2 * 10**18))
    scan([tmp_path], config, index)
    assert decisions(index) == {"b.mp4": ("a.mp4", "exact")}


def test_keep_best_keeps_the_bigger_picture_even_when_it_arrives_later(tmp_path, index, config):
    img = photo(1, (800, 600))
    save(img.resize((400, 300)), tmp_path / "small.jpg")
    scan([tmp_path], config, index)
    save(img, tmp_path / "sub" / "big.jpg")
    scan([tmp_path], config, index)
    assert decisions(index) == {"small.jpg": ("big.jpg", "near")}


def test_keep_first_keeps_the_indexed_copy(tmp_path, index):
    img = photo(1, (800, 600))
    save(img.resize((400, 300)), tmp_path / "small.jpg")
    cfg = Config(workers=1, keep="first")
    scan([tmp_path], cfg, index)
    save(img, tmp_path / "sub" / "big.jpg")
    scan([tmp_path], cfg, index)
    assert decisions(index) == {"big.jpg": ("small.jpg", "near")}


def test_groups_have_one_kept_file(tmp_path, index, config):
    img = photo(2, (800, 600))
    save(img.resize((200, 150)), tmp_path / "1-tiny.jpg")
    save(img.resize((400, 300)), tmp_path / "2-small.jpg")
    save(img, tmp_path / "3-big.jpg")
    scan([tmp_path], config, index)
    found = decisions(index)
    assert found == {"1-tiny.jpg": ("3-big.jpg", "near"), "2-small.jpg": ("3-big.jpg", "near")}


def test_rescan_reads_nothing_unchanged(tmp_path, index, config, monkeypatch):
    for s in range(4):
        save(photo(s), tmp_path / f"{s}.jpg")
    scan([tmp_path], config, index)
    import watcherd.scanner as scanner_mod

    def boom(*a, **k):
        raise AssertionError("an unchanged file was read")

    monkeypatch.setattr(scanner_mod, "reader", lambda max_pixels: boom)
    stats = scan([tmp_path], config, index)
    assert (stats.seen, stats.skipped, stats.new) == (4, 4, 0)


def array_sources(caplog) -> list[tuple[str, int | None]]:
    """Where each matcher made in the logged run took its arrays from (saved, index),
    with how many files changed since saved arrays were saved."""
    arrays = [r for r in caplog.records if getattr(r, "event", None) == "arrays"]
    return [(r.source, getattr(r, "changed", None)) for r in arrays]


def test_a_rescan_with_nothing_to_read_builds_no_matcher_arrays(tmp_path, index, config, caplog):
    caplog.set_level(logging.INFO, logger="watcherd")
    arrays = tmp_path / "arrays.npz"
    for s in range(3):
        save(photo(s), tmp_path / "pics" / f"{s}.jpg")
    scan([tmp_path / "pics"], config, index, arrays=arrays)
    assert array_sources(caplog) == [("index", None)]
    caplog.clear()
    (tmp_path / "pics" / "0.jpg").unlink()  # a change, but nothing to read
    stats = scan([tmp_path / "pics"], config, index, arrays=arrays)
    assert (stats.seen, stats.missing, array_sources(caplog)) == (2, 1, [])


def test_a_scan_starts_from_saved_matcher_arrays_and_reads_again_what_changed_since(
    tmp_path, index, config, caplog
):
    caplog.set_level(logging.INFO, logger="watcherd")
    pics, arrays = tmp_path / "pics", tmp_path / "arrays.npz"
    save(photo(1), pics / "a.jpg")
    gone = save(photo(2), pics / "gone.jpg")
    scan([pics], config, index)
    Pipeline(index, config, arrays=arrays).save_arrays()  # as the daemon does at its stop
    b = save(photo(3), tmp_path / "other" / "b.jpg")
    scan([b.parent], config, index)  # written since the arrays were saved
    caplog.clear()
    save(photo(1).resize((320, 240)), pics / "a small.jpg")
    save(photo(3).resize((320, 240)), pics / "b small.jpg")
    scan([pics], config, index, arrays=arrays)
    assert array_sources(caplog) == [("saved", 1)]  # b.jpg
    assert decisions(index) == {
        "a small.jpg": ("a.jpg", "near"),
        "b small.jpg": ("b.jpg", "near"),
    }

    # A file vanished and a copy of it came: the copy must not be paired with it, in a
    # dry run (the vanishing is never committed) as in a real one.
    Pipeline(index, config, arrays=arrays).save_arrays()
    gone.unlink()
    save(photo(2).resize((320, 240)), pics / "gone small.jpg")
    for dry_run in (True, False):
        seen = []
        caplog.clear()
        stats = scan([pics], config, index, dry_run=dry_run, arrays=arrays, on_outcome=seen.append)
        assert stats.missing == 1 and array_sources(caplog) == [("saved", 1)]  # gone.jpg
        assert [o.verdict for o in seen if o.path.endswith("gone small.jpg")] == [None]
        assert (index.file_by_path(str(gone)).status == MISSING) is not dry_run
    assert len(decisions(index)) == 2


def test_a_scan_leaves_matcher_arrays_to_start_from_unless_those_saved_are_near_enough(
    tmp_path, index, config, caplog, monkeypatch
):
    pics, arrays = tmp_path / "pics", tmp_path / "arrays.npz"
    a = save(photo(1), pics / "a.jpg")
    scan([pics], config, index, dry_run=True, arrays=arrays)
    assert not arrays.exists(), "a dry run's decisions are not kept: nor are its arrays"
    scan([pics], config, index, arrays=arrays)
    caplog.set_level(logging.INFO, logger="watcherd")
    matcher = Pipeline(index, config, arrays=arrays)  # a daemon started next
    assert array_sources(caplog) == [("saved", 0)]
    assert index.file_by_path(str(a)).id in matcher.hashes
    index.rollback()

    saved = arrays.stat().st_ino  # each save writes a new file and renames it
    save(photo(2), pics / "b.jpg")
    scan([pics], config, index, arrays=arrays)  # one file behind: not written again
    assert arrays.stat().st_ino == saved
    monkeypatch.setattr(pipeline_mod, "SAVE_BEHIND", 2)
    save(photo(3), pics / "c.jpg")
    scan([pics], config, index, arrays=arrays)  # two behind: saved again
    assert arrays.stat().st_ino != saved
    caplog.clear()
    Pipeline(index, config, arrays=arrays)
    assert array_sources(caplog) == [("saved", 0)]


def test_a_matcher_catches_up_with_what_another_process_wrote_beside_it(tmp_path, config):
    """The daemon's arrays and a `watcherd scan` beside it: each new transaction of the
    one sees what the other committed, files added, changed and gone, and the change
    log is dropped once arrays are saved past it."""
    db, pics = tmp_path / "index.sqlite3", tmp_path / "pics"
    ours, theirs = Index(db, writer=True), Index(db, writer=True)
    save(photo(1), pics / "a.jpg")
    scan([pics], config, ours)
    matcher = Pipeline(ours, config, arrays=tmp_path / "arrays.npz")
    ours.commit()

    def decide(path):
        outcome = matcher.process(fingerprint_file(str(path)), str(path.parent))
        ours.commit()
        return outcome.verdict and os.path.basename(outcome.verdict.kept_path)

    b = save(photo(2), tmp_path / "other" / "b.jpg")
    c = save(photo(3), tmp_path / "other" / "c.jpg")
    scan([b.parent], config, theirs)  # another process, while this matcher runs
    assert decide(save(photo(2).resize((320, 240)), pics / "b small.jpg")) == "b.jpg"
    c.unlink()
    save(photo(4), tmp_path / "other" / "b.jpg")  # b becomes another picture
    scan([b.parent], config, theirs)
    assert decide(save(photo(3).resize((320, 240)), pics / "c small.jpg")) is None
    assert decide(save(photo(4).resize((320, 240)), pics / "b new small.jpg")) == "b.jpg"
    assert decide(save(photo(1).resize((320, 240)), pics / "a small.jpg")) == "a.jpg"
    assert matcher.catch_up() == 0, "its own decisions are in its arrays already"

    matcher.save_arrays()
    assert ours.changed_since(0) is None, "saved past them: the changes are dropped"
    assert ours.changed_since(ours.generation()) == []
    ours.rollback()
    theirs.close()
    ours.close()


# Names whose order within a folder differs from the order of their full paths.
AWKWARD = [
    "a b.jpg", "a.jpg", "a/z.jpg", "a-c.jpg", "a0.jpg", "B.jpg", "é.jpg", "ä/ö.jpg",
    "x/y/z.jpg", "x.y.jpg", "x/y.jpg", "日本.jpg",
]  # fmt: skip


def test_the_walk_comes_in_the_index_order(tmp_path, index, config):
    """A re-scan merges the tree with the index's rows, both read in path order: the
    walk must give the order SQLite sorts full paths in, which is not the order of the
    names within each folder ("a b.jpg", "a.jpg", then all of "a/", then "a-c.jpg"
    would be wrong: "-" sorts before "/")."""
    for name in AWKWARD:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(b"x")
    walked = [e.path for e in entries_under(tmp_path, config, [])]
    assert sorted(walked) == sorted(str(tmp_path / n) for n in AWKWARD)
    for path in reversed(walked):
        index.upsert_file(None, path=path, root=str(tmp_path), size=1, mtime_ns=1, inode=1)
    assert [p for p, _ in index.known_in_order(str(tmp_path), page=3)] == walked


def test_rescan_merges_changes_anywhere_in_the_tree(tmp_path, index, config):
    files = {}
    for s, name in enumerate(AWKWARD):
        files[name] = save(photo(s), tmp_path / name)
    assert scan([tmp_path], config, index).new == len(AWKWARD)
    files["a.jpg"].unlink()  # gone
    files["x/y.jpg"].rename(tmp_path / "a" / "moved.jpg")  # renamed into another folder
    save(photo(40), tmp_path / "a" / "new.jpg")  # new
    changed = files["é.jpg"]
    save(photo(41), changed)  # overwritten
    os.utime(changed, ns=(changed.stat().st_atime_ns, changed.stat().st_mtime_ns + 10**9))
    stats = scan([tmp_path], config, index)
    assert (stats.seen, stats.skipped) == (len(AWKWARD), len(AWKWARD) - 3)
    assert (stats.new, stats.changed, stats.moved, stats.missing) == (1, 1, 1, 1)
    assert index.file_by_path(str(files["a.jpg"])).status == MISSING
    assert index.file_by_path(str(tmp_path / "a" / "moved.jpg")) is not None


def _tree_state(index: Index) -> tuple:
    files = sorted((f.path, f.status, f.sha256) for f in index.session.query(File))
    return files, sorted(decisions(index).items())


@pytest.mark.parametrize("dry_run", [False, True])
def test_a_scan_too_large_to_hold_walks_again_and_decides_alike(
    tmp_path, config, monkeypatch, dry_run
):
    """Past HOLD files to read, a scan does not hold them: renames and vanished files are
    settled by another walk, then the files are found again as they are read. Every
    count, row and decision is what the held list gives, including a file renamed to a
    path that comes before its old one (x/y.jpg -> a/moved.jpg)."""
    from watcherd import scanner

    results = {}
    for hold in (1000, 2):
        monkeypatch.setattr(scanner, "HOLD", hold)
        root = tmp_path / f"hold{hold}"
        files = {name: save(photo(s), root / name) for s, name in enumerate(AWKWARD)}
        save(photo(3), root / "x" / "copy.jpg", quality=60)  # a near copy of a/z.jpg
        with Index(tmp_path / f"i{hold}.sqlite3") as index:
            first = scan([root], config, index)
            files["a.jpg"].unlink()
            files["x/y.jpg"].rename(root / "a" / "moved.jpg")
            save(photo(40), root / "a" / "new.jpg")
            save(photo(41), files["é.jpg"])
            st = files["é.jpg"].stat()
            os.utime(files["é.jpg"], ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
            before = _tree_state(index)
            second = scan([root], config, index, dry_run=dry_run)
            after = _tree_state(index)
            if dry_run:
                assert after == before
            rows = [(p.replace(str(root), ""), *rest) for p, *rest in after[0]]
            results[hold] = (first.as_dict(), second.as_dict(), rows, after[1])
    for r in results.values():
        del r[0]["seconds"], r[1]["seconds"]
    assert results[2] == results[1000]
    first, second = results[2][:2]
    assert (first["new"], first["near"]) == (len(AWKWARD) + 1, 1)
    assert (second["new"], second["changed"], second["moved"], second["missing"]) == (1, 1, 1, 1)


def test_changed_file_is_refingerprinted(tmp_path, index, config):
    p = save(photo(1), tmp_path / "a.jpg")
    save(photo(1), tmp_path / "b.jpg", quality=60)
    scan([tmp_path], config, index)
    assert "b.jpg" in decisions(index) or "a.jpg" in decisions(index)
    save(photo(9), p)  # overwritten with a different picture
    os.utime(p, ns=(p.stat().st_atime_ns, p.stat().st_mtime_ns + 10**9))
    stats = scan([tmp_path], config, index)
    assert stats.changed == 1
    assert decisions(index) == {}


def test_rename_keeps_row_and_is_not_a_duplicate(tmp_path, index, config):
    p = save(photo(3), tmp_path / "a.jpg")
    scan([tmp_path], config, index)
    first_id = index.file_by_path(str(p)).id
    (tmp_path / "sub").mkdir()
    new = tmp_path / "sub" / "renamed.jpg"
    p.rename(new)
    stats = scan([tmp_path], config, index)
    assert (stats.moved, stats.new, stats.missing) == (1, 0, 0)
    assert index.file_by_path(str(new)).id == first_id
    assert decisions(index) == {}


def test_deleted_file_is_marked_missing_and_its_pairing_ends(tmp_path, index, config):
    save(photo(4), tmp_path / "a.jpg")
    b = save(photo(4), tmp_path / "b.jpg", quality=50)
    scan([tmp_path], config, index)
    assert decisions(index)
    b.unlink()
    stats = scan([tmp_path], config, index)
    assert stats.missing == 1
    assert index.file_by_path(str(b)).status == MISSING
    assert decisions(index) == {}


def test_bad_files_are_errors_and_the_scan_goes_on(tmp_path, index, config):
    save(photo(5), tmp_path / "good.jpg")
    (tmp_path / "empty.jpg").touch()
    (tmp_path / "text.jpg").write_text("hello")
    full = save(photo(6), tmp_path / "x.jpg").read_bytes()
    (tmp_path / "x.jpg").unlink()
    (tmp_path / "trunc.jpg").write_bytes(full[: len(full) // 3])
    stats = scan([tmp_path], config, index)
    assert stats.errors == 3 and stats.seen == 4
    rows = {os.path.basename(f.path): f for f in index.session.query(File)}
    assert rows["good.jpg"].status == "active"
    for name in ("empty.jpg", "text.jpg", "trunc.jpg"):
        assert rows[name].status == ERROR and rows[name].error


def test_dry_run_writes_nothing(tmp_path, index, config):
    save(photo(7), tmp_path / "a.jpg")
    save(photo(7), tmp_path / "b.png")
    stats = scan([tmp_path], config, index, dry_run=True)
    assert stats.near + stats.exact == 1
    assert index.session.query(File).count() == 0


def test_hidden_and_temporary_files_ignored(tmp_path, index, config):
    save(photo(8), tmp_path / "a.jpg")
    save(photo(8), tmp_path / ".hidden.jpg")
    save(photo(8), tmp_path / ".thumbnails" / "a.jpg")
    (tmp_path / "dl.jpg.part").write_bytes((tmp_path / "a.jpg").read_bytes())
    os.symlink(tmp_path / "a.jpg", tmp_path / "link.jpg")
    stats = scan([tmp_path], config, index)
    assert stats.seen == 1 and decisions(index) == {}


def test_parallel_workers_decide_like_one(tmp_path):
    for s in range(10):
        img = photo(s)
        save(img, tmp_path / f"{s}.jpg")
        save(img.transpose(Image.Transpose.FLIP_LEFT_RIGHT), tmp_path / f"{s}m.jpg")
    results = []
    for workers in (1, 2):
        with Index(tmp_path / f"i{workers}.sqlite3") as idx:
            scan([tmp_path], Config(workers=workers), idx)
            results.append(decisions(idx))
    assert results[0] == results[1]
    assert len(results[0]) == 10


@pytest.mark.parametrize("workers", [1, 2])
def test_unreadable_folder_is_reported(tmp_path, index, workers):
    save(photo(1), tmp_path / "ok" / "a.jpg")
    stats = scan([tmp_path / "ok", tmp_path / "nope"], Config(workers=workers), index)
    assert stats.seen == 1
    assert any("nope" in p for p, _ in stats.error_paths)


def test_a_crashing_worker_costs_one_file_not_the_scan():
    from helpers import double_or_die

    from watcherd.scan_reads import ordered_map

    items = list(range(40))
    out = list(ordered_map(double_or_die, items, workers=2, on_crash=lambda i: -i, window=6))
    assert out == [-13 if i == 13 else i * 2 for i in items]


def test_a_stuck_worker_costs_one_file_not_the_scan():
    from helpers import double_or_hang

    from watcherd.scan_reads import ordered_map

    items = list(range(40))
    out = list(
        ordered_map(
            double_or_hang, items, workers=2, on_crash=lambda i: -i, window=3, timeout=1,
            on_timeout=lambda i: None,
        )
    )  # fmt: skip
    assert out == [None if i == 13 else i * 2 for i in items]


@pytest.mark.parametrize("workers", [1, 2])
def test_a_small_scan_is_isolated_from_its_decoder_too(workers):
    """One or two files, or one worker configured: still read in a worker process, so
    a decoder that crashes or hangs costs that file, not the scan (it used to run in
    the scan's own process, where a crash killed it and a hang never ended)."""
    from helpers import double_or_die, double_or_hang

    from watcherd.scan_reads import ordered_map

    crashed = ordered_map(double_or_die, [13, 2], workers=workers, on_crash=lambda i: -i)
    assert list(crashed) == [-13, 4]
    if workers > 1:
        return  # a hang costs seconds to show; once is enough
    stuck = ordered_map(
        double_or_hang, [13], workers=workers, on_crash=lambda i: -i, timeout=1,
        on_timeout=lambda i: None,
    )  # fmt: skip
    assert list(stuck) == [None]


def test_a_few_files_still_go_to_every_worker(tmp_path):
    """Files go to the workers several at a time, but a scan of a few files must not
    hand them all to one worker: each item here waits until another worker has one."""
    from helpers import meet_another_worker

    from watcherd.scan_reads import ordered_map

    items = [str(tmp_path)] * 4
    pids = list(ordered_map(meet_another_worker, items, workers=2, on_crash=lambda i: 0))
    assert len(set(pids)) == 2 and len(os.listdir(tmp_path)) == 2


def test_workers_that_die_on_everything_stop_the_scan_with_a_clear_error():
    from helpers import always_die

    from watcherd.scan_reads import ordered_map
    from watcherd.workers import WorkersFailing

    with pytest.raises(WorkersFailing):
        list(ordered_map(always_die, list(range(20)), workers=2, on_crash=lambda i: -i))


def live_pairs(index: Index) -> set[tuple[str, str]]:
    rows = index.session.query(Decision).filter(Decision.current.is_(True)).all()
    return {(os.path.basename(d.file.path), os.path.basename(d.original.path)) for d in rows}


def test_rehash_fills_in_new_fingerprints_and_keeps_every_decision(tmp_path, index, config):
    """An index from before region hashes and thumbnails: `--rehash` reads every file
    again; the copies read before their kept file in the same pass stay decided."""
    lib = tmp_path / "lib"
    img = photo(7, (720, 540))
    save(img.resize((360, 270)), lib / "a_small_copy.jpg")  # read first, by name
    save(img, lib / "b_original.jpg")
    save(img.transpose(Image.Transpose.ROTATE_90), lib / "c_turned.jpg")
    scan([lib], config, index)
    before = live_pairs(index)
    assert len(before) == 2
    conn = index.session.connection()
    conn.exec_driver_sql("DELETE FROM region_hashes")
    conn.exec_driver_sql("DELETE FROM thumbnails")
    index.commit()
    again = scan([lib], config, index)
    assert again.skipped == 3 and index.regions_of(1) == []
    stats = scan([lib], config, index, rehash=True)
    assert stats.changed == 3 and stats.skipped == 0
    ids = [f.id for f in index.session.query(File)]
    assert all(index.regions_of(i) for i in ids) and len(index.thumbnails(ids)) == 3
    assert live_pairs(index) == before


def test_touched_but_unchanged_file_keeps_its_decision(tmp_path, index, config):
    lib = tmp_path / "lib"
    img = photo(8)
    save(img, lib / "a.jpg")
    copy = save(img.resize((320, 240)), lib / "b.jpg")
    scan([lib], config, index)
    before = live_pairs(index)
    assert before == {("b.jpg", "a.jpg")}
    os.utime(copy, ns=(10**18, 10**18))  # a sync tool touched it: same bytes
    os.utime(lib / "a.jpg", ns=(10**18, 10**18))
    stats = scan([lib], config, index)
    assert stats.changed == 2
    assert live_pairs(index) == before
