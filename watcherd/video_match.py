"""Near-duplicate videos: a newcomer video against the indexed videos of about its
length, frame by frame, at the offset that lines them up.

Each video carries the hashes of frames taken every so many seconds from its start
(video.sample_times). A re-encoded, rescaled or remuxed copy (or one turned or
mirrored: the newcomer's frames are hashed in eight poses) agrees with its original in
nearly every frame, in one pose, at offset 0; a copy with up to a fifth cut off its
start or end agrees at the offset of the cut, over most of the original's length.
The offset is the one most agreeing frame pairs vote for. Another clip of the same
scene does not agree: its frames differ where things moved. Blank frames (black, a
fade) say nothing and are never counted. Within the looser `similar` limits over half
of what both show, the newcomer is another clip of the same scene (`shot`).
"""

from __future__ import annotations

import numpy as np

from .config import Config
from .fingerprint import TRANSFORM_NAMES, Fingerprint
from .index import Index
from .models import File

SHORTER = 0.78  # the shorter of a copy and its original: this much of the longer or more
NEAR_FRAMES = 0.8  # a copy agrees in this share of the frames both show, at least,
COVERED = 0.78  # over this much of the longer one's length
AGREEING_AT_LEAST = 4  # frames
SIMILAR_FRAMES = 0.5  # the same scene: half of what both show, within the similar limits
INFORMATIVE = 0.5  # and at least this share of its frames are not blank


def packed(frames: tuple) -> bytes:
    """A video's frames as stored: (ms, pHash, dHash) of the upright pose, uint64."""
    rows = [(ms, variants[0][0], variants[0][1]) for ms, variants in frames]
    return np.array(rows, dtype=np.uint64).tobytes()


def unpacked(blob: bytes) -> np.ndarray:
    return np.frombuffer(blob, dtype=np.uint64).reshape(-1, 3)


Copy = tuple[File, int, str, bool]  # partner, distance, pose, settled (see judge.Finding)
Video = tuple[int, float, np.ndarray]  # file id, length, frames (unpacked)


def lengthwise(index: Index, f: File, fp: Fingerprint, ignored: set[int]) -> list[Video]:
    """The indexed videos of about the newcomer's length (a cut copy's or original's
    included), read once for both questions, `near` and `shot`."""
    duration = fp.duration or 0.0
    rows = index.videos_between(duration * SHORTER - 0.5, duration / SHORTER + 0.5)
    return [
        (file_id, length, unpacked(blob))
        for file_id, length, blob in rows
        if file_id != f.id and file_id not in ignored
    ]


def near(index: Index, config: Config, fp: Fingerprint, videos: list[Video]) -> Copy | None:
    """The indexed video the newcomer is a copy of (a kept one when one agrees)."""
    limits = (config.phash_distance, config.dhash_distance, NEAR_FRAMES, COVERED)
    matches = _matching(fp, videos, limits)
    if not matches:
        return None
    states = index.file_states(m[0] for m in matches)
    # kept files first, then the closest
    matches.sort(key=lambda m: (states.get(m[0], ("", None))[1] is not None, m[1]))
    file_id, distance, pose = matches[0]
    partner = index.get(file_id)
    if partner is None:
        return None
    # a redundant copy is named only when its group's kept file did not agree: the
    # keep rule must not make the newcomer the kept file of a group it was not checked
    # against (as for photos)
    settled = partner.duplicate_of_id is not None
    return partner, distance, TRANSFORM_NAMES[pose], settled


def shot(
    index: Index, config: Config, fp: Fingerprint, videos: list[Video]
) -> tuple[File, int] | None:
    """An indexed video of the same scene, not a copy (another take, a clip filmed there
    another time): its frames agree within the looser `similar` limits over half of
    what both show. Reported, never moved."""
    limits = (config.similar_phash_distance, config.similar_dhash_distance, SIMILAR_FRAMES, 0.5)
    matches = sorted(_matching(fp, videos, limits), key=lambda m: m[1])
    other = index.get(matches[0][0]) if matches else None
    return None if other is None else (other, matches[0][1])


def _matching(fp: Fingerprint, videos: list[Video], limits: tuple) -> list[tuple[int, int, int]]:
    """(file id, median distance, pose) of the videos whose frames agree with the
    newcomer's under `limits`."""
    matches = []
    for file_id, length, frames in videos:
        agreed = _agreement(fp, length, frames, limits)
        if agreed is not None:
            matches.append((file_id, *agreed))
    return matches


def _agreement(
    fp: Fingerprint, length: float, theirs: np.ndarray, limits: tuple
) -> tuple[int, int] | None:
    """(median pHash distance, pose) if the newcomer's frames agree with these at one
    offset, over most of both; None if they do not."""
    if len(theirs) < AGREEING_AT_LEAST or len(fp.frames) < AGREEING_AT_LEAST:
        return None
    mine_t = np.array([ms for ms, _ in fp.frames], dtype=np.float64) / 1000
    their_t = theirs[:, 0].astype(np.float64) / 1000
    ours = np.array([variants for _, variants in fp.frames], dtype=np.uint64)  # (n, 8, 2)
    mine_blank = (ours[:, 0, 0] == 0) & (ours[:, 0, 1] == 0)
    their_blank = (theirs[:, 1] == 0) & (theirs[:, 2] == 0)
    if (~their_blank).mean() < INFORMATIVE or (~mine_blank).mean() < INFORMATIVE:
        return None
    step = max(_gap(mine_t), _gap(their_t))
    best = None
    for pose in range(ours.shape[1]):
        dp = np.bitwise_count(ours[:, pose, 0][:, None] ^ theirs[None, :, 1])  # (n, m)
        dd = np.bitwise_count(ours[:, pose, 1][:, None] ^ theirs[None, :, 2])
        ok = (dp <= limits[0]) & (dd <= limits[1])
        ok &= ~mine_blank[:, None] & ~their_blank[None, :]
        longest = max(fp.duration or 0.0, length)
        found = _along(ok, dp, mine_t, their_t, step, longest, ~mine_blank, limits[2:])
        if found is not None and (best is None or found[0] > best[0]):
            best = (*found, pose)
    return None if best is None else (best[1], best[2])


def _gap(times: np.ndarray) -> float:
    return float(np.median(np.diff(times))) if len(times) > 1 else 1.0


def _along(
    ok: np.ndarray, dp: np.ndarray, mine_t: np.ndarray, their_t: np.ndarray, step: float,
    longest: float, informative: np.ndarray, shares: tuple[float, float],
) -> tuple[float, int] | None:  # fmt: skip
    """(share agreeing, median distance) at the offset most agreeing pairs vote for,
    if it passes NEAR_FRAMES and COVERED; a frame agrees with the frame nearest its
    time or either neighbour (the two videos' frames were taken up to half a gap
    apart)."""
    i, j = np.nonzero(ok)
    if len(i) < AGREEING_AT_LEAST:
        return None
    offsets = their_t[j] - mine_t[i]
    bins, counts = np.unique(np.round(offsets / step), return_counts=True)
    shift = float(np.median(offsets[np.round(offsets / step) == bins[counts.argmax()]]))
    target = mine_t + shift
    inside = (target >= their_t[0] - step) & (target <= their_t[-1] + step)
    nearest = np.abs(target[:, None] - their_t[None, :]).argmin(axis=1)
    rows = np.arange(len(mine_t))
    agree = np.zeros(len(mine_t), dtype=bool)
    for d in (-1, 0, 1):
        col = np.clip(nearest + d, 0, len(their_t) - 1)
        agree |= ok[rows, col]
    agree &= inside
    shown = inside & informative  # the frames both videos show
    share = agree.sum() / max(1, shown.sum())
    span = (target[agree].max() - target[agree].min() + step) if agree.any() else 0.0
    if agree.sum() < AGREEING_AT_LEAST or share < shares[0] or span < shares[1] * longest:
        return None
    return share, int(np.median(dp[rows[agree], nearest[agree]]))
