"""Screenshots and stickers drawn from a photo, for benchmarks/trust.py (issue 23).

Three screenshot layouts a phone produces, each 1080x2340 with a status bar and a
navigation bar:

- chat: an app bar, text bubbles and the photo in an image bubble at 20-40% of the
  screen, on the chat's own background: every chat screenshot shares its chrome;
- gallery: the photo fitted to the width on black, with the viewer's top and bottom
  bars over it;
- full screen: the photo shown full screen, the phone held the way the photo is, with
  the status and navigation bars drawn over it: fitted (black bars where the shapes
  differ, as a viewer shows it), or zoomed to fill the screen (cropped to its shape).

And a sticker: a round emoji-like sticker or a text label over 5-10% of the picture,
anywhere in it.
"""

from __future__ import annotations

import random

from PIL import Image, ImageDraw, ImageFont, ImageOps

W, H = 1080, 2340
STATUS, NAV = 80, 130


def _font(size: int) -> ImageFont.FreeTypeFont:
    return ImageFont.load_default(size=size)


def _status_bar(draw: ImageDraw.ImageDraw, rng: random.Random, dark: bool) -> None:
    ink = (250, 250, 250) if dark else (20, 20, 20)
    draw.text((40, 18), f"{rng.randrange(7, 23)}:{rng.randrange(60):02d}", fill=ink, font=_font(40))
    for k in range(3):  # signal, wifi, battery
        x = W - 220 + k * 60
        draw.rectangle((x, 28, x + 40, 56), outline=ink, width=4)


def _nav_bar(draw: ImageDraw.ImageDraw, dark: bool) -> None:
    top = H - NAV
    draw.rectangle((0, top, W, H), fill=(0, 0, 0) if dark else (245, 245, 245))
    ink = (200, 200, 200) if dark else (60, 60, 60)
    draw.polygon([(250, top + 65), (290, top + 40), (290, top + 90)], outline=ink, width=5)
    draw.ellipse((515, top + 40, 565, top + 90), outline=ink, width=5)
    draw.rectangle((790, top + 42, 836, top + 88), outline=ink, width=5)


def _words(rng: random.Random, n: int) -> str:
    vocab = "ok see you soon look at this haha nice where are you lol love it".split()  # noqa: SIM905
    return " ".join(rng.choice(vocab) for _ in range(n))


def chat(photo: Image.Image, seed: int) -> Image.Image:
    rng = random.Random(seed)
    img = Image.new("RGB", (W, H), (236, 229, 221))  # the chat wallpaper
    draw = ImageDraw.Draw(img)
    draw.rectangle((0, 0, W, STATUS + 150), fill=(7, 94, 84))
    _status_bar(draw, rng, dark=True)
    draw.ellipse((110, STATUS + 25, 210, STATUS + 125), fill=(180, 200, 200))
    draw.text((240, STATUS + 45), rng.choice(["Mum", "Sam", "Family", "Alex"]), fill="white",
              font=_font(48))  # fmt: skip
    # the photo at 20-40% of the screen, in an image bubble
    share = rng.uniform(0.2, 0.4)
    ratio = photo.width / photo.height
    pw = min(int((share * W * H * ratio) ** 0.5), W - 200)
    ph = int(pw / ratio)
    x0 = rng.choice([60, W - 60 - pw - 20])
    y0 = rng.randrange(STATUS + 400, max(STATUS + 401, H - NAV - ph - 300))
    bubble = (220, 248, 198) if x0 > 100 else (255, 255, 255)
    draw.rounded_rectangle((x0, y0, x0 + pw + 20, y0 + ph + 70), 24, fill=bubble)
    img.paste(photo.convert("RGB").resize((pw, ph)), (x0 + 10, y0 + 10))
    draw.text((x0 + pw - 120, y0 + ph + 20), "12:0" + str(rng.randrange(10)), fill=(120, 120, 120),
              font=_font(30))  # fmt: skip
    # text bubbles above and below it
    y = STATUS + 200
    while y < H - NAV - 140:
        if y0 - 130 < y < y0 + ph + 80:
            y = y0 + ph + 100
            continue
        mine = rng.random() < 0.5
        bw = rng.randrange(300, 800)
        bx = W - 40 - bw if mine else 40
        draw.rounded_rectangle((bx, y, bx + bw, y + 100), 24,
                               fill=(220, 248, 198) if mine else (255, 255, 255))  # fmt: skip
        draw.text((bx + 30, y + 28), _words(rng, bw // 90), fill=(30, 30, 30), font=_font(38))
        y += 130
    _nav_bar(draw, dark=False)
    return img


def gallery(photo: Image.Image, seed: int) -> Image.Image:
    rng = random.Random(seed)
    img = Image.new("RGB", (W, H), (0, 0, 0))
    ph = int(W * photo.height / photo.width)
    if ph > H - 400:
        ph = H - 400
    pw = int(ph * photo.width / photo.height)
    img.paste(photo.convert("RGB").resize((pw, ph)), ((W - pw) // 2, (H - ph) // 2))
    draw = ImageDraw.Draw(img)
    _status_bar(draw, rng, dark=True)
    draw.text((40, STATUS + 40), "<", fill="white", font=_font(60))
    draw.text(
        (140, STATUS + 50), f"IMG_2026{rng.randrange(10**4):04d}", fill="white", font=_font(40)
    )
    for k in range(4):  # share, edit, favourite, delete
        cx = 135 + k * 270
        draw.ellipse((cx - 30, H - NAV - 140, cx + 30, H - NAV - 80), outline="white", width=5)
    _nav_bar(draw, dark=True)
    return img


def full_screen_fitted(photo: Image.Image, seed: int) -> Image.Image:
    """The photo fitted to the screen, black where the shapes differ, the bars drawn
    over it: a viewer's full-screen mode."""
    return _held_its_way(photo, seed, lambda img, size: ImageOps.pad(img, size, color=(0, 0, 0)))


def full_screen(photo: Image.Image, seed: int) -> Image.Image:
    """The photo zoomed to fill the screen (cut to its shape), the bars drawn over it."""
    return _held_its_way(photo, seed, ImageOps.fit)


def _held_its_way(photo: Image.Image, seed: int, shaped) -> Image.Image:
    """The photo on the screen held the way the photo is (a portrait photo on the
    upright screen, a landscape one on the screen turned sideways), made to the
    screen's size by `shaped(image, size)`, with the status and navigation bars."""
    rng = random.Random(seed)
    upright = photo.height >= photo.width
    img = shaped(photo.convert("RGB"), (W, H) if upright else (H, W))
    if not upright:
        img = img.rotate(-90, expand=True)  # drawn as the upright screen, turned back below
    draw = ImageDraw.Draw(img)
    _status_bar(draw, rng, dark=True)
    _nav_bar(draw, dark=True)
    return img if upright else img.rotate(90, expand=True)


def sticker(photo: Image.Image, seed: int) -> Image.Image:
    """A round sticker or a text label over 5-10% of the picture, anywhere inside it."""
    rng = random.Random(seed)
    img = photo.convert("RGB").copy()
    w, h = img.size
    area = rng.uniform(0.05, 0.10) * w * h
    draw = ImageDraw.Draw(img)
    if rng.random() < 0.5:
        r = int((area / 3.14159) ** 0.5)
        x, y = rng.randrange(r, w - r), rng.randrange(r, h - r)
        draw.ellipse((x - r, y - r, x + r, y + r), fill=(250, 205, 40), outline=(120, 80, 0),
                     width=max(1, r // 15))  # fmt: skip
        e = max(2, r // 6)
        draw.ellipse((x - r // 2 - e, y - r // 3 - e, x - r // 2 + e, y - r // 3 + e), fill="black")
        draw.ellipse((x + r // 2 - e, y - r // 3 - e, x + r // 2 + e, y - r // 3 + e), fill="black")
        draw.arc((x - r // 2, y - r // 4, x + r // 2, y + r // 2), 20, 160, fill="black",
                 width=max(2, r // 10))  # fmt: skip
    else:
        lw = int((area * 3) ** 0.5)
        lh = int(area / lw)
        x, y = rng.randrange(0, w - lw), rng.randrange(0, h - lh)
        draw.rectangle((x, y, x + lw, y + lh), fill=(255, 255, 255))
        draw.text((x + lw // 10, y + lh // 4), rng.choice(["SALE", "wow!", "2026", "me :)"]),
                  fill=(200, 20, 60), font=_font(max(8, lh // 2)))  # fmt: skip
    return img
