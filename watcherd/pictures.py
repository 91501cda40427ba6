"""The pictures verification compares: each file's stored thumbnail, decoded once.

A scan checks each newcomer against a few indexed files, and most indexed files are
checked against several newcomers: the decoded pictures (and the grids made of them)
are kept, the most recently used, up to CACHED. A newcomer's own picture, decoded for
its decision, is kept as an indexed file's once it is indexed.
"""

from __future__ import annotations

from collections import OrderedDict

from .fingerprint import Fingerprint, thumbnail_of
from .index import Index
from .verify import Picture, rendition

CACHED = 2048  # indexed files' pictures kept decoded (about 80 KB each with their grid)


class Pictures:
    def __init__(self, index: Index) -> None:
        self.index = index
        self._kept: OrderedDict[int, Picture | None] = OrderedDict()
        self._newest: tuple[Fingerprint | None, Picture | None] = (None, None)

    def newcomer(self, fp: Fingerprint) -> Picture | None:
        """The newcomer's picture, from the thumbnail its fingerprint carries."""
        if self._newest[0] is not fp:
            image = rendition(fp.thumbnail)
            self._newest = (fp, Picture(image) if image is not None else None)
        return self._newest[1]

    def indexed(self, file_id: int, fp: Fingerprint) -> None:
        """`fp` is indexed as `file_id`: its picture, if decoded, is kept as that file's."""
        if self._newest[0] is fp and self._newest[1] is not None:
            self._keep(file_id, self._newest[1])

    def forget(self, file_id: int) -> None:
        self._kept.pop(file_id, None)

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
        if file_id in self._kept:
            self._kept.move_to_end(file_id)
            return self._kept[file_id]
        image = rendition(self.index.thumbnails([file_id]).get(file_id))
        if image is None:
            f = self.index.get(file_id)
            image = rendition(thumbnail_of(f.path)) if f is not None else None
        picture = Picture(image) if image is not None else None
        self._keep(file_id, picture)
        return picture

    def _keep(self, file_id: int, picture: Picture | None) -> None:
        self._kept[file_id] = picture
        if len(self._kept) > CACHED:
            self._kept.popitem(last=False)
