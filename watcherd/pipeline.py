"""The decision pipeline: one fingerprinted file in, one index update (and verdict) out.

`watcherd scan` and the daemon both feed files through `Pipeline.process`, in the order
the files arrived, so both make exactly the same decisions.
"""

from __future__ import annotations

import contextlib
import ctypes
import itertools
import logging
from dataclasses import dataclass
from operator import itemgetter
from pathlib import Path

from sqlalchemy.exc import OperationalError

from . import index_location, video_match
from .acting import Actor, Verdict
from .actions import Mover
from .config import Config
from .fingerprint import Fingerprint
from .index import Index
from .judge import Finding, Judge
from .matching import HashIndex, RegionIndex, load_arrays, newcomer_kept, save_arrays
from .models import ACTIVE, ERROR, File
from .settling import stat_of

log = logging.getLogger("watcherd")

INVERSE = {"rotate90": "rotate270", "rotate270": "rotate90"}
# Arrays that miss more changed files than this (or a quarter of their files, if more)
# are built again from the rows rather than brought up to date one file at a time.
REBUILD_FROM = 50_000
# A scan saves the arrays when the saved ones (if any) are further behind than this.
SAVE_BEHIND = 10_000


GONE = "gone"  # an Outcome's status: moved or changed while it was read, not recorded


@dataclass(frozen=True, slots=True)
class Outcome:
    path: str
    status: str  # indexed | error | gone
    verdict: Verdict | None = None
    error: str | None = None


def release_free_memory() -> None:
    """Hand the C heap's free pages back to the system (glibc's malloc_trim).

    Reading a large index's rows (or its saved arrays) leaves tens of megabytes the
    process no longer uses but glibc keeps (48 MB at a million photos); a long-running
    daemon would carry them for ever. Elsewhere than glibc this does nothing."""
    with contextlib.suppress(AttributeError, OSError):
        ctypes.CDLL(None).malloc_trim(0)


def arrays_path(db_path: Path | str) -> Path:
    """Where the daemon saves its matcher arrays when it stops (see save_arrays)."""
    return index_location.beside(db_path, ".arrays.npz")


class Pipeline:
    def __init__(
        self,
        index: Index,
        config: Config,
        mover: Mover | None = None,
        dry_run: bool = False,
        arrays: Path | None = None,
    ) -> None:
        """`arrays`: a file of saved matcher arrays to start from, brought up to date
        with what changed in the index since they were saved (see catch_up); otherwise
        the arrays are built from the index's rows."""
        self.index = index
        self.config = config
        self.arrays = arrays
        self.judge = Judge(index, config)
        saved = load_arrays(arrays) if arrays is not None else None
        self._saved_at = None if saved is None else saved.generation
        # From here on in one transaction: what the arrays hold and the generation they
        # are said to hold are read in the same view of the index.
        index.follow_generation(self._committed)
        self._synced = index.transaction
        self._foreign = -1  # the last transaction that began after another writer's commit
        self._arriving: tuple[int, set[str]] = (-1, set())  # (transaction, moves' targets)
        self._generation = index.generation()
        changed: list[int] | None = None
        if saved is not None:
            self.judge.hashes, self.judge.parts = saved.hashes, saved.parts
            changed = self._changed_since(saved.generation, self._generation)
        self._bring_up(changed)
        if arrays is not None and changed is None:
            log.info("matcher arrays rebuilt", extra={"event": "arrays", "source": "index"})
        elif arrays is not None:
            log.info(
                "matcher arrays loaded from %s, %d files changed since read again",
                arrays, len(changed),
                extra={"event": "arrays", "source": "saved", "changed": len(changed)},
            )  # fmt: skip
        release_free_memory()
        self.mover = mover or Mover(index, config)
        self.dry_run = dry_run

    @property
    def hashes(self) -> HashIndex:
        return self.judge.hashes

    @property
    def parts(self) -> RegionIndex:
        return self.judge.parts

    def _changed_since(self, generation: int, now: int) -> list[int] | None:
        """The files to read again to bring arrays of `generation` up to the index's
        (`now`), or None when rebuilding is the quicker (or the only) way."""
        if generation == now:
            return []
        changed = self.index.changed_since(generation)
        if changed is None or len(changed) > max(REBUILD_FROM, len(self.hashes) // 4):
            return None
        return changed

    def _bring_up(self, changed: list[int] | None) -> None:
        """Read again the files `changed` (see _changed_since): each is dropped from the
        arrays and read back from its rows if it is still an active image; None builds
        the arrays from every row."""
        if changed is None:
            self.judge.hashes = HashIndex.from_rows(self.index.hash_rows())
            self.judge.parts = RegionIndex.from_rows(self.index.region_rows())
            return
        for file_id in changed:
            self._forget_hashes(file_id)
        for file_id, phash, dhash in self.index.hash_rows(changed):
            self.hashes.add(file_id, phash, dhash or 0)
        rows = self.index.region_rows(changed)
        for file_id, regions in itertools.groupby(rows, key=itemgetter(0)):
            self.parts.add(file_id, [(region, phash, 0) for _, region, phash in regions])

    def catch_up(self) -> int:
        """Bring the arrays up to what others wrote to the index since this process last
        committed (a `watcherd scan` or `restore` beside the daemon, the daemon beside a
        scan); returns how many files were read again. Called before each decision: it
        costs nothing unless a transaction began since the last call, and then one
        comparison of the generation that transaction began at. A rebuild from the rows
        (too many changed, or the log no longer reaching back) returns -1."""
        self.index.session.connection()  # begun: anything committed before is in view
        if self._synced == self.index.transaction:
            return 0
        self._synced = self.index.transaction
        if self.index.begun_at == self._generation:
            return 0
        self._foreign = self.index.transaction  # somebody else wrote since our last commit
        now = self.index.generation()
        changed = self._changed_since(self._generation, now)
        self._generation = now
        self._bring_up(changed)
        if changed is None:
            release_free_memory()  # the heap the rows were read through
        log.debug(
            "matcher arrays caught up with the index: %s",
            "rebuilt" if changed is None else f"{len(changed)} files read again",
            extra={"event": "arrays", "source": "index" if changed is None else "changes",
                   "changed": None if changed is None else len(changed)},
        )  # fmt: skip
        return -1 if changed is None else len(changed)

    def _committed(self, transaction: int, generation: int) -> None:
        """The index is about to commit: if the arrays were current in this transaction,
        they hold all it changed (decisions keep them in step as they go)."""
        if transaction == self._synced:
            self._generation = generation

    def save_arrays(self, forget: bool = True) -> None:
        """Save the arrays for a quick next start, once they hold everything committed,
        and (`forget`) drop the change log they no longer need: only the daemon does, as
        nothing else may be left holding arrays from before."""
        if self.arrays is None:
            return
        try:
            self.catch_up()
            save_arrays(self.arrays, self._generation, self.hashes, self.parts)
            self._saved_at = self._generation
            if forget:
                self.index.forget_changes(self._generation)
                self.index.commit()
        except OSError as exc:
            log.warning("cannot save the matcher arrays to %s: %s", self.arrays, exc)
        finally:
            self.index.rollback()

    def save_arrays_if_behind(self) -> None:
        """After a scan: save the arrays if there are no saved ones to start from, or
        if those are more than SAVE_BEHIND files behind (a daemon, or the next scan,
        would read them all again). A scan that changed a few files of a large index
        leaves the saved arrays as they are rather than write them whole again."""
        if self.arrays is None:
            return
        if self._saved_at is not None:
            behind = self.index.changed_since(self._saved_at)
            self.index.rollback()
            if behind is not None and len(behind) < SAVE_BEHIND:
                return
        self.save_arrays(forget=False)

    def process(self, fp: Fingerprint, root: str, new: bool = False) -> Outcome:
        """Index one file and decide whether it, or the copy it matches, is redundant.

        `new`: the caller knows the index has no row for this path (a scan's new files),
        which saves the queries that look for one and for what it was paired with.
        """
        self.catch_up()
        if self._foreign == self.index.transaction:
            # "new" was judged before another process committed (a daemon, a restore):
            # it may have put a row at this path since. Under the write lock now, look.
            new = False
        if fp.error is None and self._moved_away(fp):
            return Outcome(fp.path, GONE)
        existing = None if new else self.index.file_by_path(fp.path)
        same_bytes = (
            existing is not None
            and existing.status == ACTIVE
            and not fp.error
            and fp.sha256 is not None
            and existing.sha256 == fp.sha256
        )
        if existing is not None and not same_bytes:
            # Changed in place (or re-read after an error): its old pairings no longer hold.
            self.index.forget_decisions(existing)
            self._forget_hashes(existing.id)
        values = dict(
            path=fp.path,
            root=root,
            size=fp.size,
            mtime_ns=fp.mtime_ns,
            inode=fp.inode,
            sha256=fp.sha256,
            width=fp.width,
            height=fp.height,
            format=fp.format,
            taken_at=fp.taken_at,
            phash=fp.phash,
            dhash=fp.dhash,
            status=ERROR if fp.error else ACTIVE,
            error=fp.error or fp.warning,  # a warning: noted, the file matched by its bytes
        )
        f = self.index.upsert_file(existing, **values)
        fresh = existing is None
        self.index.set_regions(f.id, fp.regions, fresh)
        self.index.set_thumbnail(f.id, fp.thumbnail, fresh)
        if fp.frames:
            self.index.set_video(f.id, fp.duration, video_match.packed(fp.frames), fresh)
        if fp.warning:
            log.warning("%s: %s; matched by its bytes only", fp.path, fp.warning)
        if fp.error:
            return Outcome(fp.path, "error", error=fp.error)
        if same_bytes:
            # Touched, or read again on purpose (`scan --rehash`), but the same bytes: its
            # fingerprints are refreshed and its decisions stand. Re-deciding would undo
            # the decisions of copies read before it in the same pass.
            if fp.phash is not None:
                self._add_hashes(f.id, fp)
            return Outcome(fp.path, "indexed")

        verdict = self._decide(f, fp, fresh)
        if fp.phash is not None and f.status == ACTIVE:
            self._add_hashes(f.id, fp)
        return Outcome(fp.path, "indexed", verdict=verdict)

    def _moved_away(self, fp: Fingerprint) -> bool:
        """Whether the file read is not this process's to record: moved away or written
        to since it was read, or being put there by another process (a restore), which
        records it itself. Else a row saying "active" where nothing is, or a second row
        for a restored file. Asked under the write lock (the transaction has begun:
        catch_up) that every move takes to journal and record itself."""
        if (fp.size, fp.mtime_ns) != stat_of(fp.path):
            return True
        if self._arriving[0] != self.index.transaction:
            self._arriving = (self.index.transaction, self.index.moves_under_way_to())
        return fp.path in self._arriving[1]

    def _decide(self, f: File, fp: Fingerprint, fresh: bool = False) -> Verdict | None:
        partner: File | None = None
        kind, distance, transform = "exact", 0, None
        ignored = set() if fresh else self.index.ignored_partners(f.id)  # a new row has none
        if fp.sha256:
            same = self.index.active_with_sha(fp.sha256, exclude_id=f.id)
            ids = [i for i in same if i not in ignored]
            if ids:
                partner = self._prefer_kept(ids, same)
        settled, derived = False, ""
        if partner is None and (fp.variants or fp.frames):
            found = self.judge.near(f, fp, ignored)
            settled, derived = found.settled, found.derived
            partner, distance, transform = found.partner, found.distance, found.transform
            kind = "near"
            if partner is None:
                return self._similar(f, found)
        if partner is None:
            return None
        if partner.id in ignored:  # the user said these two are not copies
            return self._similar(f, self.judge.similar(f, fp, ignored)) if fp.variants else None
        # `transform` is the pose that turned the newcomer into the indexed picture; the
        # decision records how the redundant copy is turned relative to the kept one.
        if not settled and self._newcomer_kept(f, partner, derived):
            redundant, kept = partner, f
        else:
            redundant, kept = f, partner
            transform = INVERSE.get(transform, transform)
        decision_id = self.index.record_decision(
            redundant, kept, kind, distance, transform, first=fresh and redundant is f
        )
        verdict = Verdict(redundant.path, kept.path, kind, distance, transform, redundant.size)
        # made for each act: a reload replaces the configuration and the mover
        actor = Actor(self.index, self.config, self.mover, self.dry_run)
        return actor.act(verdict, redundant, kept, decision_id)

    def _similar(self, f: File, found: Finding) -> Verdict | None:
        """Another shot of the same scene (a burst, a re-take), if the judge found one:
        reported, never moved; neither file becomes redundant."""
        if found.shot is None:
            return None
        self.index.record_similar(f, found.shot, found.shot_distance)
        return Verdict(f.path, found.shot.path, "similar", found.shot_distance, None, f.size)

    def rematch(self, f: File) -> None:
        """Make an indexed file matchable again (back from quarantine) without reading it."""
        if f.phash is None or f.status != ACTIVE:
            return
        self.judge.add(f.id, f.phash, f.dhash, self.index.regions_of(f.id))

    def _add_hashes(self, file_id: int, fp: Fingerprint) -> None:
        self.judge.add(file_id, fp.phash, fp.dhash, fp.regions, fp)

    def _forget_hashes(self, file_id: int) -> None:
        self.judge.forget(file_id)

    def _newcomer_kept(self, f: File, partner: File, derived: str = "") -> bool:
        lengths = self.index.video_durations([f.id, partner.id]) if f.format == "video" else {}
        return newcomer_kept(f, partner, self.config.keep, self._protected, lengths, derived)

    def _protected(self, path: str) -> bool:
        root = self.mover.root_of(path)
        return root is not None and root.protect

    def _prefer_kept(
        self, ids: list[int], states: dict[int, tuple[str, int | None]]
    ) -> File | None:
        """Among matching files (ids best first, with their (status, partner) rows), the
        kept file of the best match's group; only that file is loaded.

        A file already judged redundant is never the one kept: the newcomer is measured
        against the copy its group keeps.
        """
        kept = next((i for i in ids if states[i][1] is None), None)
        if kept is not None:
            return self.index.get(kept)
        first = self.index.get(ids[0])
        return None if first is None else self.index.group_root(first)


def log_outcome(outcome: Outcome, quiet: bool = False) -> None:
    """One structured log line per decision; callers log once the decision is committed.
    `quiet`: a file merely indexed is logged at debug level (a large catch-up, which
    says what it did in one summary line instead)."""
    if outcome.status == GONE:
        log.debug(
            "not indexed %s: moved or changed while it was read",
            outcome.path,
            extra={"event": "gone", "path": outcome.path},
        )
        return
    if outcome.error:
        log.warning(
            "cannot index %s: %s",
            outcome.path,
            outcome.error,
            extra={"event": "error", "path": outcome.path, "reason": outcome.error},
        )
        return
    v = outcome.verdict
    if v is None:
        log.log(
            logging.DEBUG if quiet else logging.INFO,
            "indexed %s",
            outcome.path,
            extra={"event": "indexed", "path": outcome.path},
        )
        return
    if v.kind == "similar":
        log.info(
            "indexed %s: similar to %s (distance %d), reported only",
            v.redundant_path,
            v.kept_path,
            v.distance,
            extra={
                "event": "similar",
                "path": v.redundant_path,
                "original": v.kept_path,
                "kind": "similar",
                "distance": v.distance,
            },
        )
        return
    done = f"; {v.action} to {v.moved_to}" if v.moved_to else f"; {v.action}"
    log.log(
        logging.WARNING if v.move_failed else logging.INFO,
        "%s duplicate: %s of %s (distance %d)%s%s",
        v.kind,
        v.redundant_path,
        v.kept_path,
        v.distance,
        done,
        f" ({v.note})" if v.note else "",
        extra={
            "event": "duplicate",
            "path": v.redundant_path,
            "original": v.kept_path,
            "kind": v.kind,
            "distance": v.distance,
            "transform": v.transform,
            "action": v.action,
            "moved_to": v.moved_to,
            "note": v.note or None,
        },
    )


def keep_arrays(pipeline: Pipeline, dry_run: bool) -> None:
    """At a daemon's stop: save the matcher arrays for a quick next start (brought up
    to date with what other processes wrote meanwhile), but not after a dry run: its
    decisions were not kept, and the arrays hold them."""
    if pipeline.arrays is None:
        return
    if dry_run:
        pipeline.arrays.unlink(missing_ok=True)
        return
    try:
        pipeline.save_arrays()
    except OperationalError as exc:  # the index is locked or gone: start from rows
        log.warning("matcher arrays not saved: %s", exc)
        pipeline.arrays.unlink(missing_ok=True)
