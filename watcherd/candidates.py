"""Candidates: the indexed pictures the hash arrays bring for a newcomer, before any
pixel is looked at (verification decides; judge.py asks).

`near`: whole picture in eight poses and crops, within the near limits. `loose`: the
upright whole picture within the looser `similar` limits (another shot of the scene)
or with a close dHash (a copy under a sticker).
"""

from __future__ import annotations

from collections.abc import Iterator

from .config import Config
from .fingerprint import PHOTO, PHOTO_TIGHT, TRANSFORM_NAMES, Fingerprint
from .index import Index
from .matching import (
    CONTENT_REGION,
    REGION_NAMES,
    REGIONS_AGREE,
    WHOLE_EDGE_MARGIN,
    HashIndex,
    Match,
    RegionIndex,
)
from .models import File, to_unsigned

_WHOLE = frozenset(TRANSFORM_NAMES)
# dHash bits a sticker or label over up to a tenth of the picture changes: at most 12
# in 120 stickered copies of everyday photos (their pHash moved up to 34); unrelated
# everyday photos come this close about once in 6,000 pairs, so a loose candidate
# found this way is only a copy if verification says so (judge.Judge.similar).
OVERLAY_DHASH = 12
# The photo inside a screenshot is boxed to within a pixel or two of a 256 px picture
# either way (where a bubble of its own tone meets it), a few percent of its side: its
# hash is looked up against whole pictures this many bits looser than a crop's. Only
# screenshots have these regions, and verification decides.
PHOTO_SLACK = 2
PHOTO_REGIONS = (PHOTO, *PHOTO_TIGHT)


def near(
    hashes: HashIndex, parts: RegionIndex, index: Index, config: Config, f: File, fp: Fingerprint
) -> list[Match]:
    """Indexed pictures that look like the newcomer: whole, turned, or cropped.

    The whole picture is compared in all eight poses. Then, upright only and under
    stricter limits: the newcomer against the regions of indexed pictures (it is a
    crop of one), its regions against whole indexed pictures (one is a crop of it),
    and each of its regions against the same region (a caption bar or overlay
    changed only the rest). Each file keeps its closest match, a whole-picture
    pose before any crop (the pose lines the two up for verification).
    """
    best: dict[int, Match] = {}

    def offer(m: Match) -> None:
        if m.file_id == f.id:
            return
        old = best.get(m.file_id)
        if old is None or (m.transform in _WHOLE, -m.distance) > (
            old.transform in _WHOLE,
            -old.distance,
        ):
            best[m.file_id] = m

    for m in hashes.search(
        fp.variants,
        config.phash_distance,
        config.dhash_distance,
        exclude=f.id,
        max_turned=config.turned_phash_distance,
    ):
        edge = m.transform == "identity" and m.distance >= config.phash_distance - WHOLE_EDGE_MARGIN
        if edge and not regions_agree(parts, m.file_id, fp):
            continue
        if content_agrees(parts, config, m.file_id, fp):
            offer(m)
    for m in _crops(hashes, parts, index, config, f, fp):
        offer(m)
    return sorted(best.values(), key=lambda m: (m.distance, m.ddistance, m.file_id))


def _crops(
    hashes: HashIndex, parts: RegionIndex, index: Index, config: Config, f: File, fp: Fingerprint
) -> Iterator[Match]:
    cp, cd = config.crop_phash_distance, config.crop_dhash_distance
    queries = [(0, fp.phash, fp.dhash), *fp.regions]
    close = []  # regions within reach by pHash: (our dHash, file id, their region, distance)
    for q, file_id, their_region, pdist in parts.search([ph for _, ph, _ in queries], cp):
        region, _, dh = queries[q]
        if region in (0, their_region) and file_id != f.id:
            close.append((dh, file_id, their_region, pdist))
    regions = [(ph, dh) for _, ph, dh in fp.regions]
    for q, file_id, pdist, ddist in hashes.hits(regions, cp + PHOTO_SLACK, cd):
        region = fp.regions[q][0]
        if file_id != f.id and (pdist <= cp or region in PHOTO_REGIONS):
            yield Match(file_id, pdist, ddist, f"crop:{REGION_NAMES[region]}")
    if close:
        stored = index.region_dhashes((fid, r) for _, fid, r, _ in close)
        for dh, file_id, their_region, pdist in close:
            theirs = stored.get((file_id, their_region))
            if theirs is not None and (ddist := (theirs ^ to_unsigned(dh)).bit_count()) <= cd:
                yield Match(file_id, pdist, ddist, f"crop:{REGION_NAMES[their_region]}")


def loose(
    hashes: HashIndex, parts: RegionIndex, config: Config, f: File, fp: Fingerprint
) -> list[Match]:
    """Upright whole pictures within the `similar` limits, and those whose dHash alone
    is close (a copy under a sticker: HashIndex.dhash_near), most alike first: by the
    sum of the two distances, which puts a stickered copy (pHash far, dHash close)
    ahead of the chance matches either limit alone lets in."""
    best: dict[int, Match] = {}
    found = hashes.search(
        fp.variants[:1],
        config.similar_phash_distance,
        config.similar_dhash_distance,
        exclude=f.id,
    )
    for m in [*found, *hashes.dhash_near(fp.phash, fp.dhash, OVERLAY_DHASH)]:
        if m.file_id != f.id and m.file_id not in best:
            best[m.file_id] = m
    ordered = sorted(best.values(), key=lambda m: (m.distance + m.ddistance, m.file_id))
    return [m for m in ordered if content_agrees(parts, config, m.file_id, fp)]


def regions_agree(parts: RegionIndex, file_id: int, fp: Fingerprint) -> bool:
    """Every region both pictures have hashed is close: a burst shot differs where
    its subject moved, a copy nowhere."""
    for region, ph, dh in fp.regions:
        distance = parts.distance(file_id, region, [(ph, dh)])
        if distance is not None and distance > REGIONS_AGREE:
            return False
    return True


def content_agrees(parts: RegionIndex, config: Config, file_id: int, fp: Fingerprint) -> bool:
    """Two pictures on the same white (or black) background or frame look alike as
    a whole; when both have one, what stands on it must look alike too."""
    if not fp.content_variants:
        return True
    distance = parts.distance(file_id, CONTENT_REGION, fp.content_variants)
    return distance is None or distance <= config.phash_distance
