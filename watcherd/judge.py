"""Match and verify: which indexed picture a newcomer is a copy of, or another shot of.

Two stages. The hash arrays retrieve candidates (whole picture in eight poses, regions
for crops); 64-bit hashes alone link dark pictures, blank ones and shots of one scene
that are not copies, so no candidate is called a copy until `verify.check` has lined
the two pictures up on pixels. The pipeline asks two questions, `near` and `similar`;
the answer names the file that was verified, never one reached through a chain of
links that were not.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from PIL import Image

from . import candidates, video_match
from .config import Config
from .fingerprint import TRANSFORM_NAMES, Fingerprint, thumbnail_of
from .index import Index
from .matching import HashIndex, Match, RegionIndex
from .models import ACTIVE, File
from .pictures import Pictures
from .screenshots import screen_shaped
from .verify import DETAIL, FAITHFUL_CORR, Check, Picture, check, rendition, turned, zoomed
from .verify_trace import Trace

# Whole-picture candidates checked on pixels per newcomer, best first (a photo with
# many copies indexed brings them all; the first kept file that verifies decides).
VERIFY_AT_MOST = 8
# Whole-picture candidates that do not line up as they are may be a crop of a few percent:
# the region boxes are searched for this many per newcomer (a search costs ~5 ms).
SEARCHES = 2
CROPS_AT_MOST = 4  # and crops, besides
SIMILAR_AT_MOST = 4  # candidates for `similar` checked per newcomer
OTHER_MOMENT = timedelta(minutes=10)  # capture times this close, and not equal: another shot
SCREENSHOT = "crop:photo"  # a photo and a screenshot showing it (fingerprint.photo_boxes)
ZOOM_SIDE = 512  # files are read again at this size for a closer look (_closer)
_WHOLE = frozenset(TRANSFORM_NAMES)


@dataclass(frozen=True, slots=True)
class Finding:
    """What the newcomer is: a copy of `partner` (near), or another shot of `shot`."""

    partner: File | None = None
    distance: int = 0
    transform: str | None = None
    shot: File | None = None
    shot_distance: int = 0
    settled: bool = False  # the newcomer is the redundant one, whatever the keep rule says
    # which one shows the other with something added (a screen around it, a sticker):
    # "newcomer" or "partner" (Check.added); never the one the keep rule keeps
    derived: str = ""


class Judge:
    def __init__(self, index: Index, config: Config) -> None:
        self.index = index
        self.config = config
        self.hashes = HashIndex()
        self.parts = RegionIndex()
        self.pictures = Pictures(index)
        self._trace = Trace(index)

    def add(
        self, file_id: int, phash: int, dhash: int | None, regions, fp: Fingerprint | None = None
    ) -> None:
        """Matchable from now on; `fp`, the file just decided: its picture, decoded for
        that decision, is kept for the newcomers that will be checked against it."""
        self.hashes.add(file_id, phash, dhash or 0)
        self.parts.add(file_id, regions)
        if fp is not None:
            self.pictures.indexed(file_id, fp)

    def rest(self) -> None:
        """A minute without work (the daemon lets its workers go): the pictures kept
        for the next newcomers go too."""
        self.pictures.clear()

    def forget(self, file_id: int) -> None:
        """Out of the arrays and the picture cache: gone, moved away or changed."""
        self.hashes.remove(file_id)
        self.parts.remove(file_id)
        self.pictures.forget(file_id)

    def near(self, f: File, fp: Fingerprint, ignored: set[int]) -> Finding:
        """The file `f` is a copy of, verified on pixels: a group's kept file when it
        lines up with the newcomer, else the file that did. `shot`: no candidate is a
        copy, but this one is the same scene (a burst, a re-take)."""
        if fp.frames:  # a video: compared frame by frame
            videos = video_match.lengthwise(self.index, f, fp, ignored)
            copy = video_match.near(self.index, self.config, fp, videos)
            if copy is not None:
                return Finding(*copy[:3], settled=copy[3])
            other = video_match.shot(self.index, self.config, fp, videos)
            return Finding() if other is None else Finding(shot=other[0], shot_distance=other[1])
        matches = self.candidates(f, fp)
        # one query for every match, not one each: a photo with several copies
        # indexed matches them all
        states = self.index.file_states(m.file_id for m in matches) if matches else {}
        live = []
        for m in matches:
            state = states.get(m.file_id)
            if state is not None and state[0] == ACTIVE:
                if m.file_id not in ignored:
                    live.append(m)
            else:  # gone or changed since it was indexed: drop it from the arrays
                self.forget(m.file_id)
        # kept files first, whole-picture poses before crops: most newcomers are
        # checked once, against the file their decision will name
        live.sort(key=lambda m: (states[m.file_id][1] is not None, m.transform not in _WHOLE))
        if not live:
            return self.similar(f, fp, ignored)
        mine = self.pictures.newcomer(fp)
        if mine is None:
            return Finding()
        # at most so many of each: the whole-picture candidates (a screenshot's chrome
        # brings every other screenshot of the app) do not crowd out the crops
        room = {True: VERIFY_AT_MOST, False: CROPS_AT_MOST}
        chosen = []
        for m in live:
            if room[m.transform in _WHOLE] > 0:
                room[m.transform in _WHOLE] -= 1
                chosen.append(m)
        self.pictures.load([m.file_id for m in chosen])
        checked: set[int] = set()
        copy, shot = self._first_copy(fp, mine, chosen, checked)
        if copy is not None:
            redundant = states[copy[0].file_id][1] is not None
            return self._named(fp, mine, copy, redundant, checked)
        if shot is not None:
            other = self.index.get(shot.file_id)
            if other is not None:
                return Finding(shot=other, shot_distance=shot.distance)
        return self.similar(f, fp, ignored, frozenset(checked))

    def _first_copy(
        self, fp: Fingerprint, mine: Picture, chosen: list[Match], checked: set[int]
    ) -> tuple[tuple[Match, Check] | None, Match | None]:
        """The first candidate that verifies as a copy (with its check), and the first
        that shows the same scene, in `chosen` order (each added to `checked`). A
        sticker or a label can move too many cells for the near rule: the whole
        candidate most alike around its one block of changes is given the overlay's
        look on the files read again, once per newcomer (a burst brings many
        candidates that all look so, and a look reads two files)."""
        searches = SEARCHES
        shot = overlaid = None
        for m in chosen:
            checked.add(m.file_id)
            found = self._verify(fp, mine, m.file_id, m.transform, searches > 0)
            searches -= m.transform in _WHOLE
            if found is None:
                continue
            if found.copy and not _other_moment(self.index, fp, m.file_id):
                return (m, found), shot
            if m.transform not in _WHOLE:
                continue
            if found.maybe_overlaid and (overlaid is None or found.rest > overlaid[1].rest):
                overlaid = (m, found)
            if shot is None and found.shot:
                shot = m
        if overlaid is not None:
            m, found = overlaid
            accepted = self._overlaid(fp, m.file_id, found, m.transform)
            if accepted is not None:
                return (m, accepted), shot
        return None, shot

    def pair(self, fp: Fingerprint, file_id: int, transform: str, loose: bool = False) -> bool:
        """Whether the newcomer is called a copy of one indexed file the hashes brought
        (as `transform`; `loose`: within the similar limits only), by the rule `near`
        and `similar` apply to each candidate. For measuring the rule pair by pair
        (benchmarks/false_match.py); it searches boxes for every whole-picture
        candidate, where `near` does for the first SEARCHES only."""
        mine = self.pictures.newcomer(fp)
        if mine is None:
            return False
        if loose:
            found = self._check(fp, mine, file_id, "identity", search=False)
            return found is not None and found.shot and bool(self._overlaid(fp, file_id, found))
        found = self._verify(fp, mine, file_id, transform)
        if found is None:
            return False
        if found.copy and not _other_moment(self.index, fp, file_id):
            return True
        return transform in _WHOLE and bool(self._overlaid(fp, file_id, found, transform))

    def _verify(
        self, fp: Fingerprint, mine: Picture, file_id: int, transform: str, search: bool = True
    ) -> Check | None:
        """The check on the thumbnails, or on the files read again where a thumbnail
        shows too little: a photo inside a screenshot, or a picture with little detail
        that the thumbnails call a copy."""
        theirs = self.pictures.get(file_id)
        if transform == SCREENSHOT or (
            transform not in _WHOLE
            and theirs is not None
            and any(screen_shaped(*p.image.size) for p in (mine, theirs))
        ):  # a thumbnail of a screen is too narrow to show the photo in it
            return self._closer(fp, file_id, transform)
        found = self._check(fp, mine, file_id, transform, search)
        if found is not None and found.copy and min(found.textured) < DETAIL:
            # the thumbnails say too little to call it a copy: the files decide
            return self._closer(fp, file_id, transform)
        return found

    def _closer(self, fp: Fingerprint, file_id: int, transform: str) -> Check | None:
        """The check again on both files read at ZOOM_SIDE, cut to their subject: a
        thumbnail of a small object on a plain ground (a nebula, a product shot), or of
        a photo inside a screenshot, has too few cells to tell two pictures apart.
        Rare, so the files are read again rather than more kept for every file."""
        pair = self._reread(fp.path, file_id)
        return None if pair is None else self._looked(fp, file_id, transform, *pair)

    def _reread(self, path: str, file_id: int) -> tuple[Image.Image, Image.Image] | None:
        other = self.index.get(file_id)
        return None if other is None else read_again(path, other.path)

    def _looked(
        self, fp: Fingerprint, file_id: int, transform: str, mine: Image.Image, theirs: Image.Image
    ) -> Check | None:
        """The closer look on both files read again (see _closer)."""
        if transform in _WHOLE:  # both cut to their subject, which then fills the grid
            found = check(
                zoomed(turned(mine, transform)), zoomed(theirs), "identity", False, sharp=True
            )
        else:  # the crop's box found again, on more pixels
            screen = any(screen_shaped(*p.size) for p in (mine, theirs))
            found = check(mine, theirs, transform, resampled=screen)
        self._trace.write(fp.path, file_id, "zoomed:" + transform, found)
        if min(found.textured) < DETAIL and not found.faithful:
            return None  # still too little to tell, and not alike enough to be sure
        return found

    def _named(
        self,
        fp: Fingerprint,
        mine: Picture,
        verified: tuple[Match, Check],
        redundant: bool,
        checked: set[int],
    ) -> Finding:
        """The finding for a verified copy. When the file it lines up with is itself a
        redundant copy, its group's kept file is named if it too lines up with the
        newcomer; otherwise the newcomer is a copy of that redundant file (`settled`:
        the keep rule cannot make it the kept one of a group it was not checked
        against)."""
        copy, found = verified
        partner = self.index.get(copy.file_id)
        if partner is None:
            return Finding()
        if not redundant:
            found = self._told(fp, partner, copy.transform, found)
            return Finding(partner, copy.distance, copy.transform, derived=_derived(found))
        kept = self.index.group_root(partner)
        if kept.id != partner.id and kept.id not in checked and kept.status == ACTIVE:
            found = self._verify(fp, mine, kept.id, copy.transform)
            if found is not None and found.copy:
                distance = self.hashes.distance(kept.id, fp.variants) or copy.distance
                return Finding(kept, distance, copy.transform, derived=_derived(found))
        return Finding(partner, copy.distance, copy.transform, settled=True)

    def _told(self, fp: Fingerprint, partner: File, transform: str, found: Check) -> Check:
        """`found`, or where the two differ in a block and keep = "best" asks which one
        is the photo, the check on both files read again that can tell which one
        carries the overlay: on a thumbnail a sticker's fill is not flat (Check.sharp).
        Asked only between pictures of the same number of pixels: otherwise the larger
        is kept, and a copy with a sticker added is rarely larger than its source."""
        if self.config.keep != "best" or found.sharp or found.added or not found.blocked:
            return found
        if fp.pixels != partner.pixels:
            return found
        pose = transform if transform in _WHOLE else "identity"
        pair = self._reread(fp.path, partner.id)
        if pair is None or (pose != transform and not _same_shape(*pair)):
            return found  # a crop that is not a copy in the same frame: cannot be told
        again = check(*pair, pose, False, sharp=True)
        return replace(found, covered=again.covered) if again.copy else found

    def similar(
        self, f: File, fp: Fingerprint, ignored: set[int], checked: frozenset[int] = frozenset()
    ) -> Finding:
        """Another shot of the same scene (a burst, a re-take): upright whole pictures
        within the looser `similar` limits that show the same scene on pixels. Or a
        copy after all, under an overlay the stricter rule accepts (`_overlaid`)."""
        tried = 0
        for m in candidates.loose(self.hashes, self.parts, self.config, f, fp):
            if tried >= SIMILAR_AT_MOST:
                break
            if m.file_id in checked:
                continue
            other = self.index.get(m.file_id)
            if other is None or other.status != ACTIVE or other.id in ignored:
                continue
            tried += 1
            mine = self.pictures.newcomer(fp)  # decoded only for a newcomer that needs it
            if mine is None:
                break
            found = self._check(fp, mine, other.id, "identity", search=False)
            if found is None or not found.shot:
                continue
            accepted = self._overlaid(fp, other.id, found)
            if accepted is not None:
                redundant = other.duplicate_of_id is not None
                return self._named(fp, mine, (m, accepted), redundant, set(checked) | {other.id})
            # not a copy: beyond the near limits, scattered changes (a subject that
            # moved) cannot be told from recompression on a thumbnail
            # (test_burst_shots_are_similar_never_near)
            return Finding(shot=other, shot_distance=m.distance)
        return Finding()

    def _overlaid(
        self, fp: Fingerprint, file_id: int, found: Check, transform: str = "identity"
    ) -> Check | None:
        """A candidate that may be a copy under an overlay (a sticker, a label: they
        move pHash far, and past the near rule), judged by the stricter rule on both
        files read again; the thumbnails only say whether to look (around a sticker on
        a smooth photo they agree at 0.86-0.95, the files at 0.99). A picture with
        detail all over is judged whole, the cells around the block agreeing as a
        copy's do; a small subject on a plain ground is judged cut to its subject, and
        only if the thumbnails already agree but for the block (two different dark
        pictures agree as wholes but for one block; a sticker beside a small object
        widens one cut). Never two shots seconds apart. The check that accepts it."""
        if not found.maybe_overlaid or _other_moment(self.index, fp, file_id):
            return None
        pair = self._reread(fp.path, file_id)
        if pair is None:
            return None
        whole = check(*pair, transform, False, sharp=True)
        self._trace.write(fp.path, file_id, "reread:" + transform, whole)
        if min(whole.textured) >= DETAIL and whole.overlaid and whole.rest >= FAITHFUL_CORR:
            return whole
        if not found.overlaid:
            return None
        closer = self._looked(fp, file_id, transform, *pair)
        return closer if closer is not None and closer.overlaid else None

    def candidates(self, f: File, fp: Fingerprint) -> list[Match]:
        """Indexed pictures that look like the newcomer: whole, turned, or cropped."""
        return candidates.near(self.hashes, self.parts, self.index, self.config, f, fp)

    def _check(
        self, fp: Fingerprint, mine: Picture, file_id: int, transform: str, search: bool = True
    ) -> Check | None:
        theirs = self.pictures.get(file_id)
        if theirs is None:
            return None
        found = check(mine, theirs, transform, search)
        self._trace.write(fp.path, file_id, transform, found)
        return found


def _other_moment(index: Index, fp: Fingerprint, file_id: int) -> bool:
    """Both photos carry a capture time, and they are seconds to minutes apart: a
    burst or a re-take, whatever the pixels say (a copy keeps its photo's capture
    time or loses it). Hours or more apart is more likely a time rewritten by an
    editor than another shot, and says nothing."""
    if not fp.taken_at:
        return False
    other = index.get(file_id)
    if other is None or not other.taken_at or other.taken_at == fp.taken_at:
        return False
    try:
        apart = abs(datetime.fromisoformat(fp.taken_at) - datetime.fromisoformat(other.taken_at))
    except ValueError:
        return False
    return apart <= OTHER_MOMENT


def _same_shape(a: Image.Image, b: Image.Image) -> bool:
    return abs(a.width * b.height - b.width * a.height) <= 0.01 * a.width * b.height


def _derived(found: Check) -> str:
    return {1: "newcomer", 2: "partner"}.get(found.added, "")


def read_again(*paths: str) -> tuple[Image.Image, ...] | None:
    """Files read again at ZOOM_SIDE, for a closer look than their thumbnails give."""
    pictures = tuple(rendition(thumbnail_of(p, ZOOM_SIDE)) for p in paths)
    return None if any(p is None for p in pictures) else pictures
