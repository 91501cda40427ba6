"""Stress: a tree a thousand folders deep, scanned and watched (issue 22).

    python benchmarks/deep_tree.py [--levels 1000] [--workdir /tmp/wd-deep]

Makes `--levels` nested folders with a photo at the bottom, then times `watcherd scan`
of it, starts a daemon on it, drops a copy of the photo at the top and a new photo at
the bottom, and prints how the daemon watches the tree (watchdog's own walk recurses
and fails on such a tree; watcherd then reconciles it every poll_interval) and how
long each arrival took to be decided. Removes the tree at the end (shutil.rmtree
recurses too).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image


def picture(seed: int) -> Image.Image:
    rng = np.random.default_rng(seed)
    field = Image.fromarray(rng.integers(0, 256, (6, 8, 3), dtype=np.uint8), "RGB")
    return field.resize((480, 360), Image.Resampling.BICUBIC)


def deep_folder(top: Path, levels: int) -> Path:
    here = os.open(top, os.O_RDONLY)
    for _ in range(levels):
        os.mkdir("d", dir_fd=here)
        nxt = os.open("d", os.O_RDONLY, dir_fd=here)
        os.close(here)
        here = nxt
    os.close(here)
    return Path(str(top) + "/d" * levels)


def remove_deep(top: Path) -> None:
    stack, folders = [str(top)], []
    while stack:
        folder = stack.pop()
        folders.append(folder)
        with os.scandir(folder) as it:
            for entry in it:
                if entry.is_dir(follow_symlinks=False):
                    stack.append(entry.path)
                else:
                    os.unlink(entry.path)
    for folder in reversed(folders):
        os.rmdir(folder)


def watcherd(*args: str) -> list[str]:
    return [sys.executable, "-m", "watcherd", *args]


def wait_decided(log: Path, path: Path, deadline: float) -> dict | None:
    while time.monotonic() < deadline:
        for line in log.read_text().splitlines():
            try:
                event = json.loads(line)
            except ValueError:
                continue
            if event.get("path") == str(path) and event.get("event") in (
                "indexed",
                "duplicate",
                "error",
            ):
                return event
        time.sleep(0.1)
    return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--levels", type=int, default=1000)
    parser.add_argument("--workdir", type=Path)
    args = parser.parse_args()
    work = args.workdir or Path(tempfile.mkdtemp(prefix="wd-deep-"))
    root = work / "root"
    root.mkdir(parents=True, exist_ok=True)
    try:
        bottom = deep_folder(root, args.levels)
        picture(1).save(bottom / "deep.jpg", quality=90)
        config = work / "config.toml"
        config.write_text("settle_seconds = 0.3\npoll_interval = 2.0\nworkers = 2\n")
        common = ["--config", str(config), "--db", str(work / "index.sqlite3")]
        start = time.monotonic()
        scan = subprocess.run(watcherd(*common, "scan", "--json", str(root)), capture_output=True)
        took = time.monotonic() - start
        summary = json.loads(scan.stdout) if scan.returncode == 0 else None
        print(f"scan of {args.levels} levels: exit {scan.returncode}, {took:.2f} s, {summary}")
        log = work / "daemon.log"
        with open(log, "w") as fh:
            daemon = subprocess.Popen(
                watcherd(*common, "--log-format", "json", "run", str(root)), stderr=fh
            )
        deadline = time.monotonic() + 60
        while "ready" not in log.read_text() and time.monotonic() < deadline:
            time.sleep(0.05)
        ready = [json.loads(x) for x in log.read_text().splitlines() if '"ready"' in x]
        print("daemon watches it by:", ready[0]["methods"] if ready else "never ready")
        arrivals = [
            (root / "top.jpg", picture(1).resize((240, 180))),
            (bottom / "new.jpg", picture(2)),
        ]
        for path, img in arrivals:
            dropped = time.monotonic()
            img.save(path, quality=85)
            event = wait_decided(log, path, dropped + 60)
            seen = (
                "never"
                if event is None
                else f"{event['event']} after {time.monotonic() - dropped:.2f} s"
            )
            print(f"  {path.name} ({'top' if path.parent == root else 'bottom'}): {seen}")
        daemon.send_signal(signal.SIGTERM)
        print("daemon exit:", daemon.wait(timeout=30))
    finally:
        remove_deep(root)


if __name__ == "__main__":
    main()
