"""What is in quarantine: listing, choosing entries to restore, purging to the trash."""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from urllib.parse import unquote_to_bytes

from rich.console import Console
from rich.table import Table
from sqlalchemy import select as sql_select

from .index import Index
from .models import ACTIVE, DONE, MISSING, QUARANTINED, File, Move, utcnow
from .pathtext import shown, url_quoted
from .report import human_size


@dataclass(frozen=True)
class Entry:
    file_id: int
    path: str  # where it is now, in the quarantine
    original: str  # where it came from
    quarantined_at: datetime
    size: int
    kind: str | None  # exact | near
    distance: int | None
    kept: str | None  # the copy that was kept
    linked: bool = False  # not moved: an exact copy made a link of the kept file, in place

    def as_dict(self) -> dict:
        return {
            "id": self.file_id,
            "path": self.path,
            "original": self.original,
            "quarantined_at": self.quarantined_at.isoformat(),
            "size": self.size,
            "kind": self.kind,
            "distance": self.distance,
            "kept": self.kept,
            "linked": self.linked,
            "restore_command": f"watcherd restore {self.file_id}",
        }


def entries(index: Index) -> list[Entry]:
    """Every file now in quarantine, oldest first, with the move that put it there."""
    out = []
    mine = File.machine == index.machine  # another machine's quarantine is its own
    files = index.session.scalars(sql_select(File).where(File.status == QUARANTINED, mine))
    for f in files:
        move = index.last_quarantine(f.id)
        if move is None:
            continue
        d = move.decision
        kept = index.group_root(index.get(d.original_id)).path if d is not None else None
        out.append(
            Entry(
                f.id,
                f.path,
                move.src,
                move.finished_at or move.created_at,
                f.size,
                d.kind if d else None,
                d.distance if d else None,
                kept,
            )
        )
    out += linked_entries(index)
    return sorted(out, key=lambda e: (e.quarantined_at, e.file_id))


def linked_entries(index: Index) -> list[Entry]:
    """Exact copies made links of their kept file (action = "link"), still in place:
    `restore` gives each its own bytes back."""
    from .linking import LINK, SEPARATE

    last: dict[int, Move] = {}
    kinds = Move.kind.in_((LINK, SEPARATE))
    mine = Move.machine == index.machine
    for m in index.session.scalars(sql_select(Move).where(kinds, mine, Move.state == DONE)):
        if m.file_id not in last or m.id > last[m.file_id].id:
            last[m.file_id] = m
    out = []
    for fid, m in last.items():
        f = index.get(fid)
        if m.kind != LINK or f is None or f.status != ACTIVE or f.path != m.src:
            continue
        d = m.decision
        when = m.finished_at or m.created_at
        kind, distance = (d.kind, d.distance) if d else (None, None)
        out.append(Entry(fid, f.path, f.path, when, f.size, kind, distance, m.dest, True))
    return out


def select(
    index: Index, targets: tuple[str, ...], everything: bool, since: datetime | None
) -> list[Entry]:
    """Entries named by id, original path or quarantine path; or all; or since a time."""
    available = entries(index)
    if everything:
        return available
    chosen: dict[int, Entry] = {}
    if since is not None:
        chosen.update({e.file_id: e for e in available if e.quarantined_at >= since})
    for target in targets:
        if target.isdigit():
            match = [e for e in available if e.file_id == int(target)]
        else:
            p = str(Path(target).expanduser().absolute())
            match = [e for e in available if p in (e.path, e.original)]
        if not match:
            raise LookupError(f"nothing in quarantine matches {target}")
        chosen.update({e.file_id: e for e in match})
    return sorted(chosen.values(), key=lambda e: (e.quarantined_at, e.file_id))


def purge(index: Index, victims: list[Entry]) -> tuple[int, list[tuple[str, str]]]:
    """Send quarantined files to the freedesktop trash (never a plain delete)."""
    from send2trash import send2trash
    from send2trash.exceptions import TrashPermissionError

    done, failed = 0, []
    for e in victims:
        f = index.get(e.file_id)
        try:
            send2trash(e.path)
        except (OSError, TrashPermissionError) as exc:
            failed.append((e.path, str(exc)))
            continue
        _restore_to_original(e.path, e.original)
        with index.unit():
            f.status = MISSING
            f.error = f"purged from quarantine to the trash on {utcnow():%Y-%m-%d}"
            index.forget_decisions(f)
        done += 1
    return done, failed


def _trash_info_dirs(path: str) -> list[Path]:
    """Where the freedesktop trash may have put the `.trashinfo` of `path`: the home
    trash, and the trash folders at the top of its volume."""
    data = Path(os.environ.get("XDG_DATA_HOME") or Path.home() / ".local/share")
    dirs = [data / "Trash" / "info"]
    top = Path(path).parent
    while top != top.parent and os.path.ismount(top) is False:
        top = top.parent
    uid = os.getuid()
    return [*dirs, top / ".Trash" / str(uid) / "info", top / f".Trash-{uid}" / "info"]


def _restore_to_original(trashed: str, original: str) -> None:
    """Make the trash's "Restore" put a purged photo back where the user had it, not in
    the hidden quarantine folder: the `Path=` of its `.trashinfo` (the freedesktop
    trash spec) is rewritten to the place it was quarantined from. Best effort: a
    trash laid out otherwise is left as it is."""
    name = os.path.basename(trashed)
    stem, ext = os.path.splitext(name)
    for folder in _trash_info_dirs(trashed):
        try:
            candidates = [
                p for p in folder.iterdir()
                if p.name == f"{name}.trashinfo"
                or (p.name.startswith(f"{stem} ") and p.name.endswith(f"{ext}.trashinfo"))
            ]  # fmt: skip
        except OSError:
            continue
        for info in sorted(candidates, key=lambda p: p.stat().st_mtime, reverse=True):
            text = info.read_text(errors="surrogateescape")
            path_line = next((ln for ln in text.splitlines() if ln.startswith("Path=")), "")
            written = os.fsdecode(unquote_to_bytes(path_line[5:]))
            if os.path.basename(written) != name or not trashed.endswith(written):
                continue  # another file's
            fixed = text.replace(path_line, "Path=" + url_quoted(original), 1)
            with contextlib.suppress(OSError):
                info.write_text(fixed, errors="surrogateescape")
            return


def _why(e: Entry, kept: str | None) -> str:
    why = f"{e.kind} copy of {kept}" if e.kind else "duplicate"
    return why + (", linked to it in place" if e.linked else "")


def print_table(items: list[Entry], console: Console) -> None:
    """A table on a terminal; into a pipe or a file, one line per file with whole paths
    (tab-separated: id, from, why, when, size), never wrapped."""
    if not items:
        console.print("Quarantine is empty.")
        return
    if not console.is_terminal:
        for e in items:
            why = _why(e, shown(e.kept))
            when = e.quarantined_at.astimezone().strftime("%Y-%m-%d %H:%M")
            line = f"{e.file_id}\t{shown(e.original)}\t{why}\t{when}\t{human_size(e.size)}"
            console.print(line, highlight=False, markup=False, soft_wrap=True)
        return
    table = Table(show_header=True, header_style="bold", pad_edge=False)
    table.add_column("ID", justify="right", no_wrap=True)
    table.add_column("From", overflow="fold", ratio=2)
    table.add_column("Why", overflow="fold", ratio=2)
    table.add_column("When", no_wrap=True)
    table.add_column("Size", justify="right", no_wrap=True)
    for e in items:
        why = _why(e, e.kept)
        table.add_row(
            str(e.file_id),
            e.original,
            why,
            e.quarantined_at.astimezone().strftime("%Y-%m-%d %H:%M"),
            human_size(e.size),
        )
    console.print(table)
    total = sum(e.size for e in items)
    console.print(
        f"{len(items)} files, {human_size(total)}. Restore with `watcherd restore ID` "
        "or `watcherd restore --all`."
    )
