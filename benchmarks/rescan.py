"""Re-scanning an unchanged tree: every file is only stat()ed, none is read.

    python benchmarks/rescan.py [--files 50000] [--workdir /tmp/wd-rescan]

Makes --files small files in folders of 100 (cached in --workdir), records them in an
index as a first scan would (their real size, mtime and inode; synthetic hashes, since
only the stat facts matter to a re-scan, but as many as real photos have: a pHash and
dHash and ten region hashes each, so that an index of this size is as big, and anything
a re-scan builds from its rows costs what it would), then times `watcherd scan` of the tree as a
real subprocess, twice, and checks that it found every file unchanged. Also prints the
scan process's peak memory.

Target (issue 8): under 5 s for 50,000 files.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from scale import REGION_IDS, signed

from watcherd.index import Index

# `watcherd` as its console script runs it, then (from an atexit handler, which the
# command's quick exit still runs) the peak memory of that process alone (VmHWM: since
# its exec). getrusage's figure for children would include the memory this benchmark
# process held when it forked the scan (its list of 50,000 paths).
WITH_PEAK = """
import atexit, sys
from watcherd.cli import entry


@atexit.register
def peak():
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM"):
            print(line, file=sys.stderr)


entry()
"""


def make_tree(root: Path, files: int) -> list[Path]:
    paths = [root / f"{i // 100:04}" / f"IMG_{i:06}.jpg" for i in range(files)]
    if all(p.exists() for p in paths[:: max(1, files // 100)]) and paths[-1].exists():
        return paths
    for p in paths:
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(os.urandom(512))
    return paths


def record(db: Path, root: Path, paths: list[Path]) -> None:
    db.unlink(missing_ok=True)
    Index(db, writer=True).close()
    rng = random.Random(3)
    rows, regions = [], []
    for i, p in enumerate(paths, 1):
        st = p.stat()
        rows.append((i, str(p), str(root), st.st_size, st.st_mtime_ns, st.st_ino,
                     f"{rng.getrandbits(256):064x}", "JPEG", 1600, 1200,
                     signed(rng.getrandbits(64)), signed(rng.getrandbits(64)), "active",
                     "2026-01-01 00:00:00", "2026-01-01 00:00:00"))  # fmt: skip
        regions += [(i, r, signed(rng.getrandbits(64)), signed(rng.getrandbits(64)))
                    for r in REGION_IDS]  # fmt: skip
    con = sqlite3.connect(db)
    con.executemany(
        "INSERT INTO files (id, path, root, size, mtime_ns, inode, sha256, format, width, "
        "height, phash, dhash, status, first_seen, indexed_at) "
        "VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
        rows,
    )
    con.executemany("INSERT INTO region_hashes VALUES (?,?,?,?)", regions)
    con.commit()
    con.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--files", type=int, default=50_000)
    ap.add_argument("--workdir", type=Path, default=Path(tempfile.gettempdir()) / "wd-rescan")
    args = ap.parse_args()
    root = args.workdir / "tree"
    paths = make_tree(root, args.files)
    db = args.workdir / "index.sqlite3"
    record(db, root, paths)
    for attempt in (1, 2):
        t0 = time.perf_counter()
        proc = subprocess.run(
            [sys.executable, "-c", WITH_PEAK, "--db", str(db), "scan", "--json", str(root)],
            capture_output=True, text=True, check=True,
        )  # fmt: skip
        seconds = time.perf_counter() - t0
        stats = json.loads(proc.stdout)
        peak = int(proc.stderr.rsplit("VmHWM:", 1)[1].split()[0]) / 1024
        assert stats["skipped"] == args.files, stats
        print(f"re-scan {attempt}: {args.files} files unchanged in {seconds:.2f} s "
              f"(peak memory of the scan process {peak:.0f} MB)")  # fmt: skip


if __name__ == "__main__":
    main()
