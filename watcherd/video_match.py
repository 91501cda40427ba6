"""Near-duplicate videos: a newcomer video against the indexed videos of about its
length, frame by frame.

Each video carries the hashes of video.SAMPLES frames taken at the same fractions of
its length. A re-encoded, rescaled or remuxed copy (or one turned or mirrored: the
newcomer's frames are hashed in eight poses) matches in nearly every sampled frame, in
one pose; another clip of the same scene does not, its frames differ where things
moved. Blank frames (black, a fade) say nothing and are never counted as agreeing.
Trimmed copies, and `similar` for videos, are not found yet.
"""

from __future__ import annotations

import numpy as np

from .config import Config
from .fingerprint import TRANSFORM_NAMES, Fingerprint
from .index import Index
from .models import File

SAME_LENGTH = 0.02  # lengths within 2% (and half a second): a remux or re-encode
NEAR_FRAMES = 0.8  # a copy agrees in at least this share of its informative frames
INFORMATIVE = 0.5  # and at least this share of its frames are not blank


def packed(frames: tuple) -> bytes:
    """A video's frames as stored: (ms, pHash, dHash) of the upright pose, uint64."""
    rows = [(ms, variants[0][0], variants[0][1]) for ms, variants in frames]
    return np.array(rows, dtype=np.uint64).tobytes()


def unpacked(blob: bytes) -> np.ndarray:
    return np.frombuffer(blob, dtype=np.uint64).reshape(-1, 3)


Copy = tuple[File, int, str, bool]  # partner, distance, pose, settled (see judge.Finding)


def near(index: Index, config: Config, f: File, fp: Fingerprint, ignored: set[int]) -> Copy | None:
    """The indexed video the newcomer is a copy of (a kept one when one agrees)."""
    duration = fp.duration or 0.0
    slack = duration * SAME_LENGTH + 0.5
    matches = []
    for file_id, length, blob in index.videos_between(duration - slack, duration + slack):
        if file_id == f.id or file_id in ignored:
            continue
        agreed = _agreement(fp, length, unpacked(blob), config)
        if agreed is not None:
            matches.append((file_id, *agreed))
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


def _agreement(
    fp: Fingerprint, length: float, theirs: np.ndarray, config: Config
) -> tuple[int, int] | None:
    """(median pHash distance, pose) if the newcomer's frames agree with these, frame
    for frame at the same fraction of each video's length; None if they do not."""
    if not len(theirs) or not fp.frames or not fp.duration:
        return None
    mine_at = np.array([ms for ms, _ in fp.frames], dtype=np.float64) / (fp.duration * 1000)
    their_at = theirs[:, 0].astype(np.float64) / (length * 1000)
    nearest = np.abs(mine_at[:, None] - their_at[None, :]).argmin(axis=1)
    ours = np.array([variants for _, variants in fp.frames], dtype=np.uint64)  # (n, 8, 2)
    tp, td = theirs[nearest, 1], theirs[nearest, 2]
    blank = (tp == 0) & (td == 0)
    if (~blank).mean() < INFORMATIVE:
        return None
    best = None
    for pose in range(ours.shape[1]):
        dp = np.bitwise_count(ours[:, pose, 0] ^ tp)
        dd = np.bitwise_count(ours[:, pose, 1] ^ td)
        agree = (dp <= config.phash_distance) & (dd <= config.dhash_distance) & ~blank
        share = agree.sum() / max(1, (~blank).sum())
        if share >= NEAR_FRAMES and (best is None or share > best[0]):
            best = (share, int(np.median(dp[~blank])), pose)
    return None if best is None else (best[1], best[2])
