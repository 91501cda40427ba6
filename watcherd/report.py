"""Reports: what watcherd decided, as a table for people and JSON/CSV for tools.

The JSON shape is a contract (other tools parse it): one entry per redundant copy with
`path` (the redundant copy) and `original` (the copy its group keeps).
"""

from __future__ import annotations

import csv
import io
import os
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from .index import Index
from .models import QUARANTINED, File
from .pathtext import shown

if TYPE_CHECKING:
    from rich.console import Console

CSV_FIELDS = (
    "path", "original", "kind", "distance", "detected_at", "action", "quarantined_path", "size",
    "group", "transform", "matched_with", "machine", "original_machine",
)  # fmt: skip


@dataclass(frozen=True)
class Filters:
    since: datetime | None = None
    root: str | None = None
    kind: str | None = None
    action: str | None = None
    limit: int | None = None


@dataclass(frozen=True)
class Report:
    """What `watcherd report` shows. `duplicates` and `summary` are the JSON form
    (also read as report["duplicates"], report["summary"]); `rows` are the same entries
    with the ids of their files, `files` those files (for the table and the page)."""

    duplicates: list[dict]
    summary: dict
    rows: list[dict]
    files: dict[int, File]
    durations: dict[int, float]  # file id -> seconds, for the videos among them

    def __getitem__(self, key: str):
        if key not in ("duplicates", "summary"):
            raise KeyError(key)
        return getattr(self, key)


def build(index: Index, filters: Filters | None = None) -> Report:
    """The report, from a handful of bulk queries: a report over 10,000 duplicates
    takes a second or two."""
    filters = filters or Filters()
    rows = index.live_duplicates(
        since=filters.since,
        root=filters.root,
        kind=filters.kind,
        action=filters.action,
        limit=filters.limit,
    )
    roots = index.group_roots([r.id for _, r, _ in rows])
    files = {f.id: f for _, r, p in rows for f in (r, p)}
    files.update(index.files_by_id(set(roots.values()) - set(files)))
    sources = index.quarantine_sources(r.id for _, r, _ in rows if r.status == QUARANTINED)
    durations = index.video_durations(files)
    duplicates = []
    for decision, redundant, partner in rows:
        # a 'similar' pair has no kept copy: its original is simply the other picture
        kept = partner if decision.kind == "similar" else files[roots[redundant.id]]
        quarantined = redundant.status == QUARANTINED
        duplicates.append(
            {
                # where the copy belongs; `quarantined_path` says where it is now
                "path": sources.get(redundant.id, redundant.path)
                if quarantined
                else redundant.path,
                "original": kept.path,
                "kind": decision.kind,
                # measured to the file it was matched with, which is the kept one
                # unless it matched another copy of the group
                "distance": decision.distance,
                "matched_with": partner.path,
                "detected_at": decision.decided_at.isoformat(),
                # a similar shot is neither flagged nor moved: only reported
                "action": "reported" if decision.kind == "similar" else decision.action,
                "quarantined_path": redundant.path if quarantined else None,
                "size": redundant.size,  # bytes of the redundant copy
                "group": kept.id,  # shared by every row of one group, stable while it is kept
                "transform": decision.transform,  # how the copy is turned or cut, if it is
                "duration": durations.get(redundant.id),  # seconds, for a video
                "machine": redundant.machine,  # whose disk the copy is on (a shared index)
                "original_machine": kept.machine,
                "file_id": redundant.id,
                "kept_id": kept.id,
            }
        )
    counts = index.counts()
    copies = [d for d in duplicates if d["kind"] != "similar"]
    summary = {
        "duplicates": len(copies),
        "groups": len({d["original"] for d in copies}),
        "exact": sum(d["kind"] == "exact" for d in copies),
        "near": sum(d["kind"] == "near" for d in copies),
        "similar": len(duplicates) - len(copies),
        "flagged": sum(d["action"] == "flagged" for d in copies),
        "quarantined": sum(d["action"] == "quarantined" for d in copies),
        "reclaimable_bytes": sum(d["size"] for d in copies if d["action"] == "flagged"),
        "reclaimed_bytes": sum(d["size"] for d in copies if d["action"] == "quarantined"),
        "linked": sum(d["action"] == "linked" for d in copies),  # same bytes, now shared
        "linked_bytes": sum(d["size"] for d in copies if d["action"] == "linked"),
        "files": counts["files"],
        "errors": counts["errors"],
        "machines": sorted({f.machine for f in files.values()}),
    }
    return Report([_public(d) for d in duplicates], summary, duplicates, files, durations)


def groups_of(report: Report) -> list[tuple[int, list[dict]]]:
    """(kept file id, its duplicates) per group, the group reclaiming most space first."""
    groups: dict[int, list[dict]] = defaultdict(list)
    for d in report.rows:
        groups[d["kept_id"]].append(d)
    return sorted(groups.items(), key=lambda g: (-sum(d["size"] for d in g[1]), g[0]))


_PRIVATE = ("file_id", "kept_id")


def _public(d: dict) -> dict:
    return {k: v for k, v in d.items() if k not in _PRIVATE}


def human_size(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if abs(n) < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} TB"  # pragma: no cover


def to_json_data(report: Report) -> dict:
    return {"duplicates": report["duplicates"], "summary": report["summary"]}


def to_csv(report: Report) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=CSV_FIELDS, lineterminator="\n")
    writer.writeheader()
    for d in report.rows:  # a name that is not UTF-8 as text (JSON keeps it exact)
        writer.writerow({k: shown(d[k]) if k in _PATHS and d[k] else d[k] for k in CSV_FIELDS})
    return out.getvalue()


_PATHS = ("path", "original", "quarantined_path")


def _fit(path: str, width: int) -> str:
    """A path shortened in the middle to `width` characters, keeping the file name."""
    if len(path) <= width:
        return path
    name = path.rsplit("/", 1)[-1]
    if len(name) + 2 >= width:
        return "…" + name[-(width - 1) :]
    head = width - len(name) - 2
    return path[:head] + "…/" + name


def _home(path: str) -> str:
    home = os.path.expanduser("~")
    return "~" + path[len(home) :] if home != "/" and path.startswith(home + "/") else path


_COLUMNS = (("kind", 7), ("dist", 4), ("action", 11), ("size", 8))


def group_label(dups: list[dict]) -> str:
    """What a group's line says of it: "3 copies, 4.2 MB reclaimable" (the bytes its
    flagged copies take), what is in quarantine, and similar shots, which reclaim
    nothing."""
    copies = [d for d in dups if d["kind"] != "similar"]
    parts = []
    if copies:
        parts.append(f"{len(copies)} cop{'y' if len(copies) == 1 else 'ies'}")
        flagged = sum(d["size"] for d in copies if d["action"] == "flagged")
        moved = sum(d["size"] for d in copies if d["action"] == "quarantined")
        if flagged or not moved:
            parts.append(f"{human_size(flagged)} reclaimable")
        if moved:
            parts.append(f"{human_size(moved)} in quarantine")
        linked = sum(d["size"] for d in copies if d["action"] == "linked")
        if linked:
            parts.append(f"{human_size(linked)} saved by links")
    shots = len(dups) - len(copies)
    if shots:
        parts.append(f"{shots} similar shot{'s' if shots > 1 else ''}")
    return ", ".join(parts)


def table_lines(report: Report, width: int | None) -> list[tuple[str, str]]:
    """The table as (style, line) pairs: each kept file, its copies indented under it.

    With a width, paths are shortened (home as ~, the middle elided) so that no line is
    longer; without one (a pipe) they are printed whole.
    """
    fixed = sum(w + 1 for _, w in _COLUMNS) + 2
    room = None if width is None else max(20, width - fixed)
    show = (lambda p: _fit(_home(shown(p)), room)) if room is not None else shown
    path_w = room or 0
    cols = " ".join(
        f"{name:>{w}}" if name in ("dist", "size") else f"{name:<{w}}" for name, w in _COLUMNS
    )
    if room is not None:
        out = [("bold", f"{'kept file / duplicate':<{path_w + 2}} {cols}")]
    else:
        out = [("", f"  {cols}  path")]
    files = report.files
    # an index several machines share: each path says whose disk it is on
    on = _on if len(report.summary.get("machines", ())) > 1 else (lambda _m, path: path)
    for kept_id, dups in groups_of(report):
        kept = files[kept_id]
        total = group_label(dups)
        kept_path = on(kept.machine, kept.path)
        if room is not None and width is not None:  # the label where the path leaves room
            side = max(20, width - len(total) - 1)
            out.append(("bold", f"{_fit(_home(shown(kept_path)), side):<{side}} {total}"))
        else:
            out.append(("", f"{shown(kept_path)}  [{total}]"))
        for d in sorted(dups, key=lambda d: d["path"]):
            d = {**d, "path": on(d["machine"], d["path"])}
            cells = (f"{d['kind']:<7} {d['distance']:>4} {d['action']:<11} "
                     f"{human_size(d['size']):>8}")  # fmt: skip
            if room is not None:  # a quarantined copy is shown where it came from
                out.append(("", f"  {show(d['path']):<{path_w}} {cells}"))
            else:
                out.append(("", f"  {cells}  {shown(d['path'])}"))
    return out


def _on(machine: str, path: str) -> str:
    return f"{machine}:{path}"


def print_table(report: Report, console: Console) -> None:
    """Duplicate groups under their kept file, sizes in human units, and a total.

    On a terminal the lines fit its width and the kept files stand out; into a pipe or
    a file it is plain text with whole paths.
    """
    from rich.text import Text  # imported here, not at the top: see cli.console

    summary = report["summary"]
    if not report.rows:
        console.print("No duplicates found.")
        return
    terminal = console.is_terminal
    lines = table_lines(report, console.width if terminal else None)
    if terminal:
        text = Text()
        for style, line in lines:
            text.append(line + "\n", style=style or None)
        console.print(text, end="", soft_wrap=True, highlight=False)
    else:
        console.file.write("\n".join(line for _, line in lines) + "\n")
    total = (
        f"{summary['duplicates']} duplicates in {summary['groups']} groups "
        f"({summary['exact']} exact, {summary['near']} near); "
        f"{summary['similar']} similar shots (reported only)\n"
        f"{human_size(summary['reclaimable_bytes'])} reclaimable, "
        f"{human_size(summary['reclaimed_bytes'])} in quarantine"
        + (f", {human_size(summary['linked_bytes'])} saved by links" if summary["linked"] else "")
    )
    if terminal:
        console.print(total, highlight=False)
    else:
        console.file.write(total + "\n")
