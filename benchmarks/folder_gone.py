"""A deleted (or unmounted) folder of many indexed files, marked missing at once.

    python benchmarks/folder_gone.py [--files 4000 20000 100000] [--one-of 1000000]
                                     [--workdir /tmp/wd-gone]

For each count, fills a fresh index with that many active files under one folder that
does not exist on disk, then times what the daemon does when that folder is deleted
(`Daemon._on_dir_deleted`): list the folder's live rows, check each path is gone, mark
them all missing (their pairings end) and commit. Prints seconds and peak memory.

Then one file at a time, as the daemon marks a file deleted on its own: in an index of
--one-of files with a live decision for every fifth, the median time to mark one file
missing (ending its pairings on both sides of every decision) and commit. Before schema
6 added an index on decisions.original_id this read the whole decisions table: 21.8 ms
at a million files.

Until 2026-12-01 each file was marked through the ORM, one at a time, and each update
also checked every object the session held: 4,000 files took 45 s and the time grew
with the square of the count (20,000: over ten minutes).
"""

from __future__ import annotations

import argparse
import os
import random
import sqlite3
import statistics
import tempfile
import time
from pathlib import Path

from watcherd.index import Index


def fill(db: Path, folder: str, files: int) -> None:
    for p in db.parent.glob(db.name + "*"):
        p.unlink()
    Index(db, writer=True).close()
    con = sqlite3.connect(db)
    con.executemany(
        "INSERT INTO files (id, path, root, size, mtime_ns, inode, sha256, status, "
        "first_seen, indexed_at) VALUES (?,?,?,?,?,?,?,?,?,?)",
        [
            (i, f"{folder}/{i // 100:04}/IMG_{i:06}.jpg", folder, 1, 1, i, f"{i:064x}",
             "active", "2026-01-01 00:00:00", "2026-01-01 00:00:00")
            for i in range(1, files + 1)
        ],
    )  # fmt: skip
    con.commit()
    con.close()


def one_at_a_time(db: Path, files: int) -> float:
    """Median ms to mark one file missing in an index of `files` with a live decision
    for every fifth."""
    fill(db, "/nowhere/archive", files)
    rng = random.Random(1)
    con = sqlite3.connect(db)
    con.executemany(
        "INSERT INTO decisions (file_id, original_id, kind, distance, decided_at, action, "
        "current) VALUES (?,?,?,?,?,?,?)",
        [(i, rng.randrange(1, files), "near", 3, "2026-01-01 00:00:00", "flagged", 1)
         for i in range(1, files, 5)],
    )  # fmt: skip
    con.commit()
    con.close()
    times = []
    with Index(db, writer=True) as index:
        for fid in range(files // 2, files // 2 + 21):
            f = index.get(fid)
            t0 = time.perf_counter()
            index.mark_missing(f)
            index.commit()
            times.append((time.perf_counter() - t0) * 1000)
    return statistics.median(times)


def peak_mb() -> float:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmHWM"):
                return int(line.split()[1]) / 1024
    return float("nan")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--files", type=int, nargs="+", default=[4000, 20000, 100000])
    ap.add_argument("--one-of", type=int, default=1_000_000)
    ap.add_argument("--workdir", type=Path, default=Path(tempfile.gettempdir()) / "wd-gone")
    args = ap.parse_args()
    args.workdir.mkdir(parents=True, exist_ok=True)
    folder = str(args.workdir / "unplugged")
    for files in args.files:
        db = args.workdir / "index.sqlite3"
        fill(db, folder, files)
        with Index(db, writer=True) as index:
            t0 = time.perf_counter()
            gone = [fid for fid, path in index.live_under(folder) if not os.path.lexists(path)]
            index.mark_missing_many(gone)
            index.commit()
            seconds = time.perf_counter() - t0
        assert len(gone) == files
        print(f"{files} files gone: marked missing in {seconds:.2f} s "
              f"(peak memory of this process so far {peak_mb():.0f} MB)")  # fmt: skip
    if args.one_of:
        ms = one_at_a_time(args.workdir / "archive.sqlite3", args.one_of)
        print(f"one file gone from {args.one_of} indexed ({args.one_of // 5} decisions): "
              f"marked missing in {ms:.1f} ms (median of 21)")  # fmt: skip


if __name__ == "__main__":
    main()
