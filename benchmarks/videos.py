"""Near-duplicate videos (issue 26): which copies of a clip watcherd finds, and whether
it links clips that are not copies.

    python benchmarks/videos.py [--photos ../shared/bench/photos] [--clips 12]

Clips are made here with PyAV from the bench photos: the camera pans across a photo
while a ball crosses it (8 s, 480x360, 25 fps). Each clip gets copies of every kind:
re-encoded at a low bit rate, halved, remuxed into Matroska, turned 90°, mirrored,
10% cut off its start, 20% cut off its end. Negatives: the same photo panned the other
way (a slideshow of the same picture, another clip), and every other clip. All of it
is scanned at once; printed per kind: found (linked near to its clip), and the false
near links, with the seconds the scan took.
"""

from __future__ import annotations

import argparse
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import av
from PIL import Image, ImageDraw, ImageOps

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from photos import upright  # noqa: E402

SIZE, SECONDS, FPS = (480, 360), 8.0, 25
KINDS = ("reencode", "half", "remux", "rot90", "mirror", "trim-start", "trim-end")


def clip(photo: Image.Image, path: Path, kind: str = "", backwards: bool = False) -> None:
    w, h = SIZE
    scene = ImageOps.fit(photo, (w * 2, h))
    frames = int(SECONDS * FPS)
    first, last = 0, frames
    if kind == "trim-start":
        first = frames // 10
    elif kind == "trim-end":
        last = frames - frames // 5
    size = (w // 2, h // 2) if kind == "half" else (w, h)
    out_size = (size[1], size[0]) if kind == "rot90" else size
    rate = 400_000 if kind == "reencode" else 3_000_000
    with av.open(str(path), "w") as out:
        stream = out.add_stream("mpeg4", rate=FPS)
        stream.width, stream.height = out_size
        stream.pix_fmt, stream.bit_rate = "yuv420p", rate
        for i in range(first, last):
            x = int((frames - i if backwards else i) * w / frames)
            img = scene.crop((x, 0, x + w, h))
            ball = (i * 9) % w
            ImageDraw.Draw(img).ellipse((ball, h // 5, ball + 50, h // 5 + 50), fill=(250, 40, 30))
            img = img.resize(size)
            if kind == "rot90":
                img = img.transpose(Image.Transpose.ROTATE_90)
            elif kind == "mirror":
                img = ImageOps.mirror(img)
            out.mux(stream.encode(av.VideoFrame.from_image(img)))
        out.mux(stream.encode())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--photos", type=Path, default=HERE.parent.parent / "shared/bench/photos")
    ap.add_argument("--clips", type=int, default=12)
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    rng = random.Random(args.seed)
    photos = []
    for variant, img in upright(args.photos, min_side=360):
        if variant or len(photos) >= 300:  # each photo once
            break
        photos.append(img)
    chosen = rng.sample(photos, args.clips)
    work = Path(tempfile.mkdtemp(prefix="wd-videos-"))
    folder = work / "videos"
    folder.mkdir()
    origin: dict[str, str] = {}
    for n, photo in enumerate(chosen):
        clip(photo, folder / f"c{n:02d}.mp4")
        clip(photo, folder / f"c{n:02d}-other-pan.mp4", backwards=True)
        for kind in KINDS:
            name = f"c{n:02d}-{kind}.{'mkv' if kind == 'remux' else 'mp4'}"
            clip(photo, folder / name, kind)
            origin[name] = f"c{n:02d}.mp4"
    db = work / "index.sqlite3"
    t0 = time.monotonic()
    subprocess.run([sys.executable, "-m", "watcherd", "--db", str(db), "scan", str(folder)],
                   check=True, capture_output=True)  # fmt: skip
    seconds = time.monotonic() - t0
    links = _links(db)
    files = len(list(folder.iterdir()))
    print(f"{args.clips} clips of {SECONDS:.0f} s, {files} files, scanned in {seconds:.1f} s "
          f"({seconds / (files * SECONDS / 60):.1f} s per minute of video)")  # fmt: skip
    for kind in KINDS:
        names = [n for n in origin if n.split("-", 1)[1].rsplit(".", 1)[0] == kind]
        found = sum(1 for n in names if _group(links, n) == _group(links, origin[n]))
        print(f"{kind:<12} found {found / len(names):.2f}")
    false = [(a, b) for a, b in links if _base(a) != _base(b) or "other-pan" in a + b]
    print(f"false near links: {len(false)}" + "".join(f"\n    {a} ~ {b}" for a, b in false[:5]))
    similar = _links(db, "similar")
    pans = sum(1 for a, b in similar if "other-pan" in a + b and _base(a) == _base(b))
    print(f"similar: {len(similar)}, of which the same photo panned the other way: {pans} "
          f"of {args.clips}; between different photos: "
          f"{sum(1 for a, b in similar if _base(a) != _base(b))}")  # fmt: skip
    long_video(work / "four-hours.mp4")
    full_hd_minute(work / "minute-1080p.mp4", photos[0])
    shutil.rmtree(work)


def full_hd_minute(path: Path, photo: Image.Image) -> None:
    """CPU to fingerprint a 1-minute 1080p H.264 clip (30 fps, a keyframe every 2 s,
    as phones write them): issue 26's target is under 1 s."""
    import resource

    from watcherd.fingerprint import fingerprint_file

    w, h = 1920, 1080
    scene = ImageOps.fit(photo, (w + 600, h))
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=30, options={"preset": "ultrafast"})
        stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
        stream.gop_size = 60
        for i in range(60 * 30):
            frame = av.VideoFrame.from_image(scene.crop((i // 3, 0, i // 3 + w, h)))
            out.mux(stream.encode(frame))
        out.mux(stream.encode())
    before = resource.getrusage(resource.RUSAGE_SELF)
    t0 = time.monotonic()
    fp = fingerprint_file(str(path))
    after = resource.getrusage(resource.RUSAGE_SELF)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    wall = time.monotonic() - t0
    print(f"a 1-minute 1080p H.264 clip ({path.stat().st_size / 1e6:.0f} MB): fingerprinted "
          f"in {cpu:.2f} s of CPU, {wall:.2f} s, {len(fp.frames)} frames")  # fmt: skip


def long_video(path: Path, hours: float = 4.0) -> None:
    """How long reading a 4-hour video takes (1 frame a second, 160x120: the seeks, not
    the pixels, are what a long video costs)."""
    from watcherd.fingerprint import fingerprint_file

    t0 = time.monotonic()
    with av.open(str(path), "w") as out:
        stream = out.add_stream("mpeg4", rate=1)
        stream.width, stream.height, stream.pix_fmt = 160, 120, "yuv420p"
        stream.gop_size = 10
        for i in range(int(hours * 3600)):
            img = Image.new("RGB", (160, 120), ((i * 7) % 256, (i * 3) % 256, 90))
            out.mux(stream.encode(av.VideoFrame.from_image(img)))
        out.mux(stream.encode())
    made = time.monotonic() - t0
    t0 = time.monotonic()
    fp = fingerprint_file(str(path))
    print(f"a {hours:.0f}-hour video ({path.stat().st_size / 1e6:.0f} MB, made in {made:.0f} s): "
          f"read in {time.monotonic() - t0:.1f} s, {len(fp.frames)} frames"
          f"{', ' + (fp.error or fp.warning) if fp.error or fp.warning else ''}")  # fmt: skip


def _links(db: Path, kind: str | None = None) -> list[tuple[str, str]]:
    """(file, original) of the live near and exact links, or of those of `kind`."""
    import sqlite3

    which = "d.kind != 'similar'" if kind is None else f"d.kind = '{kind}'"
    with sqlite3.connect(db) as conn:
        rows = conn.execute(
            "SELECT f.path, o.path FROM decisions d JOIN files f ON f.id = d.file_id "
            f"JOIN files o ON o.id = d.original_id WHERE d.current AND {which}"
        ).fetchall()
    return [(Path(a).name, Path(b).name) for a, b in rows]


def _base(name: str) -> str:
    return name[:3]


def _group(links: list[tuple[str, str]], name: str) -> str:
    parent = dict(links)
    seen = {name}
    while name in parent and parent[name] not in seen:
        name = parent[name]
        seen.add(name)
    return name


if __name__ == "__main__":
    main()
