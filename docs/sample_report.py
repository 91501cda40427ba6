"""Make the sample HTML report and its screenshot shown in the README (docs/report.png).

    python docs/sample_report.py [--photos ../shared/bench/photos/github-kodak-lossless-true-color]

Takes a few photos (the Kodak suite, released for unrestricted use, when it is beside
the project; pictures drawn with Pillow otherwise), makes the copies a phone sync
leaves behind (WhatsApp-size, rotated, mirrored, cropped, re-encoded), scans them with
`action = "quarantine"` for the phone folder, writes the HTML report and renders it with
headless Chromium.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from PIL import Image, ImageDraw, ImageOps

HERE = Path(__file__).resolve().parent
KODAK = HERE.parent.parent / "shared/bench/photos/github-kodak-lossless-true-color"


def drawn(seed: int) -> Image.Image:
    img = Image.new("RGB", (768, 512), (40 + seed * 30 % 200, 90, 160))
    d = ImageDraw.Draw(img)
    for i in range(14):
        x, y = (seed * 97 + i * 53) % 700, (seed * 31 + i * 71) % 450
        d.ellipse((x, y, x + 90, y + 70), ((i * 40) % 255, (seed * 60) % 255, 120))
    return img


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--photos", type=Path, default=KODAK)
    ap.add_argument("--out", type=Path, default=HERE / "report.png")
    ap.add_argument("--width", type=int, default=1100)
    ap.add_argument("--height", type=int, default=1250)
    args = ap.parse_args()
    sources = sorted(args.photos.glob("*.png"))[:6] if args.photos.is_dir() else []
    with tempfile.TemporaryDirectory() as tmp:
        t = Path(tmp)
        home = t / "home"
        pictures, phone = home / "Pictures", home / "WhatsApp Images"
        for d in (pictures, phone):
            d.mkdir(parents=True)
        images = [Image.open(p).convert("RGB") for p in sources] or [drawn(i) for i in range(6)]
        copies = [
            lambda im: im.resize((im.width // 2, im.height // 2)),
            lambda im: im.rotate(90, expand=True),
            ImageOps.mirror,
            lambda im: im.crop(
                (im.width // 20, im.height // 20, im.width * 19 // 20, im.height * 19 // 20)
            ),
            lambda im: ImageOps.grayscale(im).convert("RGB"),
        ]
        for i, img in enumerate(images):
            img.save(pictures / f"IMG_{2024 + i}.jpg", quality=92)
            for j, make in enumerate(copies[: 1 + i % 3]):
                make(img).save(phone / f"IMG-2025010{i}-WA000{j}.jpg", quality=70)
        (home / ".config/watcherd").mkdir(parents=True)
        (home / ".config/watcherd/config.toml").write_text(
            f'action = "quarantine"\nroots = [{{ path = "{pictures}", protect = true }}, '
            f'"{phone}"]\n'
        )
        env = {**os.environ, "HOME": str(home), "XDG_CONFIG_HOME": str(home / ".config"),
               "XDG_DATA_HOME": str(home / ".local/share")}  # fmt: skip
        run = [sys.executable, "-m", "watcherd"]
        subprocess.run([*run, "scan"], env=env, check=True, capture_output=True)
        html = t / "report.html"
        subprocess.run([*run, "report", "--format", "html", "-o", str(html)], env=env, check=True)
        chromium = shutil.which("chromium") or sys.exit("chromium is needed (apt install chromium)")
        subprocess.run(
            [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
             "--disable-background-networking", f"--user-data-dir={t / 'profile'}",
             f"--screenshot={args.out}", f"--window-size={args.width},{args.height}",
             html.as_uri()],
            check=True, capture_output=True,
        )  # fmt: skip
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
