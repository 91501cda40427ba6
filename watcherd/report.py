"""Reports: what watcherd decided, as a table for people and JSON/CSV for tools.

The JSON shape is a contract (other tools parse it): one entry per redundant copy with
`path` (the redundant copy) and `original` (the copy its group keeps).
"""

from __future__ import annotations

import csv
import io
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime

from rich.console import Console
from rich.table import Table

from .index import Index
from .models import QUARANTINED

CSV_FIELDS = (
    "path", "original", "kind", "distance", "detected_at", "action", "quarantined_path", "size",
)  # fmt: skip


@dataclass(frozen=True)
class Filters:
    since: datetime | None = None
    root: str | None = None
    kind: str | None = None
    action: str | None = None
    limit: int | None = None


def build(index: Index, filters: Filters | None = None) -> dict:
    """The report as plain data: {"duplicates": [...], "summary": {...}}."""
    filters = filters or Filters()
    rows = index.live_duplicates(
        since=filters.since,
        root=filters.root,
        kind=filters.kind,
        action=filters.action,
        limit=filters.limit,
    )
    duplicates = []
    for decision, redundant, partner in rows:
        # a 'similar' pair has no kept copy: its original is simply the other picture
        kept = partner if decision.kind == "similar" else index.group_root(redundant)
        quarantined = redundant.status == QUARANTINED
        duplicates.append(
            {
                # where the copy belongs; `quarantined_path` says where it is now
                "path": index.original_location(redundant) if quarantined else redundant.path,
                "original": kept.path,
                "kind": decision.kind,
                "distance": decision.distance,
                "detected_at": decision.decided_at.isoformat(),
                "action": decision.action,
                "quarantined_path": redundant.path if quarantined else None,
                "size": redundant.size,
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
        "files": counts["files"],
        "errors": counts["errors"],
    }
    return {"duplicates": [_public(d) for d in duplicates], "summary": summary, "_rows": duplicates}


def _public(d: dict) -> dict:
    return {k: v for k, v in d.items() if k != "size"}


def human_size(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if abs(n) < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} TB"  # pragma: no cover


def to_json_data(report: dict) -> dict:
    return {"duplicates": report["duplicates"], "summary": report["summary"]}


def to_csv(report: dict) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=CSV_FIELDS, lineterminator="\n")
    writer.writeheader()
    for d in report["_rows"]:
        writer.writerow({k: d[k] for k in CSV_FIELDS})
    return out.getvalue()


def print_table(report: dict, console: Console) -> None:
    """Duplicate groups under their kept file, sizes in human units, and a total."""
    rows = report["_rows"]
    summary = report["summary"]
    if not rows:
        console.print("No duplicates found.")
        return
    groups: dict[str, list[dict]] = defaultdict(list)
    for d in rows:
        groups[d["original"]].append(d)
    table = Table(show_header=True, header_style="bold", expand=False, pad_edge=False)
    table.add_column("File", overflow="fold", ratio=1)
    table.add_column("Kind", no_wrap=True)
    table.add_column("Dist", justify="right", no_wrap=True)
    table.add_column("Action", no_wrap=True)
    table.add_column("Size", justify="right", no_wrap=True)
    for kept, dups in sorted(groups.items(), key=lambda g: -sum(d["size"] for d in g[1])):
        table.add_row(f"[bold]keep[/] {kept}", "", "", "", "", end_section=False)
        for d in sorted(dups, key=lambda d: d["path"]):
            where = d["quarantined_path"] or d["path"]
            table.add_row(
                f"  └ {where}", d["kind"], str(d["distance"]), d["action"], human_size(d["size"])
            )
        table.add_section()
    console.print(table)
    console.print(
        f"{summary['duplicates']} duplicates in {summary['groups']} groups "
        f"({summary['exact']} exact, {summary['near']} near), "
        f"{summary['similar']} similar shots (reported only); "
        f"{human_size(summary['reclaimable_bytes'])} reclaimable, "
        f"{human_size(summary['reclaimed_bytes'])} in quarantine."
    )
