"""Daemon latency, burst throughput, idle CPU and memory, with a large index.

    python benchmarks/latency.py [--photos ../shared/bench/photos] [--indexed 100000]

1. Prepares WhatsApp-style JPEGs (long side 1600 px, quality 75) from a folder of
   photos, several distinct variants per photo, so every file is new to the index.
2. Fills an index with --indexed synthetic file rows (random fingerprints, with the
   region hashes a real photo has), so every decision searches arrays of that size.
3. Starts `watcherd run` as a real subprocess and copies files into its folder at
   --rate per second: latency is the time from the copy's close to the daemon's log
   line for that file (both wall-clock on this machine).
4. Drops --burst files at once and measures the time until every one is decided.
5. Leaves the daemon idle and measures its CPU use and memory (daemon plus workers).

Prints the figures; targets (issue 3): median < 100 ms, p99 < 500 ms, idle CPU ~0,
idle memory < 150 MB.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from photos import upright
from PIL import ImageOps

HERE = Path(__file__).resolve().parent
DEFAULT_PHOTOS = HERE.parent.parent / "shared" / "bench" / "photos"


def prepare(photos: Path, out: Path, n: int) -> list[Path]:
    """n distinct WhatsApp-style JPEGs made from the photos (cached between runs)."""
    out.mkdir(parents=True, exist_ok=True)
    existing = sorted(out.glob("*.jpg"))
    if len(existing) >= n:
        return existing[:n]
    made: list[Path] = []
    for variant, img in upright(photos):
        if len(made) >= n:
            break
        img.thumbnail((1600, 1600))
        if variant % 2:
            img = ImageOps.mirror(img)
        if variant >= 2:  # trim a few pixels so every file has new bytes
            w, h = img.size
            img = img.crop((variant, variant, w - variant, h - variant))
        dest = out / f"v{variant:02}_{len(made):05}.jpg"
        img.save(dest, quality=75 - variant % 3)
        made.append(dest)
    return made


def fill_index(db: Path, n: int) -> None:
    from sqlalchemy import insert

    from watcherd.fingerprint import REGIONS, SQUARES
    from watcherd.index import Index
    from watcherd.models import File, RegionHash

    rng = random.Random(1)
    region_ids = [*REGIONS, *SQUARES]
    with Index(db, writer=True) as index:
        batch: list[dict] = []
        regions: list[dict] = []
        for i in range(n):
            regions += [
                {
                    "file_id": i + 1,
                    "region": r,
                    "phash": rng.getrandbits(64) - 2**63,
                    "dhash": rng.getrandbits(64) - 2**63,
                }
                for r in region_ids
            ]
            batch.append(
                {
                    "id": i + 1,
                    "path": f"/archive/{i // 1000:03}/IMG_{i:07}.jpg",
                    "root": "/archive",
                    "size": rng.randrange(200_000, 5_000_000),
                    "mtime_ns": 1_600_000_000 * 10**9 + i,
                    "inode": i,
                    "sha256": f"{rng.getrandbits(256):064x}",
                    "width": 4000,
                    "height": 3000,
                    "format": "JPEG",
                    "phash": rng.getrandbits(64) - 2**63,
                    "dhash": rng.getrandbits(64) - 2**63,
                    "status": "active",
                }
            )
            if len(batch) == 10_000:
                index.session.execute(insert(File), batch)
                index.session.execute(insert(RegionHash), regions)
                batch.clear()
                regions.clear()
        if batch:
            index.session.execute(insert(File), batch)
            index.session.execute(insert(RegionHash), regions)
        index.commit()


class Log:
    """Collects the daemon's JSON log lines; lets the benchmark wait on them."""

    def __init__(self, stream) -> None:
        self.decided: dict[str, float] = {}
        self.ready_at: float | None = None
        self.cond = threading.Condition()
        threading.Thread(target=self._read, args=(stream,), daemon=True).start()

    def _read(self, stream) -> None:
        for line in stream:
            try:
                e = json.loads(line)
            except ValueError:
                continue
            with self.cond:
                if e["event"] == "ready":
                    self.ready_at = e["ts"]
                elif e["event"] in ("indexed", "duplicate", "similar", "error"):
                    for key in ("path", "original"):
                        if e.get(key):
                            self.decided.setdefault(e[key], e["ts"])
                self.cond.notify_all()

    def wait(self, check, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        with self.cond:
            while not check():
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self.cond.wait(min(left, 0.5))
        return True


def proc_tree(pid: int) -> list[int]:
    pids, todo = [], [pid]
    while todo:
        p = todo.pop()
        pids.append(p)
        try:
            for task in os.listdir(f"/proc/{p}/task"):
                with open(f"/proc/{p}/task/{task}/children") as fh:
                    todo.extend(int(c) for c in fh.read().split())
        except OSError:
            pass
    return pids


def cpu_seconds(pids: list[int]) -> float:
    total = 0
    for p in pids:
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
        except OSError:
            pass
    return total / os.sysconf("SC_CLK_TCK")


def rss_mb(pids: list[int]) -> float:
    total = 0
    for p in pids:
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except OSError:
            pass
    return total / 1024


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, round(q / 100 * (len(values) - 1)))]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--photos", type=Path, default=DEFAULT_PHOTOS)
    ap.add_argument("--indexed", type=int, default=100_000)
    ap.add_argument("--rate", type=float, default=20.0)
    ap.add_argument("--count", type=int, default=200)
    ap.add_argument("--burst", type=int, default=2000)
    ap.add_argument("--idle", type=float, default=70.0, help="seconds idle before measuring")
    ap.add_argument("--workdir", type=Path, default=Path(tempfile.gettempdir()) / "watcherd-bench")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()

    work = args.workdir
    sources = prepare(args.photos, work / "prepared", args.count + args.burst)
    run = work / "run"
    shutil.rmtree(run, ignore_errors=True)
    watched = run / "WhatsApp Images"
    watched.mkdir(parents=True)
    db = run / "index.sqlite3"
    t0 = time.monotonic()
    fill_index(db, args.indexed)
    fill_seconds = time.monotonic() - t0
    cfg = run / "config.toml"
    cfg.write_text("settle_seconds = 2.0\n")

    started = time.time()
    proc = subprocess.Popen(
        [sys.executable, "-m", "watcherd", "--config", str(cfg), "--db", str(db),
         "--log-format", "json", "run", str(watched)],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    log = Log(proc.stderr)
    try:
        if not log.wait(lambda: log.ready_at is not None, 120):
            sys.exit("daemon never became ready")
        ready_seconds = log.ready_at - started

        # steady trickle
        trickle = sources[: args.count]
        closed: dict[str, float] = {}
        t_start = time.monotonic()
        for i, src in enumerate(trickle):
            delay = t_start + i / args.rate - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            dest = watched / src.name
            shutil.copyfile(src, dest)
            closed[str(dest)] = time.time()
        log.wait(lambda: all(p in log.decided for p in closed), 120)
        latencies = [(log.decided[p] - t) * 1000 for p, t in closed.items() if p in log.decided]

        # burst
        burst_dir = watched / "burst"
        burst_dir.mkdir()
        burst = sources[args.count : args.count + args.burst]
        b0 = time.time()
        dests = []
        for src in burst:
            dest = burst_dir / src.name
            shutil.copyfile(src, dest)
            dests.append(str(dest))
        copied = time.time() - b0
        log.wait(lambda: all(p in log.decided for p in dests), 600)
        done = [log.decided[p] for p in dests if p in log.decided]
        burst_seconds = (max(done) - b0) if done else float("nan")

        # idle
        time.sleep(args.idle)
        pids = proc_tree(proc.pid)
        c0 = cpu_seconds(pids)
        time.sleep(10)
        idle_cpu = (cpu_seconds(proc_tree(proc.pid)) - c0) / 10 * 100
        idle_rss = rss_mb(proc_tree(proc.pid))
        main_rss = rss_mb([proc.pid])
    finally:
        proc.terminate()
        proc.wait(timeout=10)

    figures = {
        "machine": f"{os.cpu_count()} cores, Python {sys.version.split()[0]}",
        "indexed_rows": args.indexed,
        "index_fill_seconds": round(fill_seconds, 1),
        "start_to_ready_seconds": round(ready_seconds, 2),
        "trickle_files": len(trickle),
        "trickle_decided": len(latencies),
        "latency_ms_median": round(statistics.median(latencies), 1) if latencies else None,
        "latency_ms_p99": round(pct(latencies, 99), 1) if latencies else None,
        "latency_ms_max": round(max(latencies), 1) if latencies else None,
        "burst_files": len(burst),
        "burst_decided": len(done),
        "burst_lost": len(burst) - len(done),
        "burst_copy_seconds": round(copied, 2),
        "burst_seconds": round(burst_seconds, 2),
        "burst_files_per_second": round(len(done) / burst_seconds, 1) if done else None,
        "idle_cpu_percent": round(idle_cpu, 2),
        "idle_rss_mb_daemon": round(main_rss, 1),
        "idle_rss_mb_with_workers": round(idle_rss, 1),
    }
    if args.json:
        print(json.dumps(figures, indent=2))
    else:
        width = max(map(len, figures))
        for k, v in figures.items():
            print(f"{k:<{width}}  {v}")


if __name__ == "__main__":
    main()
