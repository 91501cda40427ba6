"""The pictures verification compares: each file's stored thumbnail, decoded once.

A scan checks each newcomer against a few indexed files, and most indexed files are
checked against several newcomers: the decoded pictures (and the grids made of them)
are kept, the most recently used, up to CACHED. A newcomer's own picture (decoded by
the worker that read it) is kept as an indexed file's once it is indexed.
"""

from __future__ import annotations

from collections import OrderedDict

from PIL import Image

from .fingerprint import Fingerprint, thumbnail_of
from .index import Index
from .verify import Picture, rendition

# Memory for indexed files' pictures kept decoded, 30-60 KB each with their grids: about
# a thousand, the files indexed shortly before a newcomer (where its copies mostly
# are); the daemon at a million files has little memory to spare (README "Scale").
CACHE_BYTES = 40 * 2**20


class Pictures:
    def __init__(self, index: Index) -> None:
        self.index = index
        self._kept: OrderedDict[int, Picture | None] = OrderedDict()
        self._sizes: dict[int, int] = {}  # each kept picture's bytes, when last counted
        self._bytes = 0  # their sum
        self._lent: int | None = None  # the file whose picture get() returned last
        self._newest: tuple[Fingerprint | None, Picture | None] = (None, None)

    def newcomer(self, fp: Fingerprint) -> Picture | None:
        """The newcomer's picture: decoded by the worker, or from its thumbnail."""
        if self._newest[0] is not fp:
            if fp.grey is not None:
                width, height, pixels = fp.grey
                image = Image.frombytes("L", (width, height), pixels)
            else:
                image = rendition(fp.thumbnail)
            self._newest = (fp, Picture(image) if image is not None else None)
        return self._newest[1]

    def indexed(self, file_id: int, fp: Fingerprint) -> None:
        """`fp` is indexed as `file_id`: its picture is kept as that file's (copies of
        it tend to follow it)."""
        picture = self.newcomer(fp)
        if picture is not None:
            self._keep(file_id, picture.settled())

    def clear(self) -> None:
        """Nothing kept: a daemon that has waited a minute keeps no pictures (the
        next newcomer's copies are as likely anywhere in the index as among the files
        decided last), only its index."""
        self._kept.clear()
        self._sizes.clear()
        self._bytes = 0
        self._lent = None
        self._newest = (None, None)

    def forget(self, file_id: int) -> None:
        self._kept.pop(file_id, None)
        self._bytes -= self._sizes.pop(file_id, 0)

    def load(self, file_ids: list[int]) -> None:
        """Decode the stored thumbnails of those not kept yet, read in one query."""
        missing = [i for i in file_ids if i not in self._kept]
        if not missing:
            return
        stored = self.index.thumbnails(missing)
        for file_id in missing:
            image = rendition(stored.get(file_id))
            if image is not None:  # else get() reads the file again
                self._keep(file_id, Picture(image))

    def get(self, file_id: int) -> Picture | None:
        """An indexed file's picture: its stored thumbnail, or (indexed before
        thumbnails were stored) the file read again; None if neither can be read."""
        self._recount()
        if file_id in self._kept:
            self._kept.move_to_end(file_id)
            self._lent = file_id
            return self._kept[file_id]
        image = rendition(self.index.thumbnails([file_id]).get(file_id))
        if image is None:
            f = self.index.get(file_id)
            image = rendition(thumbnail_of(f.path)) if f is not None else None
        picture = Picture(image) if image is not None else None
        self._keep(file_id, picture)
        self._lent = file_id
        return picture

    def _keep(self, file_id: int, picture: Picture | None) -> None:
        self._recount()
        self.forget(file_id)
        self._kept[file_id] = picture
        self._count(file_id)

    def _recount(self) -> None:
        """The picture get() lent last has grown the grids its check made: counted again."""
        if self._lent is not None and self._lent in self._kept:
            self._count(self._lent)
        self._lent = None

    def _count(self, file_id: int) -> None:
        picture = self._kept[file_id]
        size = picture.nbytes if picture is not None else 0
        self._bytes += size - self._sizes.get(file_id, 0)
        self._sizes[file_id] = size
        while self._bytes > CACHE_BYTES and len(self._kept) > 1:  # least recently used out
            self.forget(next(iter(self._kept)))
