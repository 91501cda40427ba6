"""The HTML report: one self-contained page with the duplicates side by side.

A table says two files match; only the pictures convince a person. Each group is a
card with the kept photo and its copies next to each other, their facts, and for a
quarantined copy the exact command that brings it back. Thumbnails are the ones stored
at fingerprinting time, embedded as data URIs, so the file can be mailed, opened on a
phone or kept as a record without anything beside it.
"""

from __future__ import annotations

import base64
import shlex
from datetime import datetime
from html import escape as _escape
from pathlib import Path

from .fingerprint import thumbnail_of
from .models import File
from .pathtext import file_url, shown
from .report import Report, _home, groups_of, human_size

CSS = """
:root { color-scheme: light dark; --fg: #1d1d1f; --bg: #f5f5f7; --card: #fff;
  --muted: #6e6e73; --line: #d2d2d7; --kept: #1a7f37; --moved: #b35900; --code: #eef; }
@media (prefers-color-scheme: dark) { :root { --fg: #f5f5f7; --bg: #161617;
  --card: #232326; --muted: #a1a1a6; --line: #3a3a3d; --code: #2c2c44; } }
* { box-sizing: border-box; }
body { margin: 0; padding: 12px; font: 14px/1.4 system-ui, -apple-system, "Segoe UI",
  Roboto, sans-serif; color: var(--fg); background: var(--bg); }
header { max-width: 1100px; margin: 0 auto 12px; }
h1 { font-size: 20px; margin: 4px 0 8px; }
.totals { display: flex; flex-wrap: wrap; gap: 8px; margin: 0; padding: 0; }
.totals div { background: var(--card); border: 1px solid var(--line); border-radius: 8px;
  padding: 6px 10px; }
.totals dt { font-size: 12px; color: var(--muted); }
.totals dd { margin: 0; font-size: 18px; font-weight: 600; }
.sort { margin: 10px 0 0; color: var(--muted); }
.sort button { font: inherit; padding: 4px 10px; border-radius: 6px;
  border: 1px solid var(--line); background: var(--card); color: var(--fg); cursor: pointer; }
.sort button[aria-pressed="true"] { border-color: var(--fg); font-weight: 600; }
main { max-width: 1100px; margin: 0 auto; }
.group { background: var(--card); border: 1px solid var(--line); border-radius: 10px;
  padding: 10px; margin: 0 0 12px; }
.group > h2 { font-size: 14px; margin: 0 0 8px; color: var(--muted); font-weight: 500; }
.photos { display: flex; flex-wrap: wrap; gap: 10px; }
.photos > div { width: 200px; max-width: calc(50% - 5px); }
figure { margin: 0; }
figure a.open, figure .none { display: flex; align-items: center; justify-content: center;
  height: 150px; background: var(--bg); border-radius: 6px; }
figure img { display: block; max-width: 100%; max-height: 150px; }
figure .none { color: var(--muted); }
figcaption { font-size: 12px; margin-top: 4px; overflow-wrap: anywhere; }
figcaption .name { font-weight: 600; font-size: 13px; }
figcaption .muted { color: var(--muted); }
.badge { display: inline-block; padding: 0 6px; border-radius: 4px; font-size: 11px;
  font-weight: 600; border: 1px solid currentColor; margin: 2px 4px 2px 0; }
.kept .badge { color: var(--kept); }
.quarantined .badge.action { color: var(--moved); }
code.restore { display: block; margin-top: 4px; padding: 4px; background: var(--code);
  border-radius: 4px; font-size: 11px; overflow-wrap: anywhere; user-select: all; }
footer { max-width: 1100px; margin: 16px auto; color: var(--muted); font-size: 12px; }
"""

SCRIPT = """
function sortGroups(key, descending) {
  const main = document.getElementById('groups');
  const cards = Array.from(main.children);
  cards.sort((a, b) => (Number(b.dataset[key]) - Number(a.dataset[key])) *
                       (descending ? 1 : -1));
  cards.forEach(c => main.appendChild(c));
  document.querySelectorAll('.sort button').forEach(b =>
    b.setAttribute('aria-pressed', String(b.dataset.key === key &&
                                          b.dataset.desc === String(descending))));
  history.replaceState(null, '', '#sort=' + key + '-' + (descending ? 'desc' : 'asc'));
}
// a link or a reload keeps the order chosen: #sort=date-asc, #sort=bytes-desc, ...
window.addEventListener('DOMContentLoaded', () => {
  const m = location.hash.match(/^#sort=(bytes|date)-(desc|asc)$/);
  if (m) sortGroups(m[1], m[2] === 'desc');
});
"""


def escape(text: str) -> str:
    """HTML-escaped, and a name that is not UTF-8 shown with replacement characters
    (the page is UTF-8; the real name is in the index and the JSON report)."""
    return _escape(shown(text))


def _data_uri(jpeg: bytes | None) -> str | None:
    return "data:image/jpeg;base64," + base64.b64encode(jpeg).decode() if jpeg else None


def _when(f: File) -> str:
    if f.taken_at:
        return f"taken {f.taken_at[:16]}"
    return f"modified {datetime.fromtimestamp(f.mtime_ns / 1e9):%Y-%m-%d %H:%M}"


def _figure(
    f: File,
    path: str,
    thumb: str | None,
    badges: list[str],
    extra: str = "",
    duration: float | None = None,
) -> str:
    """A photo with what the user needs to judge it; its thumbnail (never drawn larger
    than it is stored) opens the file where it is now (`f.path`: in the quarantine for a
    quarantined copy, which `path` shows where it came from)."""
    p = Path(path)
    folder = _home(str(p.parent))
    size = f"{f.width}×{f.height}" if f.width and f.height else (f.format or "")
    if duration is not None:  # a video: how long it plays
        minutes, seconds = divmod(round(duration), 60)
        size = f"{size} · {minutes}:{seconds:02d}"
    if thumb:
        img = (
            f'<a class="open" href="{escape(file_url(f.path))}" title="open the file">'
            f'<img src="{thumb}" alt="{escape(p.name)}" loading="lazy"></a>'
        )
    else:  # a video, or a picture that cannot be read: no preview, and no warning either
        what = "video" if p.suffix.lower() in VIDEO_SUFFIXES else "no preview"
        img = f'<div class="none">{what}</div>'

    return (
        f"<figure>{img}<figcaption>"
        f'<div class="name">{escape(p.name)}</div>'
        f'<div class="muted" title="{escape(str(p.parent))}">{escape(folder)}</div>'
        f"<div>{escape(size)} · {human_size(f.size)} · {escape(_when(f))}</div>"
        f"<div>{''.join(badges)}</div>{extra}</figcaption></figure>"
    )


VIDEO_SUFFIXES = {".mp4", ".mov", ".mkv", ".webm", ".3gp", ".avi", ".m4v"}


def _badge(text: str, cls: str = "") -> str:
    return f'<span class="badge {cls}">{escape(text)}</span>'


def pictured(report: Report) -> set[int]:
    """Ids of the files the page shows: every kept file and every copy."""
    return {d["kept_id"] for d in report.rows} | {d["file_id"] for d in report.rows}


def _card(
    kept: File,
    dups: list[dict],
    files: dict[int, File],
    thumbs: dict[int, str | None],
    restore_command: list[str],
    durations: dict[int, float],
) -> str:
    """One group: its kept file and its copies (or similar shots), newest first."""
    similar = all(d["kind"] == "similar" for d in dups)
    figures = [
        f'<div class="kept">{_figure(kept, kept.path, thumbs[kept.id], [_badge("shot" if similar else "kept")], duration=durations.get(kept.id))}</div>'  # noqa: E501
    ]
    for d in sorted(dups, key=lambda d: d["path"]):
        f = files[d["file_id"]]
        badges = [_badge(d["kind"]), _badge(f"distance {d['distance']}")]
        if d["kind"] != "similar":
            badges.append(_badge(d["action"], "action"))
        extra = ""
        if d["quarantined_path"]:
            cmd = shlex.join([*restore_command, "restore", d["quarantined_path"]])
            extra = f'<code class="restore">{escape(cmd)}</code>'
        cls = "quarantined" if d["quarantined_path"] else "flagged"
        figures.append(
            f'<div class="{cls}">{_figure(f, d["path"], thumbs[f.id], badges, extra, d["duration"])}</div>'  # noqa: E501
        )
    size = sum(d["size"] for d in dups)
    newest = max(datetime.fromisoformat(d["detected_at"]).timestamp() for d in dups)
    n = len(dups)
    title = (
        f"similar shots, reported only · {n + 1} photos"
        if similar
        else f"{n} {'copy' if n == 1 else 'copies'} · {human_size(size)} · "
        f"found {datetime.fromtimestamp(newest):%Y-%m-%d %H:%M}"
    )
    return (
        f'<section class="group" data-bytes="{size}" data-date="{newest:.0f}">'
        f'<h2>{escape(title)}</h2><div class="photos">{"".join(figures)}</div></section>'
    )


def render(
    report: Report,
    stored: dict[int, bytes],
    restore_command: list[str] | None = None,
    generated: datetime | None = None,
) -> str:
    """The whole page as a string. `stored` holds the thumbnails the index has for the
    files pictured (Index.thumbnails of `pictured(report)`); the others are made from
    the files. `restore_command` is how the user runs watcherd (with --db or --config
    when those were given), so the commands shown work as they are copied."""
    restore_command = restore_command or ["watcherd"]
    generated = generated or datetime.now()
    files: dict[int, File] = report.files
    groups = groups_of(report)
    thumbs: dict[int, str | None] = {}
    for fid in pictured(report):
        # files indexed before thumbnails were stored: made now, from the file itself
        thumbs[fid] = _data_uri(stored.get(fid) or thumbnail_of(files[fid].path))

    s = report["summary"]
    cards = [
        _card(files[kept], dups, files, thumbs, restore_command, report.durations)
        for kept, dups in groups
    ]
    totals = [
        ("groups", str(s["groups"])),
        ("duplicates", str(s["duplicates"])),
        ("reclaimable", human_size(s["reclaimable_bytes"])),
        ("in quarantine", human_size(s["reclaimed_bytes"])),
        ("similar shots", str(s["similar"])),
        ("files indexed", str(s["files"])),
    ]
    totals_html = "".join(f"<div><dt>{k}</dt><dd>{escape(v)}</dd></div>" for k, v in totals)
    buttons = "".join(
        f'<button type="button" data-key="{key}" data-desc="{str(desc).lower()}" '
        f'aria-pressed="{"true" if first else "false"}" '
        f"onclick=\"sortGroups('{key}', {str(desc).lower()})\">{label}</button> "
        for key, desc, label, first in (
            ("bytes", True, "Most space", True),
            ("date", True, "Newest", False),
            ("date", False, "Oldest", False),
        )
    )
    empty = "<p>No duplicates found.</p>" if not cards else ""
    return (
        "<!doctype html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>watcherd report</title><style>{CSS}</style>"
        f"<script>{SCRIPT}</script></head><body>"
        f'<header><h1>watcherd report</h1><dl class="totals">{totals_html}</dl>'
        f'<p class="sort">Sort: {buttons}</p></header>'
        f'<main id="groups">{"".join(cards)}</main>{empty}'
        f"<footer>Generated {generated:%Y-%m-%d %H:%M} by watcherd. A quarantined copy "
        f"comes back with the command under it; <code>watcherd restore --all</code> "
        f"brings back everything.</footer></body></html>\n"
    )
