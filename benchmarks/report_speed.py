"""How long `watcherd report` takes on a large index, in every format.

    python benchmarks/report_speed.py [--files 100000] [--duplicates 10000]

Fills an index with --files synthetic file rows of which --duplicates are live
duplicates (groups of one kept file and one to three copies; half of the copies
quarantined, with their move journal rows, as the daemon leaves them), each with a
stored thumbnail like the one fingerprinting makes. Then runs the real command, as a
user would, for JSON, CSV, the terminal table (as a terminal of 80 columns and as plain
text into a pipe) and the HTML report, and prints the wall-clock seconds of each and
the HTML file's size.

Targets (issue 7): JSON and table under 5 s, HTML under 30 s, at 100,000 files with
10,000 duplicates.
"""

from __future__ import annotations

import argparse
import io
import os
import random
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

from PIL import Image, ImageDraw

QUARANTINE = "/home/u/.local/share/watcherd/quarantine/WhatsApp Images"


def sample_thumbnails(n: int, rng: random.Random) -> list[bytes]:
    """Thumbnails about the size fingerprinting stores (128 px, JPEG quality 70)."""
    out = []
    for _ in range(n):
        img = Image.new("RGB", (128, 96), tuple(rng.randrange(256) for _ in range(3)))
        draw = ImageDraw.Draw(img)
        for _ in range(12):
            x, y = rng.randrange(128), rng.randrange(96)
            colour = tuple(rng.randrange(256) for _ in range(3))
            draw.ellipse((x, y, x + rng.randrange(8, 60), y + rng.randrange(8, 50)), colour)
        buf = io.BytesIO()
        img.save(buf, "JPEG", quality=70)
        out.append(buf.getvalue())
    return out


def fill_index(db: Path, files: int, duplicates: int) -> None:
    from sqlalchemy import insert

    from watcherd.index import Index
    from watcherd.models import Decision, File, Move, Thumbnail

    rng = random.Random(7)
    thumbs = sample_thumbnails(40, rng)
    start = datetime(2026, 1, 1, tzinfo=timezone.utc)
    rows, decisions, moves, thumbnails = [], [], [], []
    involved = set()
    i = 1
    dup_left = duplicates
    while dup_left > 0:  # groups: one kept file, one to three copies
        kept = i
        involved.add(kept)
        i += 1
        for _ in range(min(dup_left, rng.randint(1, 3))):
            involved.add(i)
            quarantined = rng.random() < 0.5
            when = start + timedelta(minutes=i)
            decisions.append(
                dict(file_id=i, original_id=kept, kind=rng.choice(["exact", "near", "near"]),
                     distance=rng.randrange(0, 9), decided_at=when, current=True,
                     action="quarantined" if quarantined else "flagged")
            )  # fmt: skip
            if quarantined:
                moves.append(
                    dict(file_id=i, kind="quarantine", src=f"/home/u/WhatsApp Images/IMG-{i}.jpg",
                         dest=f"{QUARANTINE}/IMG-{i}.jpg",
                         sha256="0" * 64, size=1, mtime_ns=1, state="done", created_at=when,
                         finished_at=when)
                )  # fmt: skip
            i += 1
            dup_left -= 1
    quarantined_ids = {m["file_id"] for m in moves}
    dup_of = {d["file_id"]: d["original_id"] for d in decisions}
    for n in range(1, files + 1):
        if n in quarantined_ids:
            path = f"{QUARANTINE}/IMG-{n}.jpg"
        elif n in dup_of:
            path = f"/home/u/WhatsApp Images/IMG-{n}.jpg"
        else:
            path = f"/home/u/Pictures/{n // 1000:03}/IMG_{n:07}.jpg"
        rows.append(
            dict(id=n, path=path, root="/home/u", size=rng.randrange(200_000, 6_000_000),
                 mtime_ns=1_700_000_000 * 10**9 + n * 10**9, inode=n, sha256=f"{n:064x}",
                 width=4032, height=3024, format="JPEG", phash=rng.getrandbits(63),
                 dhash=rng.getrandbits(63), duplicate_of_id=dup_of.get(n),
                 status="quarantined" if n in quarantined_ids else "active",
                 taken_at=f"2025-{1 + n % 12:02}-{1 + n % 28:02} 12:00:00" if n % 3 else None)
        )  # fmt: skip
        if n in involved:
            thumbnails.append(dict(file_id=n, jpeg=thumbs[n % len(thumbs)]))
    with Index(db, writer=True) as index:
        for table, data in ((File, rows), (Decision, decisions), (Move, moves),
                            (Thumbnail, thumbnails)):  # fmt: skip
            for k in range(0, len(data), 10_000):
                index.session.execute(insert(table), data[k : k + 10_000])
        index.commit()


def timed(args: list[str], env: dict | None = None) -> tuple[float, bytes]:
    t0 = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "watcherd", *args],
        capture_output=True,
        env={**os.environ, **(env or {})},
        check=True,
    )
    return time.perf_counter() - t0, proc.stdout


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--files", type=int, default=100_000)
    ap.add_argument("--duplicates", type=int, default=10_000)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        db = Path(tmp) / "index.sqlite3"
        t0 = time.perf_counter()
        fill_index(db, args.files, args.duplicates)
        print(f"index: {args.files} files, {args.duplicates} duplicates "
              f"(built in {time.perf_counter() - t0:.1f} s)")  # fmt: skip
        base = ["--db", str(db), "report"]
        html = Path(tmp) / "report.html"
        runs = [
            ("json", [*base, "--format", "json"], None),
            ("csv", [*base, "--format", "csv"], None),
            ("table, 80-column terminal", base, {"FORCE_COLOR": "1", "COLUMNS": "80"}),
            ("table, plain text (pipe)", base, None),
            ("html", [*base, "--format", "html", "-o", str(html)], None),
        ]
        for label, cmd, env in runs:
            seconds, _out = timed(cmd, env)
            extra = f", {html.stat().st_size / 1e6:.1f} MB" if label == "html" else ""
            print(f"{label:28} {seconds:6.2f} s{extra}")


if __name__ == "__main__":
    main()
