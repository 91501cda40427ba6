"""A first scan into a new index starts reading before it has opened the index
(readahead); the scan's ordered map takes those reads over, or drops them."""

import logging
from collections import Counter

import pytest
from helpers import logged_double, photo, save

from watcherd import readahead
from watcherd.config import Config
from watcherd.index import Index
from watcherd.scan_reads import ReadAhead, ordered_map
from watcherd.scanner import scan
from watcherd.walk import entries_under


def reads(log) -> Counter:
    return Counter(int(line) for line in log.read_text().split())


def test_what_was_read_ahead_is_taken_over_not_read_again(tmp_path, caplog):
    log = tmp_path / "calls"
    items = [(str(log), i) for i in range(30)]
    ahead = ReadAhead(logged_double, lambda: items[:10], workers=2)
    with caplog.at_level(logging.DEBUG, logger="watcherd"):
        out = list(ordered_map(logged_double, items, 2, on_crash=lambda i: -1, ahead=ahead))
    assert out == [i * 2 for i in range(30)]
    assert reads(log) == Counter(range(30))  # each once
    assert "reading on from 10 files read ahead" in caplog.text


def test_other_files_first_and_what_was_read_ahead_is_dropped(tmp_path, caplog):
    """The folder changed between the read-ahead's walk and the scan's: a new first
    file. Everything the scan wants is read, in its order."""
    log, stale = tmp_path / "calls", tmp_path / "stale"
    items = [(str(log), i) for i in range(20)]
    ahead = ReadAhead(logged_double, lambda: [(str(stale), i) for i in range(1, 9)], workers=2)
    with caplog.at_level(logging.DEBUG, logger="watcherd"):
        out = list(ordered_map(logged_double, items, 2, on_crash=lambda i: -1, ahead=ahead))
    assert out == [i * 2 for i in range(20)]
    assert reads(log) == Counter(range(20))
    assert "dropped what was read ahead" in caplog.text


def test_a_decoder_crash_among_the_files_read_ahead_costs_that_file(tmp_path):
    log = tmp_path / "die"
    items = [(str(log), i) for i in range(24)]
    ahead = ReadAhead(logged_double, lambda: items[:16], workers=2)
    out = list(ordered_map(logged_double, items, 2, on_crash=lambda i: -1, ahead=ahead))
    assert out == [-1 if i == 13 else i * 2 for i in range(24)]


def test_nothing_to_read_ahead_or_a_failing_walk_reads_as_usual(tmp_path):
    log = tmp_path / "calls"
    items = [(str(log), i) for i in range(6)]
    for first in (list, lambda: 1 / 0):
        ahead = ReadAhead(logged_double, first, workers=2)
        assert list(ordered_map(logged_double, items, 2, lambda i: -1, ahead=ahead)) == [
            i * 2 for i in range(6)
        ]
        assert ahead.take() is None


def test_only_a_new_index_is_read_ahead_and_only_its_first_files(tmp_path, monkeypatch):
    lib = tmp_path / "lib"
    for name in ["b.jpg", "a b.jpg", "a/z.jpg", "a.jpg", "c/d/e.png"]:
        save(photo(len(name), (48, 36)), lib / name)
    (lib / "a b.txt").write_text("not a picture")
    db = tmp_path / "i.sqlite3"
    db.touch()
    assert readahead.start([lib], Config(), db) is None
    monkeypatch.setattr(readahead, "AHEAD_FILES", 3)
    ahead = readahead.start([lib], Config(), tmp_path / "new.sqlite3")
    taken = ahead.take()
    assert taken is not None
    walked = [e.path for e in entries_under(lib, Config(), [])]
    assert taken[0] == walked[:3]  # the order the scan reads in
    ahead.close()
    taken[1].shutdown()


@pytest.mark.parametrize("change", [None, "added"])
def test_a_scan_into_a_new_index_reads_each_file_once(tmp_path, caplog, change):
    lib = tmp_path / "lib"
    for i in range(12):
        save(photo(i % 5, (64, 48)), lib / f"p{i:02}.jpg")
    db = tmp_path / "i.sqlite3"
    ahead = readahead.start([lib], Config(workers=2), db)
    if change == "added":  # after the read-ahead's walk: a new file, first in path order
        walked = [str(p) for p in sorted(lib.iterdir())]
        ahead.close()
        ahead = ReadAhead(readahead.read(Config().max_pixels), lambda: walked, workers=2)
        save(photo(9, (64, 48)), lib / "a.jpg")
    with Index(db, writer=True) as index, caplog.at_level(logging.DEBUG, logger="watcherd"):
        stats = scan([lib], Config(workers=2), index, ahead=ahead)
        index.commit()
        assert stats.new == 12 + (change == "added") and stats.errors == 0
        assert stats.exact + stats.near == 7  # five pictures, twelve files
    if change is None:
        assert "reading on from 12 files read ahead" in caplog.text
    else:
        assert "dropped what was read ahead" in caplog.text
