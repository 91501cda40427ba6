"""Stress: a quarantining scan raced by many commands and a daemon start (issue 22).

    python benchmarks/move_race.py [--pairs 60] [--commands 20] [--rounds 3]
                                   [--workdir /tmp/wd-race]

Each round makes a folder of `--pairs` photos, each with a smaller copy, and starts a
`watcherd scan` with `action = "quarantine"`. While it moves the copies, `--commands`
other commands start at staggered moments (`status`, `quarantine list`, `restore
--all`, in turn) and a daemon starts on the same index and stops again. When all have
ended it takes an inventory by sha256: every photo's bytes exactly once in the folder
or the quarantine, every index row that says active or quarantined at an existing file
with its bytes, and no move left half done. Prints what it saw; exits 1 on any loss.

tests/test_move_race.py runs one small round of the same.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import random
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

import numpy as np
from PIL import Image

COMMANDS = (["status"], ["quarantine", "list"], ["restore", "--all"])


def picture(seed: int, size=(480, 360)) -> Image.Image:
    """A photo-like picture of its own for each seed: a smooth random field."""
    rng = np.random.default_rng(seed)
    field = Image.fromarray(rng.integers(0, 256, (6, 8, 3), dtype=np.uint8), "RGB")
    return field.resize(size, Image.Resampling.BICUBIC)


def make_folder(lib: Path, pairs: int, seed: int) -> None:
    for i in range(pairs):
        img = picture(seed * 100_000 + i)
        folder = lib / f"day{i % 7}"
        folder.mkdir(parents=True, exist_ok=True)
        img.save(folder / f"IMG_{i:04d}.jpg", quality=92)
        (lib / "sent").mkdir(exist_ok=True)
        img.resize((240, 180)).save(lib / "sent" / f"copy_{i:04d}.jpg", quality=80)


def contents(*folders: Path) -> Counter:
    out: Counter = Counter()
    for folder in folders:
        for p in folder.rglob("*") if folder.exists() else ():
            if p.is_file():
                out[hashlib.sha256(p.read_bytes()).hexdigest()] += 1
    return out


def inventory(db: Path, lib: Path, qdir: Path, expected: Counter) -> list[str]:
    """What is wrong after the race (empty: nothing)."""
    problems = []
    found = contents(lib, qdir)
    for sha, n in expected.items():
        if found[sha] != n:
            problems.append(f"{sha[:12]}: {found[sha]} copies, expected {n}")
    for sha in found.keys() - expected.keys():
        problems.append(f"{sha[:12]}: a file nobody put there ({found[sha]})")
    con = sqlite3.connect(db)
    rows = con.execute(
        "SELECT path, status, sha256 FROM files WHERE status IN ('active', 'quarantined')"
    ).fetchall()
    for path, status, sha in rows:
        p = Path(path)
        if not p.is_file():
            problems.append(f"index says {status} at {path}, where nothing is")
        elif sha and hashlib.sha256(p.read_bytes()).hexdigest() != sha:
            problems.append(f"index row {path} does not match its bytes")
    intents = con.execute("SELECT count(*) FROM moves WHERE state = 'intent'").fetchone()[0]
    if intents:
        problems.append(f"{intents} moves left half done")
    con.close()
    return problems


def watcherd(*args: str) -> list[str]:
    return [sys.executable, "-m", "watcherd", *args]


def race(workdir: Path, pairs: int, commands: int, seed: int = 1) -> dict:
    """One round; returns counts and the problems found."""
    lib, qdir, db = workdir / "lib", workdir / "Q", workdir / "index.sqlite3"
    make_folder(lib, pairs, seed)
    expected = contents(lib)
    config = workdir / "config.toml"
    config.write_text(
        f'roots = ["{lib}"]\naction = "quarantine"\nquarantine_dir = "{qdir}"\n'
        "workers = 1\nsettle_seconds = 0.3\n"
    )
    common = ["--config", str(config), "--db", str(db)]
    quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.PIPE, "text": True}
    scan = subprocess.Popen(watcherd(*common, "scan"), **quiet)
    rng = random.Random(seed)
    failures: list[str] = []

    def one(k: int) -> None:
        time.sleep(rng.random() * 1.5)  # staggered over the scan, not a synchronisation
        proc = subprocess.run(watcherd(*common, *COMMANDS[k % len(COMMANDS)]), **quiet)
        if proc.returncode not in (0, 1) or "Traceback" in proc.stderr:
            failures.append(f"{COMMANDS[k % len(COMMANDS)]}: {proc.stderr.strip()[-300:]}")

    threads = [threading.Thread(target=one, args=(k,)) for k in range(commands)]
    for t in threads:
        t.start()
    daemon = subprocess.Popen(watcherd(*common, "run"), **quiet)
    for t in threads:
        t.join()
    scan_err = scan.communicate(timeout=600)[1]
    if scan.returncode != 0 or "Traceback" in scan_err:
        failures.append(f"scan exited {scan.returncode}: {scan_err.strip()[-300:]}")
    daemon.send_signal(signal.SIGTERM)
    daemon_err = daemon.communicate(timeout=60)[1]
    if "Traceback" in daemon_err:
        failures.append(f"daemon: {daemon_err.strip()[-300:]}")
    # whatever is still journalled as under way is recovered by the next writer
    subprocess.run(watcherd(*common, "restore", "--all"), **quiet)
    con = sqlite3.connect(db)
    moved = con.execute("SELECT count(*) FROM moves WHERE state = 'done'").fetchone()[0]
    con.close()
    return {
        "files": sum(expected.values()),
        "moves done": moved,
        "command failures": failures,
        "problems": inventory(db, lib, qdir, expected),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pairs", type=int, default=60)
    parser.add_argument("--commands", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--workdir", type=Path)
    args = parser.parse_args()
    base = args.workdir or Path(tempfile.mkdtemp(prefix="wd-race-"))
    lost = 0
    for r in range(args.rounds):
        work = base / f"round{r}"
        work.mkdir(parents=True, exist_ok=True)
        start = time.monotonic()
        result = race(work, args.pairs, args.commands, seed=r + 1)
        lost += len(result["problems"])
        print(
            f"round {r + 1}: {result['files']} files, {result['moves done']} moves done, "
            f"{len(result['command failures'])} command failures, "
            f"{len(result['problems'])} problems, {time.monotonic() - start:.1f} s"
        )
        for line in result["command failures"] + result["problems"]:
            print("   ", line)
    print("every file exactly once, every row at its file" if not lost else f"{lost} problems")
    sys.exit(1 if lost else 0)


if __name__ == "__main__":
    os.environ.setdefault("PYTHONFAULTHANDLER", "1")
    main()
