"""False matches at scale: how often would watcherd call a different picture a copy
in a library of 50,000 or 1,000,000 photos? (issue 23)

    python benchmarks/false_match.py [--bench ../shared/bench] [--workdir /tmp/wd-false]

A newcomer meets every indexed picture once. Over every ordered pair (newcomer,
indexed) of pictures none of which is a copy of another, this measures two rates:

- candidates: the pair is brought to verification by the hashes (whole picture in
  eight poses and regions, within the near limits; or upright within the looser
  similar limits, where only an overlay rule can make a copy);
- accepted: verification calls the candidate a copy (`Judge.pair`: the rule of
  `near` and `similar`, with boxes searched for every whole-picture candidate).

The pictures: the distinct everyday photos and deep-sky photos of ../shared/bench,
blank pictures, and chat screenshots of 40 of the photos (the screenshot of a photo
and that photo are a copy, not counted). Expected false matches per newcomer in a
library of L photos = L x P(candidate) x P(accepted | candidate). When no candidate
is accepted, the 95% upper bound of P(accepted | candidate) is 3 / candidates (the
rule of three): the bound printed next to the estimate.
"""

from __future__ import annotations

import argparse
import random
import shutil
import sys
from collections import Counter
from pathlib import Path

from PIL import Image, ImageOps

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from trust import DEFAULT_BENCH, blank_pictures, read_groups  # noqa: E402

from watcherd import candidates  # noqa: E402
from watcherd.config import Config  # noqa: E402
from watcherd.fingerprint import fingerprint_file  # noqa: E402
from watcherd.index import Index  # noqa: E402
from watcherd.judge import Judge  # noqa: E402
from watcherd.scanner import scan  # noqa: E402

LIBRARIES = (50_000, 1_000_000)


def pictures(bench: Path, work: Path, seed: int) -> tuple[dict[Path, str], set[frozenset]]:
    """Every picture (copied into one folder) with its set's name, and the pairs that
    are copies (a screenshot and its photo)."""
    import csv

    import screens

    photos = bench / "photos"
    with open(bench / "manifest.tsv", newline="") as fh:
        manifest = list(csv.DictReader(fh, delimiter="\t"))
    grouped = {photos / r["path"] for r in read_groups(bench)}
    everyday = [
        photos / r["path"]
        for r in manifest
        if r.get("role") == "photo"
        and "nebulae" not in r["path"]
        and "video-frames" not in r["path"]
        and photos / r["path"] not in grouped
    ]
    sky = sorted((photos / "debian-stellarium-nebulae").iterdir())
    folder = work / "pics"
    shutil.rmtree(work, ignore_errors=True)
    folder.mkdir(parents=True)
    sets: dict[Path, str] = {}
    placed: dict[Path, Path] = {}
    for name, files in (("everyday", everyday), ("deep-sky", sky)):
        for k, src in enumerate(files):
            dest = folder / f"{name}-{k:04d}{src.suffix}"
            shutil.copyfile(src, dest)
            sets[dest], placed[src] = name, dest
    for src in blank_pictures(work / "blank"):
        dest = folder / f"blank-{src.name}"
        shutil.copyfile(src, dest)
        sets[dest] = "blank"
    copies = set()
    rng = random.Random(seed)
    for k, src in enumerate(rng.sample(everyday, 40)):
        with Image.open(src) as im:
            shot = screens.chat(ImageOps.exif_transpose(im).convert("RGB"), seed * 1000 + k)
        dest = folder / f"chat-{k:03d}.png"
        shot.save(dest)
        sets[dest] = "chat"
        copies.add(frozenset((str(dest), str(placed[src]))))
    return sets, copies


def measure(sets: dict[Path, str], copies: set[frozenset], work: Path) -> None:
    config = Config()
    with Index(work / "index.sqlite3", writer=True) as index:
        scan([work / "pics"], config, index)
        judge = Judge(index, config)
        fps = {}
        for path in sets:
            f = index.file_by_path(str(path))
            fp = fingerprint_file(str(path))
            if f is None or fp.phash is None:
                continue
            fps[f.id] = (f, fp)
            judge.add(f.id, fp.phash, fp.dhash, fp.regions)
        names = {f.id: sets[Path(f.path)] for f, _ in fps.values()}
        tally: Counter = Counter()
        accepted = []
        for f, fp in fps.values():
            near = {m.file_id: m for m in judge.candidates(f, fp)}
            loose = [
                m
                for m in candidates.loose(judge.hashes, judge.parts, config, f, fp)
                if m.file_id not in near
            ]
            for m, is_loose in [(m, False) for m in near.values()] + [(m, True) for m in loose]:
                other = fps[m.file_id][0]
                if frozenset((f.path, other.path)) in copies:
                    continue
                kinds = " ~ ".join(sorted((names[f.id], names[other.id])))
                tally[(kinds, "loose" if is_loose else "near")] += 1
                if judge.pair(fp, m.file_id, m.transform, loose=is_loose):
                    accepted.append((f.path, other.path, m.transform))
                    tally[(kinds, "accepted")] += 1
        sizes = Counter(names.values())
        report(sizes, tally, accepted, len(copies))


def report(sizes: Counter, tally: Counter, accepted: list, copies: int) -> None:
    n = sum(sizes.values())
    pairs = n * (n - 1) - 2 * copies  # ordered pairs, less the screenshot-photo copies
    near = sum(v for (_, k), v in tally.items() if k == "near")
    loose = sum(v for (_, k), v in tally.items() if k == "loose")
    wrong = len(accepted)
    print(f"{n} distinct pictures ({dict(sizes)}), {pairs:,} ordered pairs")
    head = f"{'sets':<22}{'pairs':>9}{'near cand.':>11}{'loose cand.':>12}{'rate':>10}"
    print(head + f"{'accepted':>9}")
    met = {tuple(k.split(" ~ ")) for k, _ in tally} | {(s, s) for s in sizes}
    for a, b in sorted(met):
        kinds = f"{a} ~ {b}"
        among = sizes[a] * (sizes[a] - 1) if a == b else 2 * sizes[a] * sizes[b]
        found = tally[(kinds, "near")] + tally[(kinds, "loose")]
        print(
            f"{kinds:<22}{among:>9,}{tally[(kinds, 'near')]:>11}{tally[(kinds, 'loose')]:>12}"
            f"{found / max(1, among):>10.1e}{tally[(kinds, 'accepted')]:>9}"
        )
    candidates = near + loose
    p_c = candidates / pairs
    p_v = wrong / candidates if candidates else 0.0
    bound = max(wrong, 3) / candidates if candidates else 1.0
    print(f"P(candidate) = {p_c:.2e} ({near} near + {loose} loose of {pairs:,} pairs)")
    print(f"P(accepted | candidate) = {p_v:.2e} ({wrong} of {candidates}); 95% bound {bound:.2e}")
    for size in LIBRARIES:
        est, top = size * p_c * p_v, size * p_c * bound
        print(
            f"at {size:>9,} photos: {size * p_c:8.1f} candidates per newcomer, false matches "
            f"per newcomer {est:.2e} (95% bound {top:.2e})"
        )
    # none accepted among n candidates bounds L x p_c x 3 / n: below 0.001 takes
    # n > 3 L p_c / 0.001 candidates, from about sqrt(n / p_c) distinct pictures
    needed = 3 * LIBRARIES[-1] * p_c / 0.001
    print(f"to show < 0.001 at 1,000,000 with none accepted: {needed:,.0f} candidate pairs, "
          f"about {(needed / p_c) ** 0.5 if p_c else 0:,.0f} distinct pictures")  # fmt: skip
    for a, b, how in accepted[:10]:
        print(f"    accepted: {Path(a).name} ~ {Path(b).name} ({how})")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--bench", type=Path, default=DEFAULT_BENCH)
    ap.add_argument("--workdir", type=Path, default=Path("/tmp/wd-false"))
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    sets, copies = pictures(args.bench, args.workdir, args.seed)
    measure(sets, copies, args.workdir)


if __name__ == "__main__":
    main()
