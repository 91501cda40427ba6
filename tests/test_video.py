"""Videos (issue 26): a re-encoded, rescaled, remuxed or turned copy of a video is a
near duplicate; another clip is not; a video that cannot be played is an error and
costs nothing else. The videos are made here with PyAV."""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest
from helpers import video
from sqlalchemy import select

from watcherd.config import Config
from watcherd.fingerprint import fingerprint_file
from watcherd.index import Index
from watcherd.models import ACTIVE, Decision, File
from watcherd.scanner import scan

pytest.importorskip("av")


def decisions(tmp_path, folder) -> list[tuple[str, str, str, str | None]]:
    """Scan `folder` (files older first by name); (redundant, kept, kind, transform)."""
    for i, path in enumerate(sorted(folder.iterdir())):
        os.utime(path, ns=(10**18 + i * 10**9, 10**18 + i * 10**9))
    with Index(tmp_path / "i.sqlite3") as index:
        scan([folder], Config(workers=1), index)
        rows = index.session.scalars(select(Decision).where(Decision.current.is_(True))).all()
        return sorted(
            (d.file.path.rsplit("/", 1)[1], d.original.path.rsplit("/", 1)[1], d.kind, d.transform)
            for d in rows
        )


def test_a_video_is_fingerprinted_by_sampled_frames(tmp_path):
    fp = fingerprint_file(str(video(tmp_path / "a.mp4", 1)))
    assert fp.error is None and fp.format == "video"
    assert abs(fp.duration - 3.0) < 0.2 and (fp.width, fp.height) == (320, 240)
    assert len(fp.frames) >= 20 and all(len(v) == 8 for _, v in fp.frames)
    times = [ms for ms, _ in fp.frames]
    assert times == sorted(times) and times[-1] - times[0] > 2500  # spread over it all
    assert fp.thumbnail.startswith(b"\xff\xd8")  # a poster frame for the report


def test_a_smaller_re_encoded_copy_is_a_near_duplicate_of_the_original(tmp_path):
    lib = tmp_path / "lib"
    video(lib / "a-original.mp4", 1)
    video(lib / "b-whatsapp.mp4", 1, size=(160, 120), bit_rate=200_000)
    assert decisions(tmp_path, lib) == [("b-whatsapp.mp4", "a-original.mp4", "near", "identity")]


def test_a_copy_in_another_container_is_found_and_the_bigger_one_kept(tmp_path):
    lib = tmp_path / "lib"
    video(lib / "a-small.mkv", 1, size=(160, 120), bit_rate=300_000)
    video(lib / "b-full.avi", 1)  # arrives later, more pixels: it is kept
    assert decisions(tmp_path, lib) == [("a-small.mkv", "b-full.avi", "near", "identity")]


@pytest.mark.parametrize("turn", [90, 180])
def test_a_turned_copy_is_found(tmp_path, turn):
    lib = tmp_path / "lib"
    video(lib / "a.mp4", 1)
    video(lib / "b-turned.mp4", 1, size=(160, 120), turn=turn)
    [(redundant, kept, kind, transform)] = decisions(tmp_path, lib)
    assert (redundant, kept, kind) == ("b-turned.mp4", "a.mp4", "near")
    assert transform in ("rotate90", "rotate180", "rotate270")


@pytest.mark.parametrize("cut", ["start", "end"])
def test_a_copy_with_a_fifth_cut_off_is_found_and_the_whole_one_kept(tmp_path, cut):
    """The cut copy is indexed first; the whole video arriving later is kept."""
    lib = tmp_path / "lib"
    video(lib / "a-cut.mp4", 1, seconds=5.0, skip=(0.2 if cut == "start" else -0.2))
    video(lib / "b-whole.mp4", 1, seconds=5.0)
    assert decisions(tmp_path, lib) == [("a-cut.mp4", "b-whole.mp4", "near", "identity")]


def test_the_longer_video_is_kept_even_with_fewer_pixels(tmp_path):
    """The keep rule for videos: longer first (the other was cut), then pixels."""
    lib = tmp_path / "lib"
    video(lib / "a-cut-sharp.mp4", 1, seconds=5.0, skip=0.2)
    video(lib / "b-whole-small.mp4", 1, seconds=5.0, size=(160, 120), bit_rate=300_000)
    assert decisions(tmp_path, lib) == [
        ("a-cut-sharp.mp4", "b-whole-small.mp4", "near", "identity")
    ]


def test_the_report_shows_a_video_copy_with_its_poster_frame_and_length(tmp_path):
    from watcherd import report, report_html

    lib = tmp_path / "lib"
    video(lib / "a.mp4", 1)
    video(lib / "b.mp4", 1, size=(160, 120), bit_rate=300_000)
    decisions(tmp_path, lib)
    with Index(tmp_path / "i.sqlite3") as index:
        data = report.build(index)
        page = report_html.render(data, index.thumbnails(report_html.pictured(data)))
    [row] = data["duplicates"]
    assert row["kind"] == "near" and abs(row["duration"] - 3.0) < 0.2
    assert page.count("data:image/jpeg;base64,") == 2  # both poster frames
    assert page.count("· 0:03 ·") == 2  # the length of each


@pytest.mark.skipif(
    shutil.which("ffmpeg") is None,
    reason="ffmpeg (a Debian package .ci/run installs) writes "
    "the rotation a phone records, which PyAV cannot",
)
def test_the_rotation_a_phone_records_is_applied_as_players_apply_it(tmp_path):
    """A portrait video as a phone stores it: landscape pixels and a rotation in its
    display matrix. watcherd shows and hashes it upright, as ffmpeg does."""
    import av
    import numpy as np
    from PIL import Image

    from watcherd.video import _upright

    phone = tmp_path / "phone.mp4"
    src = video(tmp_path / "a.mp4", 1)
    ffmpeg = ["ffmpeg", "-loglevel", "error", "-y", "-i"]
    subprocess.run([*ffmpeg, src, "-c", "copy", "-metadata:s:v:0", "rotate=90", phone], check=True)
    fp = fingerprint_file(str(phone))
    assert (fp.width, fp.height) == (240, 320)
    shown = tmp_path / "shown.png"  # the first frame as ffmpeg turns it for a player
    subprocess.run([*ffmpeg, phone, "-frames:v", "1", shown], check=True)
    with av.open(str(phone)) as container:
        first = next(container.decode(container.streams.video[0]))
        picture, size = _upright(first)  # made small as it is hashed
    assert size == (240, 320)
    ours = np.asarray(picture.convert("L"), dtype=float)
    theirs = Image.open(shown).convert("L").resize(picture.size, Image.Resampling.BOX)
    assert np.abs(ours - np.asarray(theirs, dtype=float)).mean() < 2


def test_another_clip_is_not_a_copy(tmp_path):
    lib = tmp_path / "lib"
    video(lib / "a.mp4", 1)
    video(lib / "b.mp4", 2)
    video(lib / "c-longer.mp4", 1, seconds=6.0)  # the same scene, another length
    assert decisions(tmp_path, lib) == []


def test_the_same_picture_panned_the_other_way_is_never_near(tmp_path):
    """Two slideshows of one photo: the same scene (`similar` at most), not a copy."""
    lib = tmp_path / "lib"
    video(lib / "a.mp4", 1, seconds=5.0)
    video(lib / "b-other-way.mp4", 1, seconds=5.0, backwards=True)
    assert [kind for _, _, kind, _ in decisions(tmp_path, lib)] in ([], ["similar"])


def test_an_unplayable_or_silent_video_is_noted_and_still_matched_by_its_bytes(tmp_path):
    """A truncated file, one that is not a video at all, one with sound and no picture:
    each is indexed with the reason noted, found again by its bytes, and the videos
    after it are decided as usual."""
    import av

    lib = tmp_path / "lib"
    whole = video(lib / "a.mp4", 1).read_bytes()
    (lib / "b-truncated.mp4").write_bytes(whole[: len(whole) // 3])
    (lib / "c-not-a-video.mp4").write_bytes(b"\x00" * 5000)
    (lib / "c2-same-bytes.mp4").write_bytes(b"\x00" * 5000)
    with av.open(str(lib / "d-audio-only.mkv"), "w") as out:  # sound, no picture
        stream = out.add_stream("mp2", rate=44100)
        frame = av.AudioFrame(format="s16", layout="stereo", samples=1152)
        for plane in frame.planes:
            plane.update(bytes(plane.buffer_size))
        frame.rate = 44100
        for _ in range(40):
            out.mux(stream.encode(frame))
        out.mux(stream.encode())
    video(lib / "e-copy.mp4", 1, size=(160, 120), bit_rate=300_000)
    assert decisions(tmp_path, lib) == [
        ("c2-same-bytes.mp4", "c-not-a-video.mp4", "exact", None),
        ("e-copy.mp4", "a.mp4", "near", "identity"),
    ]
    with Index(tmp_path / "i.sqlite3") as index:
        files = {f.path.rsplit("/", 1)[1]: f for f in index.session.scalars(select(File))}
        assert {f.status for f in files.values()} == {ACTIVE}
        assert "no video stream" in files["d-audio-only.mkv"].error
        assert files["c-not-a-video.mp4"].error.startswith("cannot open video")


def test_the_daemon_decides_a_video_dropped_into_a_watched_folder(tmp_path):
    from daemon_harness import Daemon

    lib = tmp_path / "lib"
    video(lib / "a.mp4", 1)
    d = Daemon(tmp_path, config=f'roots = ["{lib}"]\n')
    try:
        d.start()
        staged = video(tmp_path / "staged" / "copy.mp4", 1, size=(160, 120), bit_rate=300_000)
        staged.rename(lib / "copy.mp4")  # arrives whole, as a synced file does
        [dup] = d.wait_path("duplicate", lib / "copy.mp4")
        assert dup["original"] == str(lib / "a.mp4")
    finally:
        d.close()
