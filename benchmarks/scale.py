"""A million photos in the index: deciding a newcomer, daemon start, memory, disk.

    python benchmarks/scale.py [--files 1000000] [--workdir /tmp/wd-scale]

Fills an index with --files synthetic file rows (random 64-bit pHash and dHash; each
with the eleven region hashes a real photo gets, unless --no-regions), cached in
--workdir between runs. Then, in this process:

- builds the matcher's arrays from the index as the daemon does (seconds, memory);
- decides 300 newcomers through the real Pipeline (every pose, every region, the
  `similar` search, the SQLite writes): a third are near copies of indexed pictures,
  a third turned copies, a third new pictures; prints the median and 99th percentile;

and as a subprocess, `watcherd run` on an empty folder with this index, three times:
seconds from start to READY (the JSON log line) and the daemon's memory then, when it
builds its arrays from the index, when it loads those it saved as it stopped, and when it
loads them after another process added --added files to the index (it reads those
files again instead of rebuilding); and its memory once --arrivals new photos moved
into the folder are decided. Also the index file's size per file.

Targets (issue 8): deciding one newcomer under 10 ms median; start to READY under 3 s;
daemon memory under 300 MB. `--db URL` measures the same on a PostgreSQL database
(emptied, then filled by COPY) instead of the SQLite file.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from watcherd.config import Config
from watcherd.fingerprint import REGIONS, SQUARES, TRANSFORM_NAMES, Fingerprint
from watcherd.index import Index
from watcherd.pipeline import Pipeline

REGION_IDS = [*REGIONS, *SQUARES, 11]


def signed(v: int) -> int:
    return v - (1 << 64) if v >= 1 << 63 else v


def fill(db: Path, files: int, regions: bool, first: int = 1, seed: int = 1) -> None:
    """Files `first`..`first + files - 1`, written straight into SQLite (its triggers
    count and log them as they would any other writer's)."""
    Index(db, writer=True).close()  # the schema, by watcherd itself
    rng = random.Random(seed)
    con = sqlite3.connect(db)
    con.execute("PRAGMA journal_mode=WAL")
    con.execute("PRAGMA synchronous=OFF")
    batch, regs = [], []
    last = first + files - 1
    for i in range(first, last + 1):
        batch.append((i, f"/archive/{i // 1000:04}/IMG_{i:07}.jpg", "/archive",
                      rng.randrange(500_000, 6_000_000), 1_600_000_000 * 10**9 + i, i,
                      f"{rng.getrandbits(256):064x}", 4032, 3024, "JPEG",
                      signed(rng.getrandbits(64)), signed(rng.getrandbits(64)), "active",
                      "2026-01-01 00:00:00", "2026-01-01 00:00:00"))  # fmt: skip
        if regions:
            regs += [(i, r, signed(rng.getrandbits(64)), signed(rng.getrandbits(64)))
                     for r in REGION_IDS]  # fmt: skip
        if len(batch) == 50_000 or i == last:
            con.executemany(
                "INSERT INTO files (id, path, root, size, mtime_ns, inode, sha256, width, "
                "height, format, phash, dhash, status, first_seen, indexed_at) "
                "VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                batch,
            )
            con.executemany("INSERT INTO region_hashes VALUES (?,?,?,?)", regs)
            con.commit()
            batch, regs = [], []
    con.close()


def fill_server(url: str, files: int, regions: bool, first: int = 1, seed: int = 1) -> None:
    """The same rows as `fill`, into a PostgreSQL database by COPY. Filling a large
    index, the change-log triggers are off (twelve million trigger calls would take
    longer than the rest of the benchmark) and the generation is moved on once after,
    so that saved arrays do not count as current; a few added files are logged."""
    import psycopg
    from sqlalchemy.engine import make_url

    from watcherd.index_location import this_machine

    Index(url, writer=True).close()
    u = make_url(url)
    conn = psycopg.connect(
        host=u.query.get("host") or u.host, user=u.username, dbname=u.database, port=u.port
    )
    rng = random.Random(seed)
    machine = this_machine()
    quiet = files > 100_000  # a few added files are logged, as any writer's are
    with conn:
        if quiet:
            conn.execute("ALTER TABLE files DISABLE TRIGGER USER")
            conn.execute("ALTER TABLE region_hashes DISABLE TRIGGER USER")
        columns = ("id, path, root, size, mtime_ns, inode, sha256, width, height, format, "
                   "phash, dhash, status, first_seen, indexed_at, machine")  # fmt: skip
        with conn.cursor().copy(f"COPY files ({columns}) FROM STDIN") as copy:
            for i in range(first, first + files):
                copy.write_row((i, f"/archive/{i // 1000:04}/IMG_{i:07}.jpg", "/archive",
                                rng.randrange(500_000, 6_000_000), 1_600_000_000 * 10**9 + i,
                                i, f"{rng.getrandbits(256):064x}", 4032, 3024, "JPEG",
                                signed(rng.getrandbits(64)), signed(rng.getrandbits(64)),
                                "active", "2026-01-01 00:00:00", "2026-01-01 00:00:00",
                                machine))  # fmt: skip
        if regions:
            rng = random.Random(seed + 1)
            with conn.cursor().copy("COPY region_hashes FROM STDIN") as copy:
                for i in range(first, first + files):
                    for r in REGION_IDS:
                        copy.write_row((i, r, signed(rng.getrandbits(64)),
                                        signed(rng.getrandbits(64))))  # fmt: skip
        if quiet:
            conn.execute("ALTER TABLE files ENABLE TRIGGER USER")
            conn.execute("ALTER TABLE region_hashes ENABLE TRIGGER USER")
            conn.execute("UPDATE meta SET value = value + 1 WHERE key = 'generation'")
        conn.execute("SELECT setval('files_id_seq', (SELECT max(id) FROM files))")
        conn.execute("ANALYZE")
    conn.close()


def restore_index(db: Path | str, files: int) -> None:
    """Take out what the daemon runs added (files beyond the synthetic ones, their
    decisions, regions and thumbnails go with them), so every run starts alike."""
    if isinstance(db, str):
        from sqlalchemy import create_engine

        engine = create_engine(db)
        with engine.begin() as conn:
            conn.exec_driver_sql(f"DELETE FROM files WHERE id > {int(files)}")
        engine.dispose()
        return
    con = sqlite3.connect(db)
    con.execute("PRAGMA foreign_keys=ON")
    con.execute("DELETE FROM files WHERE id > ?", (files,))
    con.commit()
    con.close()


def rss_mb(pid: int | str = "self") -> float:
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def settled_rss_mb(pid: int, deadline: float = 10.0) -> float:
    """Memory once it stops changing: the daemon commits and tidies up just after it
    logs its last decision."""
    end = time.monotonic() + deadline
    last = rss_mb(pid)
    while time.monotonic() < end:
        time.sleep(0.5)
        now = rss_mb(pid)
        if abs(now - last) < 0.5:
            return now
        last = now
    return last


def flip(v: int, bits: int, rng: random.Random) -> int:
    for b in rng.sample(range(64), bits):
        v ^= 1 << b
    return v


def newcomers(index: Index, n: int, rng: random.Random, folder: Path) -> list[Fingerprint]:
    """A third near copies, a third turned copies (matching in another pose), a third
    new pictures, with random region hashes. Each stands for a file in `folder` of its
    size and time (sparse, empty): a decision records a file only if it is still there
    as it was read."""
    folder.mkdir(parents=True, exist_ok=True)
    sample = (
        index.session.connection()
        .exec_driver_sql(f"SELECT phash, dhash FROM files ORDER BY random() LIMIT {n}")
        .fetchall()
    )
    out = []
    for i, (p, d) in enumerate(sample):
        p, d = p & 0xFFFFFFFFFFFFFFFF, d & 0xFFFFFFFFFFFFFFFF
        poses = [(rng.getrandbits(64), rng.getrandbits(64)) for _ in TRANSFORM_NAMES]
        if i % 3 == 0:
            poses[0] = (flip(p, 4, rng), flip(d, 6, rng))
        elif i % 3 == 1:
            poses[2] = (flip(p, 2, rng), flip(d, 3, rng))
        regions = tuple((r, rng.getrandbits(64), rng.getrandbits(64)) for r in REGION_IDS)
        path = folder / f"{i}.jpg"
        with open(path, "wb") as fh:
            fh.truncate(1_000_000 + i)
        os.utime(path, ns=(i, i))
        fp = Fingerprint(str(path), 1_000_000 + i, i, 10_000_000 + i,
                         sha256=f"{rng.getrandbits(256):064x}", width=1600, height=1200,
                         format="JPEG", variants=tuple(poses), regions=regions)  # fmt: skip
        fp.phash, fp.dhash = poses[0]
        out.append(fp)
    return out


def arrivals(folder: Path, count: int, seed: int) -> list[Path]:
    """`count` new photos (random blocks, 640x480 JPEG), written beside the folder and
    moved in, as a sync client does."""
    from PIL import Image

    rng = random.Random(seed)
    out = []
    for i in range(count):
        img = Image.new("RGB", (16, 12))
        img.putdata([tuple(rng.randrange(256) for _ in range(3)) for _ in range(16 * 12)])
        staged = folder.parent / f"arrival-{seed}-{i}.jpg"
        img.resize((640, 480), Image.Resampling.NEAREST).save(staged, quality=85)
        out.append(staged)
    return out


def daemon_run(db: Path, tmp: Path, arriving: int, seed: int) -> tuple[float, float, float]:
    """Seconds to READY and memory then; memory once `arriving` new photos are decided."""
    folder = tmp / "watched"
    folder.mkdir(exist_ok=True)
    staged = arrivals(folder, arriving, seed)
    t0 = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "-m", "watcherd", "--db", str(db), "--log-format", "json", "run",
         str(folder)],
        stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True,
        env={**os.environ, "HOME": str(tmp)},
    )  # fmt: skip
    try:
        decided = 0
        for line in proc.stderr:
            event = json.loads(line).get("event")
            if event == "ready":
                ready = time.perf_counter() - t0
                at_ready = rss_mb(proc.pid)
                for path in staged:
                    path.rename(folder / path.name)
                if not staged:
                    return ready, at_ready, at_ready
            elif event in ("indexed", "duplicate", "similar", "error"):
                decided += 1
                if decided == len(staged):
                    return ready, at_ready, settled_rss_mb(proc.pid)
        raise RuntimeError("daemon exited before it was done")
    finally:
        proc.terminate()  # a clean stop: it saves its arrays
        proc.wait(timeout=120)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--files", type=int, default=1_000_000)
    ap.add_argument("--workdir", type=Path, default=Path(tempfile.gettempdir()) / "wd-scale")
    ap.add_argument("--no-regions", action="store_true")
    ap.add_argument("--newcomers", type=int, default=300)
    ap.add_argument("--arrivals", type=int, default=100, help="photos dropped on the daemon")
    ap.add_argument("--added", type=int, default=1000, help="files another process adds")
    ap.add_argument(
        "--db", help="a PostgreSQL database to measure instead of SQLite (emptied and filled)"
    )
    args = ap.parse_args()
    args.workdir.mkdir(parents=True, exist_ok=True)
    tag = "" if not args.no_regions else "-noregions"
    db = args.db or args.workdir / f"index-{args.files}{tag}.sqlite3"
    filler = fill_server if args.db else fill
    if args.db:
        from accuracy import empty_database

        empty_database(args.db)
        t0 = time.perf_counter()
        fill_server(args.db, args.files, not args.no_regions)
        print(f"filled the PostgreSQL database in {time.perf_counter() - t0:.0f} s")
    elif not db.exists():
        t0 = time.perf_counter()
        fill(db, args.files, not args.no_regions)
        print(f"filled {db} in {time.perf_counter() - t0:.0f} s")
    if not args.db:
        size = db.stat().st_size
        print(f"index: {args.files} files, {size / 1e6:.0f} MB on disk, "
              f"{size / args.files:.0f} bytes per file")  # fmt: skip

    from watcherd.index_location import beside

    # a server index keeps its arrays in this machine's state folder: one for every run
    os.environ["XDG_STATE_HOME"] = str(args.workdir / "state")
    arrays = beside(db, ".arrays.npz")
    arrays.unlink(missing_ok=True)
    work = args.workdir / "run"
    runs = ("first start, arrays built from the index", "next start, saved arrays",
            f"start after another process added {args.added:,} files, saved arrays")  # fmt: skip
    try:
        for seed, how in enumerate(runs):
            if seed == 2:  # as a `watcherd scan` of another folder would, daemon stopped
                filler(db, args.added, not args.no_regions, first=args.files + 10_000, seed=5)
            shutil.rmtree(work, ignore_errors=True)
            work.mkdir()
            ready, at_ready, after = daemon_run(db, work, args.arrivals, seed)
            print(f"daemon, {how}: start to READY {ready:.2f} s, memory then "
                  f"{at_ready:.0f} MB, after deciding {args.arrivals} new photos "
                  f"{after:.0f} MB")  # fmt: skip
    finally:  # a failed run must not leave its photos in the cached index
        restore_index(db, args.files)
    if arrays.exists():
        print(f"saved arrays: {arrays.stat().st_size / 1e6:.0f} MB")

    before = rss_mb()
    index = Index(db, writer=True)
    t0 = time.perf_counter()
    pipeline = Pipeline(index, Config(workers=1))
    load = time.perf_counter() - t0
    print(f"matcher arrays: built in {load:.2f} s, {rss_mb() - before:.0f} MB "
          f"({len(pipeline.hashes)} pictures, {len(pipeline.parts)} regions)")  # fmt: skip
    rng = random.Random(2)
    fps = newcomers(index, args.newcomers, rng, args.workdir / "new")
    times, found = [], {"exact": 0, "near": 0, "similar": 0}
    for fp in fps:
        t0 = time.perf_counter()
        outcome = pipeline.process(fp, str(args.workdir / "new"))
        assert outcome.status == "indexed", outcome
        times.append((time.perf_counter() - t0) * 1000)
        if outcome.verdict is not None:
            found[outcome.verdict.kind] += 1
    index.rollback()
    index.close()
    times.sort()
    print(f"deciding a newcomer (all poses and regions, index writes included): "
          f"median {statistics.median(times):.2f} ms, "
          f"p99 {times[int(len(times) * 0.99) - 1]:.2f} ms; of {len(fps)}: "
          f"{found['exact'] + found['near']} exact or near ({2 * len(fps) // 3} are copies by "
          f"their hashes, but synthetic rows have no pictures to verify them on), "
          f"{found['similar']} similar (expected 0: each one is a chance match)")  # fmt: skip


if __name__ == "__main__":
    main()
