"""Images drawn with Pillow for tests: photo-like, distinct per seed, and their copies."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageEnhance, ImageFilter


def photo(seed: int, size: tuple[int, int] = (640, 480)) -> Image.Image:
    """A synthetic 'photo': smooth colour field, shapes at random places, a little grain.

    Different seeds give pictures as unlike each other as two unrelated photographs.
    """
    rng = random.Random(seed)
    w, h = size
    field = Image.new("RGB", (6, 5))
    field.putdata([tuple(rng.randrange(256) for _ in range(3)) for _ in range(30)])
    img = field.resize(size, Image.Resampling.BICUBIC)
    draw = ImageDraw.Draw(img)
    for _ in range(rng.randrange(6, 12)):
        x0, y0 = rng.randrange(w), rng.randrange(h)
        x1, y1 = x0 + rng.randrange(w // 8, w // 2), y0 + rng.randrange(h // 8, h // 2)
        colour = tuple(rng.randrange(256) for _ in range(3))
        shape = rng.choice(("ellipse", "rectangle", "polygon"))
        if shape == "ellipse":
            draw.ellipse((x0, y0, x1, y1), fill=colour)
        elif shape == "rectangle":
            draw.rectangle((x0, y0, x1, y1), fill=colour)
        else:
            pts = [(rng.randrange(w), rng.randrange(h)) for _ in range(rng.randrange(3, 6))]
            draw.polygon(pts, fill=colour)
    # seeded noise: Image.effect_noise draws from C's rand(), whose state depends on
    # every earlier call in the process, so the same seed would give other pictures
    grain = np.random.default_rng(seed).normal(128, 12, (h, w)).clip(0, 255).astype(np.uint8)
    noise = Image.fromarray(grain, "L").convert("RGB")
    return Image.blend(img, noise, 0.06).filter(ImageFilter.SMOOTH)


def save(img: Image.Image, path: Path, **kwargs) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix.lower() in (".jpg", ".jpeg") and "quality" not in kwargs:
        kwargs["quality"] = 92
    img.save(path, **kwargs)
    return path


def exif_rotated(img: Image.Image, path: Path) -> Path:
    """Store the pixels turned 90° with orientation tag 6, as a phone camera does.

    A viewer that honours the tag (and watcherd) shows the original picture.
    """
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90° clockwise to display"
    return save(img.transpose(Image.Transpose.ROTATE_90), path, exif=exif)


def copies(img: Image.Image, folder: Path, stem: str) -> dict[str, Path]:
    """Every kind of copy the foundation promises to link to its original."""
    w, h = img.size
    half = img.resize((w // 2, h // 2), Image.Resampling.LANCZOS)
    return {
        "resized": save(half, folder / f"{stem}-half.jpg"),
        "recompressed": save(img, folder / f"{stem}-q35.jpg", quality=35),
        "png": save(img, folder / f"{stem}.png"),
        "rotated90": save(img.transpose(Image.Transpose.ROTATE_90), folder / f"{stem}-rot90.jpg"),
        "mirrored": save(
            img.transpose(Image.Transpose.FLIP_LEFT_RIGHT), folder / f"{stem}-mirror.jpg"
        ),
        "exif_rotated": exif_rotated(img, folder / f"{stem}-exif6.jpg"),
        "brighter": save(ImageEnhance.Brightness(img).enhance(1.2), folder / f"{stem}-bright.jpg"),
    }


def always_die(x: int) -> int:
    """For worker-crash tests: a 'decoder' that kills its process on every input."""
    import os

    os._exit(3)


def double_or_die(x: int) -> int:
    """For worker-crash tests: a 'decoder' that kills its process on one input."""
    if x == 13:
        import os

        os._exit(3)
    return x * 2


def meet_another_worker(folder: str) -> int:
    """For the test that a few items still reach every worker: says which process it
    runs in, then waits (up to 20 s) until a second process has said so too."""
    import os
    import time

    open(os.path.join(folder, str(os.getpid())), "w").close()
    deadline = time.monotonic() + 20
    while len(os.listdir(folder)) < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    return os.getpid()


def double_or_hang(x: int) -> int:
    """For stuck-worker tests: a 'decoder' that never returns on one input."""
    if x == 13:
        import time

        while True:
            time.sleep(3600)
    return x * 2


def busy_photo(seed: int, size: tuple[int, int] = (800, 600)) -> Image.Image:
    """A detailed 'photo' (many small shapes): cropping it changes its whole-picture hash
    as much as cropping a real photo does, which the smooth `photo` does not."""
    rng = random.Random(seed * 7919)
    img = photo(seed, size)
    draw = ImageDraw.Draw(img)
    w, h = size
    for _ in range(60):
        x, y = rng.randrange(w), rng.randrange(h)
        r = rng.randrange(w // 40, w // 10)
        colour = tuple(rng.randrange(256) for _ in range(3))
        if rng.random() < 0.5:
            draw.ellipse((x - r, y - r, x + r, y + r), fill=colour)
        else:
            draw.rectangle((x - r, y - r // 2, x + r, y + r // 2), fill=colour)
    return img


def logged_double(item: tuple[str, int]) -> int:
    """For read-ahead tests: a 'decoder' that notes every call in the file the item
    names, and kills its process on 13 when that file's name says "die"."""
    import os

    log, x = item
    if x == 13 and "die" in os.path.basename(log):
        os._exit(3)
    with open(log, "a") as fh:
        fh.write(f"{x}\n")
    return x * 2


def video(
    path: Path,
    seed: int,
    size: tuple[int, int] = (320, 240),
    seconds: float = 3.0,
    fps: int = 10,
    codec: str = "mpeg4",
    bit_rate: int = 2_000_000,
    turn: int = 0,
    skip: float = 0.0,
    backwards: bool = False,
) -> Path:
    """A short video drawn with Pillow and encoded by PyAV: a busy scene panning by with
    a red ball crossing it, distinct per seed; `turn` the pixels (degrees); `skip` this
    fraction of it, cut off its start (or its end, negative); `backwards`: panned the
    other way."""
    import av

    path.parent.mkdir(parents=True, exist_ok=True)
    w, h = size
    scene = busy_photo(seed, (w * 2, h))
    frames = int(seconds * fps)
    with av.open(str(path), "w") as out:
        stream = out.add_stream(codec, rate=fps)
        stream.width, stream.height = (h, w) if turn in (90, 270) else (w, h)
        stream.pix_fmt, stream.bit_rate = "yuv420p", bit_rate
        first = int(frames * skip) if skip > 0 else 0
        last = frames + int(frames * skip) if skip < 0 else frames
        for i in range(first, last):
            x = int((frames - i if backwards else i) * w / frames)
            img = scene.crop((x, 0, x + w, h))
            ball = (i * 7 * w // 320) % w
            ImageDraw.Draw(img).ellipse(
                (ball, h // 6, ball + w // 8, h // 6 + w // 8), fill=(250, 30, 30)
            )
            if turn:
                img = img.rotate(turn, expand=True)
            out.mux(stream.encode(av.VideoFrame.from_image(img)))
        out.mux(stream.encode())
    return path
