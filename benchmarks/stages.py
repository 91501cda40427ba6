"""Where a worker's time goes, per file, beside the decode floor.

    python benchmarks/stages.py [--photos ../shared/bench/photos] [--count 200]
                                [--count-small 1000] [--repeat 3]

On the same two folders as `throughput.py` (camera 12 MP and WhatsApp 1600 px JPEGs,
made once and cached in --workdir), it times each stage of fingerprinting a file in
this one process, CPU time, numpy's BLAS on one thread as in a worker, page cache warm:

- floor: `throughput.py`'s decode floor (open, `draft()` to the hash size, load);
- read and sha256: the file's bytes, and their digest (what finds exact copies);
- decode: `fingerprint.decode_small` without its thumbnail (open, EXIF, draft, load,
  grey, reduce to the 256 px picture the hashes are taken from);
- thumbnail: the 128 px JPEG the report shows (decode_small with it, minus without);
- hashes: `fingerprint.picture_hashes` (the whole picture in eight poses, its regions,
  its trimmed content: some thirty pHash/dHash pairs);
- fingerprint_file: all of it, as a worker runs it.

Each stage runs over every file, `--repeat` times, and its quickest pass counts. The
last column is the stage's time over the floor's. "fingerprint_file / floor" is what a
scan's workers spend per file against what the decode floor spends, before any start-up,
index or scan process: the scan can come no nearer the floor than that (issue 8).
"""

from __future__ import annotations

import argparse
import hashlib
import time
from collections.abc import Callable
from pathlib import Path

from throughput import file_sets, floor_one, set_arguments

from watcherd import fingerprint
from watcherd.config import Config
from watcherd.workers import one_blas_thread

MAX_PIXELS = Config().max_pixels  # as a scan decodes with the default configuration


def timed(stage: Callable[[Path], object], files: list[Path], repeat: int) -> float:
    """Quickest pass's CPU seconds per file."""
    best = float("inf")
    for _ in range(repeat):
        t0 = time.process_time()
        for path in files:
            stage(path)
        best = min(best, time.process_time() - t0)
    return best / len(files)


def stages(files: list[Path], repeat: int) -> dict[str, float]:
    data = {p: p.read_bytes() for p in files}
    bases = {p: fingerprint.decode_small(data[p], MAX_PIXELS)[0] for p in files}
    with_thumb = timed(lambda p: fingerprint.decode_small(data[p], MAX_PIXELS), files, repeat)
    real_thumbnail = fingerprint._jpeg_thumbnail
    fingerprint._jpeg_thumbnail = lambda img, orientation: b""
    try:
        decode = timed(lambda p: fingerprint.decode_small(data[p], MAX_PIXELS), files, repeat)
    finally:
        fingerprint._jpeg_thumbnail = real_thumbnail
    return {
        "floor": timed(lambda p: floor_one(str(p)), files, repeat),
        "read": timed(lambda p: p.read_bytes(), files, repeat),
        "sha256": timed(lambda p: hashlib.sha256(data[p]).digest(), files, repeat),
        "decode": decode,
        "thumbnail": with_thumb - decode,
        "hashes": timed(lambda p: fingerprint.picture_hashes(bases[p]), files, repeat),
        "fingerprint_file": timed(lambda p: fingerprint.fingerprint_file(str(p)), files, repeat),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    set_arguments(ap)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    one_blas_thread()
    for label, files in file_sets(args).items():
        cost = stages(files, args.repeat)
        floor = cost["floor"]
        print(f"{label}, {len(files)} files: CPU ms per file, one process")
        for stage, seconds in cost.items():
            print(f"  {stage:18}{seconds * 1000:8.3f} ms{seconds / floor:8.2f}x floor")
        parts = sum(cost[s] for s in ("read", "sha256", "decode", "thumbnail", "hashes"))
        print(f"  {'sum of the parts':18}{parts * 1000:8.3f} ms{parts / floor:8.2f}x floor")


if __name__ == "__main__":
    main()
