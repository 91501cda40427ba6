"""Memory of a first scan of many files: it must stay flat, not grow with the tree.

    python benchmarks/scan_memory.py [--files 50000] [--workdir /tmp/wd-scanmem]

Makes --files small distinct JPEGs (cached in --workdir), runs a cold `watcherd scan`
of them as a subprocess and samples its resident memory (the main process; the
decoding workers are separate and bounded by their count) twice a second. Prints the
memory after 10%, 50% and 100% of the run, the peak, and the files per second.

What should hold (issue 8): no list of all results is kept, so the memory after half
the run and at the end differ by little more than the fingerprint arrays' growth
(about 300 bytes per picture with its region hashes).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image


def make(root: Path, files: int) -> None:
    last = root / f"{(files - 1) // 500:03}" / f"{files - 1:06}.jpg"
    if last.exists():
        return
    rng = np.random.default_rng(1)
    for i in range(files):
        folder = root / f"{i // 500:03}"
        folder.mkdir(parents=True, exist_ok=True)
        small = rng.integers(0, 256, (6, 8, 3), dtype=np.uint8)
        img = Image.fromarray(small, "RGB").resize((96, 72), Image.Resampling.BICUBIC)
        img.save(folder / f"{i:06}.jpg", quality=85)


def rss_mb(pid: int) -> float | None:
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--files", type=int, default=50_000)
    ap.add_argument("--workdir", type=Path, default=Path(tempfile.gettempdir()) / "wd-scanmem")
    args = ap.parse_args()
    root = args.workdir / f"tree-{args.files}"
    make(root, args.files)
    db = args.workdir / "index.sqlite3"
    for suffix in ("", "-wal", "-shm"):
        Path(str(db) + suffix).unlink(missing_ok=True)
    t0 = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "-m", "watcherd", "--db", str(db), "scan", str(root)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    samples: list[tuple[float, float]] = []
    while proc.poll() is None:
        value = rss_mb(proc.pid)
        if value is not None:
            samples.append((time.perf_counter() - t0, value))
        time.sleep(0.5)
    seconds = time.perf_counter() - t0
    if proc.returncode != 0:
        sys.exit(f"scan failed with exit code {proc.returncode}")

    def at(fraction: float) -> float:
        target = seconds * fraction
        return min(samples, key=lambda s: abs(s[0] - target))[1]

    print(f"{args.files} files scanned in {seconds:.0f} s ({args.files / seconds:.0f} files/s)")
    print(f"main process memory: {at(0.1):.0f} MB at 10%, {at(0.5):.0f} MB at 50%, "
          f"{at(1.0):.0f} MB at the end; peak {max(v for _, v in samples):.0f} MB")  # fmt: skip


if __name__ == "__main__":
    main()
