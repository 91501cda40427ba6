"""Reading a video (in a worker process): its length, its frame size as shown, and
the perceptual hashes of frames taken every `gap` seconds across it (at most SAMPLES,
at least MIN_GAP apart), through PyAV (FFmpeg's libraries bundled in its wheels: no
system ffmpeg is needed).

The frames sit at fixed times from the start, so that a copy with its start cut off
lines up with the original at some offset (video_match searches it). A short video
is decoded straight through, picking the frames at those times; a longer one
(SEQUENTIAL_UP_TO) by seeking, each seek decoding from the keyframe before its time up
to DECODE_AT_MOST frames, so a 4-hour video costs SAMPLES seeks, not a decode of every
frame. The rotation a phone records (the display matrix) is applied, as EXIF
orientation is for photos. Each frame is hashed in the eight poses, so that a turned
or mirrored copy is found too.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np
from PIL import Image

from .fingerprint import HASH_SIDE, THUMB_QUALITY, THUMB_SIDE, hashes_of, poses

SAMPLES = 64  # frames hashed per video at most
MIN_GAP = 0.1  # seconds between two of them at least (a short clip gets fewer)
SEQUENTIAL_UP_TO = 60.0  # seconds: shorter videos are decoded straight through
DECODE_AT_MOST = 120  # frames decoded after a seek before the sample is taken as it is
POSTER_AT = 0.1  # the frame shown as the video's thumbnail, as a fraction of its length
SMALL = 256  # pixels on a frame's long side, as it is hashed (and its poster made)


def sample_times(duration: float) -> list[float]:
    """When frames are taken: every `gap` seconds from half a gap in."""
    gap = max(MIN_GAP, duration / SAMPLES)
    return [(i + 0.5) * gap for i in range(max(1, int(duration / gap)))]


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
        # one thread: frame threads cost a third more CPU in all (the worker processes
        # already keep every core busy, a file each)
        duration = _duration(container, stream)
        if not duration:
            raise ValueError("cannot tell the video's length")
        times = sample_times(duration)
        if duration <= SEQUENTIAL_UP_TO:
            taken = _frames_through(container, stream, times)
        else:
            taken = [(at, _frame_at(container, stream, at)) for at in times]
        frames, poster, size = [], None, None
        poster_at = min(times, key=lambda t: abs(t - POSTER_AT * duration))
        for at, frame in taken:
            if frame is None:
                continue
            picture, shown = _upright(frame)
            size = size or shown
            if at == poster_at or poster is None:
                poster = _jpeg(picture)
            frames.append((round(at * 1000), _hashes(picture)))
        if len(frames) < len(times) // 2:
            raise ValueError(f"cannot decode video: {len(frames)} of {len(times)} frames read")
    width, height = size
    return VideoFacts(duration, width, height, tuple(frames), poster)


def _duration(container, stream) -> float | None:
    if stream.duration is not None and stream.time_base is not None:
        return float(stream.duration * stream.time_base)
    if container.duration is not None:
        return container.duration / 1_000_000  # av.time_base
    return None


def _frames_through(container, stream, times: list[float]) -> list[tuple[float, object]]:
    """(time, frame) for each of `times`: the first frame at or after it, decoding the
    video from its start; a frame that cannot be decoded ends it early."""
    import av

    out, k = [], 0
    try:
        for frame in container.decode(stream):
            while k < len(times) and (frame.time is None or frame.time >= times[k]):
                out.append((times[k], frame))
                k += 1
            if k == len(times):
                break
    except (av.FFmpegError, OSError, ValueError):
        pass  # truncated: what was read counts
    return out


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


def _upright(frame) -> tuple[Image.Image, tuple[int, int]]:
    """The frame as a player shows it, made small (SMALL on its long side) by FFmpeg's
    scaler as it leaves the decoder (a whole 1080p frame to RGB cost 5-10 ms, a small
    one a tenth of it), turned by the rotation the file records; and its size as
    shown, whole."""
    scale = min(1.0, SMALL / max(frame.width, frame.height))
    width, height = max(1, round(frame.width * scale)), max(1, round(frame.height * scale))
    picture = frame.reformat(width, height, "rgb24", interpolation="AREA").to_image()
    turn = _TURNS.get(round(frame.rotation or 0) % 360)  # counter-clockwise, as FFmpeg's
    size = (frame.width, frame.height)
    if turn is None:
        return picture, size
    return picture.transpose(turn), size[::-1] if turn != Image.Transpose.ROTATE_180 else size


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
