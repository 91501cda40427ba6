"""Trust: does watcherd call a different picture a duplicate? (issue 23)

    python benchmarks/trust.py [--bench ../shared/bench] [--workdir /tmp/wd-trust]

Scans, each set into an index of its own, pictures none of which is a copy of
another, and counts the links watcherd makes between them (near: would be flagged or
quarantined; similar: reported only):

- deep-sky: the distinct deep-sky photos of `debian-stellarium-nebulae` (galaxies,
  clusters, nebulae on black);
- video frames: the frames of two static-camera clips 1 s and more apart (all
  distinct), and the bursts `groups.tsv` marks as hard negatives (a frame and the one
  about 0.1 s later); the bursts it marks as copies (pixel-identical frames) must be
  found;
- blank: pictures with nothing in them, drawn here (solid colours, a 1x1 PNG, a grey
  gradient, a white slide, a black phone screen);
- everyday: the distinct camera photos of the manifest (role `photo`), as a control;
- made copies of a sample of those (benchmarks/screens.py): chat, gallery and
  full-screen phone screenshots of each, and copies with a sticker or label over
  5-10% of the picture; how many are found, and any false near link; the chat
  screenshots also alone (different photos in the same chrome).

Prints, per set: pictures, near links, similar links, and for the copy bursts how many
were found. A "false link" is any near link between two files no label calls copies.
"""

from __future__ import annotations

import argparse
import csv
import itertools
import random
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

HERE = Path(__file__).resolve().parent
DEFAULT_BENCH = HERE.parent.parent / "shared" / "bench"


def blank_pictures(folder: Path) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    out = []

    def keep(img: Image.Image, name: str, **kw) -> None:
        img.save(folder / name, **kw)
        out.append(folder / name)

    keep(Image.new("RGB", (1200, 900), (200, 30, 30)), "red.jpg", quality=90)
    keep(Image.new("RGB", (1200, 900), (30, 60, 200)), "blue.jpg", quality=90)
    keep(Image.new("RGB", (1, 1), (128, 128, 128)), "pixel.png")
    ramp = np.tile(np.linspace(40, 220, 1024, dtype=np.float64), (768, 1)).astype(np.uint8)
    keep(Image.fromarray(ramp, "L").convert("RGB"), "gradient.jpg", quality=90)
    keep(Image.new("RGB", (1920, 1080), (252, 252, 250)), "white slide.png")
    keep(Image.new("RGB", (1080, 2400), (0, 0, 0)), "black screen.png")
    return out


def read_groups(bench: Path) -> list[dict]:
    with open(bench / "groups.tsv", newline="") as fh:
        return list(csv.DictReader(fh, delimiter="\t"))


def scan_links(files: list[Path], work: Path) -> tuple[list[tuple[str, str, str]], float]:
    """(redundant, kept, kind) of every live decision after scanning `files` (copied
    into one folder, names kept unique), and the seconds it took."""
    from accuracy import live_decisions

    from watcherd.config import Config
    from watcherd.index import Index
    from watcherd.scanner import scan

    shutil.rmtree(work, ignore_errors=True)
    folder = work / "pics"
    folder.mkdir(parents=True)
    names = {}
    for k, src in enumerate(files):
        dest = folder / f"{k:04d}_{src.name}"
        shutil.copyfile(src, dest)
        names[str(dest)] = str(src)
    t0 = time.monotonic()
    with Index(work / "index.sqlite3", writer=True) as index:
        scan([folder], Config(), index)
        seconds = time.monotonic() - t0
        rows = live_decisions(index)
    return [(names[a], names[b], kind) for a, b, kind in rows], seconds


def report(name: str, files: list[Path], links, copies: set[frozenset] = frozenset()) -> None:
    near = [(a, b) for a, b, kind in links if kind != "similar"]
    similar = [(a, b) for a, b, kind in links if kind == "similar"]
    false = [(a, b) for a, b in near if frozenset((a, b)) not in copies]
    print(
        f"{name:<28} {len(files):>5} pictures  near {len(near):>4}  false near {len(false):>4}"
        f"  similar {len(similar):>4}"
    )
    for a, b in false[:5]:
        print(f"    false: {Path(a).name} ~ {Path(b).name}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bench", type=Path, default=DEFAULT_BENCH)
    parser.add_argument("--workdir", type=Path)
    parser.add_argument("--sample", type=int, default=40, help="photos to make copies of")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    work = args.workdir or Path(tempfile.mkdtemp(prefix="wd-trust-"))
    photos = args.bench / "photos"
    groups = read_groups(args.bench)

    sky = sorted((photos / "debian-stellarium-nebulae").glob("*.*"))
    sky = [p for p in sky if p.suffix.lower() in (".jpg", ".jpeg", ".png", ".webp")]
    links, _ = scan_links(sky, work / "sky")
    report("deep-sky (all distinct)", sky, links)

    frames = photos / "video-frames"
    copy_pairs, hard_pairs = set(), []
    by_group: dict[tuple[str, str], list[Path]] = {}
    for row in groups:
        if row["path"].startswith("video-frames/"):
            by_group.setdefault((row["group_id"], row["kind"]), []).append(photos / row["path"])
    for (_, kind), members in by_group.items():
        for a, b in itertools.combinations(members, 2):
            if kind == "copy":
                copy_pairs.add(frozenset((str(a), str(b))))
            elif kind == "hard-negative":
                hard_pairs.append((a, b))
    every = sorted(p for p in frames.glob("*.jpg"))
    links, _ = scan_links(every, work / "frames")
    report("video frames (bursts, 1 s)", every, links, copy_pairs)
    found = {frozenset((a, b)) for a, b, kind in links if kind != "similar"}
    linked = {x for pair in found for x in pair}
    hit = sum(1 for pair in copy_pairs if all(x in linked for x in pair))
    hard_near = sum(1 for a, b in hard_pairs if frozenset((str(a), str(b))) in found)
    from accuracy import groups as linked

    group = linked(found)
    hard_grouped = sum(1 for a, b in hard_pairs if group(str(a)) == group(str(b)))
    print(f"    copy bursts found {hit} of {len(copy_pairs)}; hard-negative bursts near "
          f"{hard_near} of {len(hard_pairs)} directly, {hard_grouped} in one group")  # fmt: skip

    blanks = blank_pictures(work / "blank-src")
    links, _ = scan_links(blanks, work / "blank")
    report("blank pictures", blanks, links)

    with open(args.bench / "manifest.tsv", newline="") as fh:
        manifest = list(csv.DictReader(fh, delimiter="\t"))
    everyday = [photos / r["path"] for r in manifest if r.get("role") == "photo"]
    everyday = [p for p in everyday if "nebulae" not in str(p) and "video-frames" not in str(p)]
    grouped = {photos / r["path"] for r in groups}
    everyday = [p for p in everyday if p not in grouped]
    links, _ = scan_links(everyday, work / "everyday")
    report("everyday photos (distinct)", everyday, links)
    made_copies(everyday, work, args.sample, args.seed)


def made_copies(everyday: list[Path], work: Path, n: int, seed: int) -> None:
    """Screenshots and stickered copies of `n` everyday photos, each set scanned after
    its photos: found (linked near to its photo), false near links (to anything
    else); and the chat screenshots scanned alone, where only their chrome is alike."""
    import screens

    rng = random.Random(seed)
    sources = rng.sample(everyday, min(n, len(everyday)))
    pictures = []
    for p in sources:
        with Image.open(p) as im:
            pictures.append(ImageOps.exif_transpose(im).convert("RGB"))
    kinds = {
        "chat screenshots": screens.chat,
        "gallery screenshots": screens.gallery,
        "full-screen screenshots": screens.full_screen_fitted,
        "zoomed full-screen screenshots": screens.full_screen,
        "stickers (5-10%)": screens.sticker,
    }
    for label, make in kinds.items():
        folder = work / ("made-" + label.split()[0])
        folder.mkdir(parents=True, exist_ok=True)
        made = []
        for k, (src, img) in enumerate(zip(sources, pictures, strict=True)):
            dest = folder / f"{label.split()[0]}-{k:03d}.{'png' if 'screen' in label else 'jpg'}"
            make(img, seed * 1000 + k).save(
                dest, **({} if dest.suffix == ".png" else {"quality": 85})
            )
            made.append((dest, src))
        copies = {frozenset((str(a), str(b))) for a, b in made}
        links, _ = scan_links(sources + [a for a, _ in made], work / ("scan-" + label.split()[0]))
        near = {frozenset((a, b)) for a, b, kind in links if kind != "similar"}
        found = sum(1 for pair in copies if pair in near)
        false = [pair for pair in near if pair not in copies]
        # the keep rule: the photo stays, the screenshot or stickered copy is redundant
        made_paths = {str(a) for a, _ in made}
        kept = sum(
            1 for a, b, kind in links if kind != "similar" and a in made_paths
            if frozenset((a, b)) in copies
        )  # fmt: skip
        print(f"{label:<28} {len(made):>5} copies   found {found / len(made):.2f}  "
              f"false near {len(false):>3}   photo kept {kept:>3} of {found}")  # fmt: skip
        for pair in false[:3]:
            print("    false: " + " ~ ".join(Path(x).name for x in pair))
        if label.startswith("chat"):
            alone = [a for a, _ in made]
            links, _ = scan_links(alone, work / "scan-chat-alone")
            report("chat screenshots alone", alone, links)


if __name__ == "__main__":
    main()
