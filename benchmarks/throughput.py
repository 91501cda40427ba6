"""Cold-scan throughput against imagededup and against the decode floor.

    python benchmarks/throughput.py [--photos ../shared/bench/photos] [--count 200]
                                    [--count-small 1000]

Makes two folders of JPEGs from real photos (cached in --workdir between runs):
camera-size (4000x3000, 12 MP, quality 92, as a phone camera writes them) and
WhatsApp-size (long side 1600, quality 75). For each folder it measures, on the same
files in the same run:

- `watcherd scan` as a real subprocess, cold (a fresh index, page cache warmed by a
  read of every file first so that the disk is not what is measured), all cores;
- imagededup's PHash `encode_images` (the `bench` extra), also all cores;
- the decode floor: Pillow opening each file, `draft()` to the hash size and loading
  it, nothing else, in one process, and spread over all cores the same way as the scan.

Each is timed twice and its better run counts.

Targets (issue 8): at least 2x imagededup's images per second; at most 1.3x the decode
floor's time.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from functools import partial
from pathlib import Path

from photos import upright
from PIL import Image, ImageOps

HERE = Path(__file__).resolve().parent
DEFAULT_PHOTOS = HERE.parent.parent / "shared" / "bench" / "photos"


def prepare(photos: Path, out: Path, n: int, size: tuple[int, int] | None, quality: int):
    """n distinct JPEGs: each source photo scaled (to exactly `size`, or to a long side
    of 1600 when None), mirrored or shifted so that no two files are the same."""
    out.mkdir(parents=True, exist_ok=True)
    have = sorted(out.glob("*.jpg"))
    if len(have) >= n:
        for extra in have[n:]:  # the folder is scanned whole: exactly n files
            extra.unlink()
        return have[:n]
    made: list[Path] = []
    for variant, img in upright(photos, min_side=300):
        if len(made) >= n:
            break
        if size is None:
            img.thumbnail((1600, 1600))
        else:
            img = ImageOps.fit(img, size, Image.Resampling.BICUBIC)
        if variant % 2:
            img = ImageOps.mirror(img)
        dest = out / f"v{variant}_{len(made):05}.jpg"
        img.save(dest, quality=quality - variant % 3)
        made.append(dest)
    return made


def floor_one(path: str) -> int:
    with Image.open(path) as im:
        im.draft("RGB", (32, 32))
        im.load()
        return im.width


def decode_floor(files: list[Path], workers: int) -> float:
    paths = [str(p) for p in files]
    t0 = time.perf_counter()
    if workers == 1:
        for p in paths:
            floor_one(p)
    else:
        with ProcessPoolExecutor(workers) as pool:
            list(pool.map(floor_one, paths, chunksize=8))
    return time.perf_counter() - t0


def watcherd_scan(folder: Path, tmp: Path, url: str | None = None) -> float:
    """Seconds for a first `watcherd scan` of `folder`: into a new SQLite file, or into
    the PostgreSQL database at `url`, emptied first."""
    db = url or tmp / f"index-{folder.name}-{time.monotonic_ns()}.sqlite3"
    if url:
        from accuracy import empty_database

        empty_database(url)
    t0 = time.perf_counter()
    # run from `tmp`: `python -m` puts the working directory first on sys.path, so a
    # run from a checkout would time that checkout's code whatever PYTHONPATH says
    # (comparing an older tree's code means PYTHONPATH=<that tree>)
    subprocess.run(
        [sys.executable, "-m", "watcherd", "--db", str(db), "scan", str(folder)],
        check=True,
        capture_output=True,
        cwd=tmp,
    )
    return time.perf_counter() - t0


def imagededup_encode(folder: Path) -> float | None:
    try:
        from imagededup.methods import PHash
    except ImportError:
        return None
    hasher = PHash(verbose=False)
    t0 = time.perf_counter()
    hasher.encode_images(image_dir=str(folder), num_enc_workers=os.cpu_count())
    return time.perf_counter() - t0


def best_of_two(timed: Callable[[], float | None]) -> float | None:
    """The quicker of two runs (None when the contender is not installed): the host's
    speed varies, and every contender gets the same two tries."""
    first = timed()
    return None if first is None else min(first, timed() or first)


def warm(files: list[Path]) -> None:
    for p in files:
        p.read_bytes()


def set_arguments(ap: argparse.ArgumentParser) -> None:
    """The options that say which two folders to make (shared with stages.py)."""
    ap.add_argument("--photos", type=Path, default=DEFAULT_PHOTOS)
    ap.add_argument("--count", type=int, default=200, help="camera-size files")
    ap.add_argument("--count-small", type=int, default=1000, help="WhatsApp-size files")
    ap.add_argument("--workdir", type=Path, default=Path(tempfile.gettempdir()) / "wd-throughput")


def file_sets(args: argparse.Namespace) -> dict[str, list[Path]]:
    """The camera and WhatsApp folders' files, made on first use."""
    return {
        "camera 12 MP": prepare(args.photos, args.workdir / "camera", args.count, (4000, 3000), 92),
        "WhatsApp 1600 px": prepare(
            args.photos, args.workdir / "whatsapp", args.count_small, None, 75
        ),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    set_arguments(ap)
    ap.add_argument("--no-peers", action="store_true")
    ap.add_argument("--db", help="also scan into this PostgreSQL database (emptied first)")
    args = ap.parse_args()
    cores = os.cpu_count() or 1
    sets = file_sets(args)
    print(f"{cores} cores; {args.count} camera files, {args.count_small} WhatsApp files")
    header = f"{'set':18}{'watcherd scan':>16}{'imagededup PHash':>18}{'floor 1 proc':>14}"
    print(header + f"{'floor all cores':>17}{'vs imagededup':>15}{'vs floor':>10}")
    with tempfile.TemporaryDirectory() as tmp:
        for label, files in sets.items():
            folder = files[0].parent
            warm(files)
            # the best of two runs for every contender alike: the host's speed varies
            ours = best_of_two(partial(watcherd_scan, folder, Path(tmp)))
            peer = None if args.no_peers else best_of_two(partial(imagededup_encode, folder))
            floor1 = best_of_two(partial(decode_floor, files, 1))
            floor_n = best_of_two(partial(decode_floor, files, cores))
            n = len(files)
            rate = f"{n / ours:7.1f}/s"
            peer_s = "-" if peer is None else f"{n / peer:7.1f}/s"
            vs_peer = "-" if peer is None else f"{peer / ours:.2f}x"
            print(
                f"{label:18}{rate:>16}{peer_s:>18}{n / floor1:>12.1f}/s{n / floor_n:>15.1f}/s"
                f"{vs_peer:>15}{ours / floor_n:>9.2f}x"
            )
            if args.db:
                server = best_of_two(partial(watcherd_scan, folder, Path(tmp), args.db))
                print(f"{label:18}{n / server:7.1f}/s on PostgreSQL (SQLite {n / ours:.1f}/s)")
    print("vs imagededup: how many times faster; vs floor: scan time / all-core decode floor")


if __name__ == "__main__":
    main()
