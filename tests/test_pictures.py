"""The pictures verification compares: decoded once, kept within a memory budget."""

from __future__ import annotations

import threading
import time

from helpers import busy_photo, save

from watcherd import pictures
from watcherd.fingerprint import fingerprint_file, grey_rendition
from watcherd.index import Index
from watcherd.verify import check


def test_a_newcomer_is_compared_as_the_index_will_have_it(tmp_path):
    """The worker decodes the newcomer's thumbnail for verification; the picture is the
    one an indexed file's stored thumbnail gives, so a check does not depend on whether
    a file is the newcomer or the indexed one."""
    fp = fingerprint_file(str(save(busy_photo(1), tmp_path / "a.jpg")))
    width, height, pixels = fp.grey
    stored = grey_rendition(fp.thumbnail)
    assert (width, height) == stored.size and pixels == stored.tobytes()


def test_kept_pictures_stay_within_their_memory_budget(tmp_path, monkeypatch):
    """A daemon checks newcomers for months: the pictures it keeps, with the grids its
    checks make of them after they were kept, never grow past CACHE_BYTES."""
    monkeypatch.setattr(pictures, "CACHE_BYTES", 200_000)
    fps = [fingerprint_file(str(save(busy_photo(i), tmp_path / f"{i}.jpg"))) for i in range(12)]
    with Index(tmp_path / "i.sqlite3") as index:
        kept = pictures.Pictures(index)
        for fp in fps:
            row = {k: getattr(fp, k) for k in ("path", "size", "mtime_ns", "inode", "sha256")}
            f = index.upsert_file(None, root=str(tmp_path), **row)
            index.set_thumbnail(f.id, fp.thumbnail, fresh=True)
            kept.indexed(f.id, fp)
            picture = kept.get(f.id)
            check(kept.newcomer(fps[0]), picture, "crop:centre")  # makes its grids
            kept.get(f.id)
            held = [p for p in kept._kept.values() if p is not None]
            assert sum(p.nbytes for p in held) == kept._bytes <= 200_000
        assert 1 < len(held) < len(fps)
        first = index.get(1)
        assert kept.get(first.id) is not None  # dropped, read again from the index


def test_a_daemon_at_rest_keeps_no_pictures(tmp_path, monkeypatch):
    """The pictures kept for checking the next newcomers (up to CACHE_BYTES) are let go
    with the idle workers: a daemon that waits holds its index, not 40 MB of
    thumbnails (latency.py's idle daemon was over its 150 MB target by them)."""
    from watcherd import read_queue
    from watcherd.config import Config
    from watcherd.fingerprint import fingerprint_file as read
    from watcherd.pipeline import Pipeline

    paths = [save(busy_photo(i), tmp_path / "lib" / f"{i}.jpg") for i in range(3)]
    with Index(tmp_path / "i.sqlite3") as index:
        pipeline = Pipeline(index, Config(workers=1))
        for path in paths:
            pipeline.process(read(str(path)), str(path.parent), new=True)
        index.commit()
        kept = pipeline.judge.pictures
        assert kept._bytes > 0 and len(kept._kept) == 3
        done, woken = [], threading.Event()
        reads = read_queue.ReadQueue(Config(workers=1), lambda fp, root: done.append(fp),
                                     lambda path: False, woken.set)  # fmt: skip
        try:
            reads.add(str(paths[0]), str(paths[0].parent))
            reads.step(time.monotonic())  # handed to a worker
            while not done:
                assert woken.wait(60), "the read never finished"
                woken.clear()
                reads.step(time.monotonic())
            assert not reads.release_if_idle()  # work a moment ago: the workers stay
            monkeypatch.setattr(read_queue, "POOL_IDLE_SECONDS", 0.0)
            assert reads.release_if_idle() and not reads.readers.running
        finally:
            reads.close()
        pipeline.judge.rest()  # what the daemon does when its workers go
        assert kept._bytes == 0 and not kept._kept
