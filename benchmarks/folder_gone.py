"""A deleted (or unmounted) folder of many indexed files, marked missing at once.

    python benchmarks/folder_gone.py [--files 4000 20000 100000] [--workdir /tmp/wd-gone]

For each count, fills a fresh index with that many active files under one folder that
does not exist on disk, then times what the daemon does when that folder is deleted
(`Daemon._on_dir_deleted`): list the folder's live rows, check each path is gone, mark
them all missing (their pairings end) and commit. Prints seconds and peak memory.

Until 2026-12-01 each file was marked through the ORM, one at a time, and each update
also checked every object the session held: 4,000 files took 45 s and the time grew
with the square of the count (20,000: over ten minutes).
"""

from __future__ import annotations

import argparse
import os
import sqlite3
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


def peak_mb() -> float:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmHWM"):
                return int(line.split()[1]) / 1024
    return float("nan")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--files", type=int, nargs="+", default=[4000, 20000, 100000])
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


if __name__ == "__main__":
    main()
