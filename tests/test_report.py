"""`watcherd report`: the HTML gallery, filters on every format, the terminal table."""

from __future__ import annotations

import io
import json
import os
import shlex
import shutil
import subprocess
import sys
import time
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote

import pytest
from conftest import invoke
from helpers import photo, save
from PIL import Image, ImageStat
from rich.console import Console

from watcherd import report
from watcherd.index import Index


def library(tmp_path: Path) -> tuple[str, Path, Path]:
    """Two roots scanned for real: copies in `Phone` are quarantined, the `Camera`
    root is protected (its copies only flagged). Returns (db, camera, phone)."""
    camera, phone = tmp_path / "Camera", tmp_path / "Phone"
    for s in range(3):
        img = photo(300 + s, (800, 600))
        save(img, camera / f"IMG_{s}.jpg")
        save(img.resize((400, 300)), phone / f"IMG-WA{s}.jpg", quality=70)
        if s == 0:
            save(img.resize((600, 450)), camera / "IMG_0 small.jpg")
    for s in range(4):
        save(photo(400 + s), camera / f"other_{s}.jpg")
    cfg = Path(os.environ["XDG_CONFIG_HOME"]) / "watcherd" / "config.toml"  # the default place
    cfg.parent.mkdir(parents=True, exist_ok=True)
    cfg.write_text(
        f'action = "quarantine"\nquarantine_dir = "{tmp_path / "q"}"\n'
        f'roots = [{{ path = "{camera}", protect = true }}, "{phone}"]\n'
    )
    db = str(tmp_path / "index.sqlite3")
    invoke("--db", db, "scan")
    return db, camera, phone


class Page(HTMLParser):
    """The groups of the HTML report: for each, the file names and restore commands."""

    def __init__(self) -> None:
        super().__init__()
        self.groups: list[dict] = []
        self.external: list[str] = []
        self.links: list[str] = []
        self.images = 0
        self._in: str | None = None

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        cls = a.get("class") or ""
        if tag == "section" and "group" in cls.split():
            self.groups.append(
                {"names": [], "restore": [], "bytes": int(a["data-bytes"]),
                 "date": int(a["data-date"])}
            )  # fmt: skip
        elif tag == "div" and cls == "name":
            self._in = "names"
        elif tag == "code" and cls == "restore":
            self._in = "restore"
        if tag == "img":
            self.images += 1
            assert a["src"].startswith("data:image/jpeg;base64,"), a["src"][:40]
        if tag == "a" and a.get("href", "").startswith("file://"):
            self.links.append(a["href"])  # opens a photo: a link, not an asset the page needs
        else:
            for key in ("src", "href"):
                if key in a and not a[key].startswith(("data:", "#")):
                    self.external.append(a[key])
        if tag in ("link", "script") and ("src" in a or "href" in a):
            self.external.append(str(a))

    def handle_endtag(self, tag):
        self._in = None if tag in ("div", "code") else self._in

    def handle_data(self, data):
        if self._in and self.groups:
            self.groups[-1][self._in].append(data)


def test_html_has_every_group_and_working_restore_commands(tmp_path):
    db, _, phone = library(tmp_path)
    data = json.loads(invoke("--db", db, "report", "--format", "json").stdout)
    out = tmp_path / "report.html"
    invoke("--db", db, "report", "--format", "html", "-o", str(out))
    page = Page()
    page.feed(out.read_text())
    assert page.external == [], "self-contained: no external assets"
    # every thumbnail opens its file, where it is now (a quarantined copy: in quarantine)
    assert len(page.links) == page.images
    for link in page.links:
        assert Path(unquote(link.removeprefix("file://"))).exists(), link
    by_original: dict[str, set[str]] = {}
    for d in data["duplicates"]:
        by_original.setdefault(d["original"], set()).add(Path(d["path"]).name)
    assert len(page.groups) == len(by_original) == 3
    assert page.images == len(data["duplicates"]) + len(by_original), "every photo pictured"
    for original, names in by_original.items():
        group = next(g for g in page.groups if Path(original).name in g["names"])
        assert set(group["names"]) == names | {Path(original).name}
    sizes = [g["bytes"] for g in page.groups]
    assert sizes == sorted(sizes, reverse=True), "most space first"
    quarantined = [d for d in data["duplicates"] if d["quarantined_path"]]
    commands = [c for g in page.groups for c in g["restore"]]
    assert len(quarantined) == 3 and len(commands) == 3
    for cmd in commands:  # each command works as copied from the page
        argv = shlex.split(cmd)
        assert argv[0] == "watcherd"
        subprocess.run([sys.executable, "-m", "watcherd", *argv[1:]], check=True, timeout=60)
    assert all(Path(d["path"]).exists() for d in quarantined)
    assert sorted(p.name for p in phone.iterdir()) == ["IMG-WA0.jpg", "IMG-WA1.jpg", "IMG-WA2.jpg"]


def test_html_without_stored_thumbnails_reads_the_files(tmp_path):
    """An index from before thumbnails were stored still gets pictures."""
    db, _, _ = library(tmp_path)
    with Index(db, writer=True) as idx:
        idx.session.connection().exec_driver_sql("DELETE FROM thumbnails")
        idx.commit()
    out = tmp_path / "r.html"
    made = invoke("--db", db, "report", "--format", "html", "-o", str(out))
    assert "4 photos were indexed before thumbnails were stored" in made.stderr
    assert "scan --rehash" in made.stderr
    page = Page()
    page.feed(out.read_text())
    assert page.images == 3 + 4
    invoke("--db", db, "scan", "--rehash")
    again = invoke("--db", db, "report", "--format", "html", "-o", str(out))
    assert "before thumbnails" not in again.stderr


def test_filters_apply_to_every_format(tmp_path):
    db, camera, phone = library(tmp_path)

    def rows(*args: str) -> list[dict]:
        return json.loads(invoke("--db", db, "report", "--format", "json", *args).stdout)[
            "duplicates"
        ]

    everything = rows()
    assert len(everything) == 4
    assert {d["action"] for d in rows("--action", "quarantined")} == {"quarantined"}
    assert len(rows("--action", "flagged")) == 1
    assert [d["kind"] for d in rows("--kind", "exact")] == []
    assert len(rows("--kind", "near")) == 4
    assert len(rows("--limit", "2")) == 2
    assert rows("--since", "2000-01-01") == everything
    assert rows("--since", "2999-01-01") == []
    # a group shows under a root where either its copy or its kept file is
    only_phone = rows("--root", str(phone))
    assert len(only_phone) == 3 and {Path(d["path"]).parent for d in only_phone} == {phone}
    assert len(rows("--root", str(camera))) == 4
    assert rows("--root", str(camera / "nowhere")) == []
    csv_lines = invoke("--db", db, "report", "--format", "csv", "--limit", "2").stdout
    assert len(csv_lines.strip().splitlines()) == 1 + 2
    table = invoke("--db", db, "report", "--action", "flagged").stdout
    assert "IMG_0 small.jpg" in table and "IMG-WA" not in table
    html = invoke("--db", db, "report", "--format", "html", "--action", "quarantined").stdout
    page = Page()
    page.feed(html)
    assert len(page.groups) == 3 and all(len(g["restore"]) == 1 for g in page.groups)
    assert "IMG_0 small.jpg" not in html


def test_terminal_table_fits_80_columns_and_pipes_get_plain_text(tmp_path):
    deep = tmp_path / ("very long folder name " * 4).strip() / "and deeper still"
    db, _, phone = library(deep)
    with Index(db) as idx:
        data = report.build(idx)
    console = Console(file=io.StringIO(), width=80, force_terminal=True, color_system="standard")
    report.print_table(data, console)
    out = console.file.getvalue()
    plain = Console(file=io.StringIO(), width=80, force_terminal=True, color_system=None)
    report.print_table(data, plain)
    lines = plain.file.getvalue().splitlines()
    assert "\x1b[" in out, "styled on a terminal"
    assert max(len(line) for line in lines) <= 80, "\n".join(lines)
    assert any("…" in line for line in lines), "long paths shortened in the middle"
    assert sum("IMG-WA" in line for line in lines) == 3
    assert "4 duplicates in 3 groups" in lines[-2] and "reclaimable" in lines[-1]
    piped = invoke("--db", db, "report").stdout
    assert "\x1b[" not in piped and "…" not in piped
    for s in range(3):
        assert str(phone / f"IMG-WA{s}.jpg") in piped, "whole paths into a pipe"


def test_report_written_to_a_file_and_open_needs_html(tmp_path):
    db, _, _ = library(tmp_path)
    out = tmp_path / "r.json"
    invoke("--db", db, "report", "--format", "json", "-o", str(out))
    assert len(json.loads(out.read_text())["duplicates"]) == 4
    bad = invoke("--db", db, "report", "--open", check=False)
    assert bad.returncode == 2 and "--format html" in bad.stderr


def test_open_hands_the_html_to_the_desktop(tmp_path):
    db, _, _ = library(tmp_path)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    opener = bin_dir / "xdg-open"  # stands in for the desktop: records what it was given
    opener.write_text(f'#!/bin/sh\necho "$1" > {tmp_path / "opened"}\n')
    opener.chmod(0o755)
    env = {"PATH": f"{bin_dir}:{os.environ['PATH']}"}
    invoke("--db", db, "report", "--format", "html", "--open", env=env)
    deadline = time.monotonic() + 20
    while not (tmp_path / "opened").exists():
        assert time.monotonic() < deadline, "xdg-open was not run"
        time.sleep(0.05)
    opened = Path((tmp_path / "opened").read_text().strip())
    assert opened.suffix == ".html" and "watcherd report" in opened.read_text()


def chromium() -> str:
    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    if exe is None:
        pytest.skip("chromium is not installed (Debian package chromium; .ci/run installs it)")
    return exe


@pytest.mark.parametrize("width", [412, 1280])
def test_html_renders_in_a_real_browser(tmp_path, width):
    """Rendered by headless Chromium at a phone's and a desktop's width: a screenshot of
    the right size that shows pictures, not a blank or broken page."""
    db, _, _ = library(tmp_path)
    out = tmp_path / "report.html"
    invoke("--db", db, "report", "--format", "html", "-o", str(out))
    shot = tmp_path / "shot.png"
    subprocess.run(
        [chromium(), "--headless", "--no-sandbox", "--disable-gpu",
         "--disable-background-networking", "--hide-scrollbars",
         f"--user-data-dir={tmp_path / 'profile'}",
         f"--screenshot={shot}", f"--window-size={width},1400", out.as_uri()],
        check=True, capture_output=True, timeout=120,
    )  # fmt: skip
    with Image.open(shot) as im:
        assert im.size == (width, 1400)
        rgb = im.convert("RGB")
    grey = rgb.convert("L")
    assert ImageStat.Stat(grey).stddev[0] > 20, "not a blank page"
    colours = rgb.quantize(64).getcolors()
    assert len(colours) > 20, "the photos are drawn"
    # the kept photo of the first card is on screen: its pixels are not background
    top = rgb.crop((0, 0, width, 700))
    background = max(top.getcolors(1 << 20))[1]
    differs = sum(n for n, c in top.getcolors(1 << 20) if c != background)
    assert differs > 0.2 * width * 700


def test_sorting_in_a_real_browser(tmp_path):
    """The page's own script orders the cards: by date either way, by space."""
    db, _, _ = library(tmp_path)
    with Index(db, writer=True) as idx:  # three groups found on three different days
        conn = idx.session.connection()
        rows = conn.exec_driver_sql("SELECT id FROM decisions ORDER BY id").fetchall()
        for day, (decision_id,) in enumerate(rows, 1):
            conn.exec_driver_sql(
                f"UPDATE decisions SET decided_at = '2026-03-{day:02} 12:00:00.000000' "
                f"WHERE id = {decision_id}"
            )
        idx.commit()
    out = tmp_path / "report.html"
    invoke("--db", db, "report", "--format", "html", "-o", str(out))

    def order(fragment: str) -> list[tuple[int, int]]:
        dom = subprocess.run(
            [chromium(), "--headless", "--no-sandbox", "--disable-gpu",
             "--disable-background-networking", f"--user-data-dir={tmp_path / 'profile'}",
             "--dump-dom", out.as_uri() + fragment],
            check=True, capture_output=True, text=True, timeout=120,
        ).stdout  # fmt: skip
        page = Page()
        page.feed(dom)
        return [(g["bytes"], g["date"]) for g in page.groups]

    by_space = order("")
    assert [b for b, _ in by_space] == sorted((b for b, _ in by_space), reverse=True)
    oldest = order("#sort=date-asc")
    newest = order("#sort=date-desc")
    assert [d for _, d in oldest] == sorted(d for _, d in oldest)
    assert len({d for _, d in oldest}) == 3, "three different days"
    assert newest == oldest[::-1]
