"""Reading a video (in a worker process): its length, its frame size as shown, and
the perceptual hashes of SAMPLES frames spread evenly across it, through PyAV (FFmpeg's
libraries bundled in its wheels: no system ffmpeg is needed).

Frames are found by seeking, not by decoding the whole video: at most SAMPLES seeks,
each decoding from the keyframe before its time up to DECODE_AT_MOST frames, so a
4-hour video is read in about the time a short one is. The rotation a phone records
(the display matrix) is applied, as EXIF orientation is for photos. Each frame is
hashed in the eight poses, so that a turned or mirrored copy is found too.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np
from PIL import Image

from .fingerprint import HASH_SIDE, THUMB_QUALITY, THUMB_SIDE, hashes_of, poses

SAMPLES = 16  # frames hashed per video, at (k + 0.5) / SAMPLES of its length
DECODE_AT_MOST = 120  # frames decoded after a seek before the sample is taken as it is
POSTER_SAMPLE = 1  # the sample shown as the video's thumbnail (about 10% in)


@dataclass(frozen=True)
class VideoFacts:
    duration: float  # seconds
    width: int  # as shown (rotation applied)
    height: int
    # per sample: (time in ms, the frame's (pHash, dHash) in the eight poses of TRANSFORMS)
    frames: tuple[tuple[int, tuple[tuple[int, int], ...]], ...]
    poster: bytes | None  # a JPEG thumbnail of one frame


def read_video(path: str) -> VideoFacts:
    """The facts of a video; ValueError with a reason a user can read if it has none
    to give (no video stream, unplayable, truncated)."""
    import av  # imported here: the daemon's main process never decodes

    try:
        container = av.open(path, metadata_errors="ignore")
    except (av.FFmpegError, OSError) as exc:
        raise ValueError(f"cannot open video: {exc}") from None
    with container:
        if not container.streams.video:
            raise ValueError("no video stream (audio only?)")
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        duration = _duration(container, stream)
        if not duration:
            raise ValueError("cannot tell the video's length")
        frames, poster, size = [], None, None
        for k in range(SAMPLES):
            at = duration * (k + 0.5) / SAMPLES
            frame = _frame_at(container, stream, at)
            if frame is None:
                continue
            picture = _upright(frame)
            size = size or picture.size
            if k == POSTER_SAMPLE or poster is None:
                poster = _jpeg(picture)
            frames.append((round(at * 1000), _hashes(picture)))
        if len(frames) < SAMPLES // 2:
            raise ValueError(f"cannot decode video: {len(frames)} of {SAMPLES} frames read")
    width, height = size
    return VideoFacts(duration, width, height, tuple(frames), poster)


def _duration(container, stream) -> float | None:
    if stream.duration is not None and stream.time_base is not None:
        return float(stream.duration * stream.time_base)
    if container.duration is not None:
        return container.duration / 1_000_000  # av.time_base
    return None


def _frame_at(container, stream, at: float):
    """The first frame at or after `at` seconds (or the last one decoded before the
    limit); None if nothing can be decoded there."""
    import av

    try:
        container.seek(int(at / stream.time_base), stream=stream, backward=True)
        last = None
        for n, frame in enumerate(container.decode(stream)):
            last = frame
            if frame.time is None or frame.time >= at or n >= DECODE_AT_MOST:
                break
        return last
    except (av.FFmpegError, OSError, ValueError):
        return None


def _upright(frame) -> Image.Image:
    """The frame as a player shows it: turned by the rotation the file records."""
    picture = frame.to_image()
    turn = _TURNS.get(round(frame.rotation or 0) % 360)  # counter-clockwise, as FFmpeg's
    return picture.transpose(turn) if turn is not None else picture


_TURNS = {
    90: Image.Transpose.ROTATE_90,
    180: Image.Transpose.ROTATE_180,
    270: Image.Transpose.ROTATE_270,
}


def _hashes(picture: Image.Image) -> tuple[tuple[int, int], ...]:
    grey = picture.convert("L")
    grey.thumbnail((256, 256), Image.Resampling.BILINEAR, reducing_gap=2.0)
    small = grey.resize((HASH_SIDE, HASH_SIDE), Image.Resampling.LANCZOS)
    return tuple(hashes_of(poses(np.asarray(small, dtype=np.float64))))


def _jpeg(picture: Image.Image) -> bytes:
    small = picture.convert("RGB")
    small.thumbnail((THUMB_SIDE, THUMB_SIDE), Image.Resampling.BILINEAR)
    out = io.BytesIO()
    small.save(out, "JPEG", quality=THUMB_QUALITY)
    return out.getvalue()
