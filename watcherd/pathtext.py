"""File names that are not UTF-8, stored losslessly in a text column and shown plainly.

Linux file names are bytes. Python hands a name that is not valid UTF-8 (Latin-1 from
an old camera, a zip archive, a Samba share) to us as a str with lone surrogates
(U+DC80..U+DCFF, PEP 383), which no database driver will store as text. In the index
each such surrogate is written as a character of Unicode's private use plane 15,
U+F0080..U+F00FF, and a name's own characters in U+F0000..U+F00FF (which no real name
is known to use) are escaped with U+F0000 before them. Every other character is
stored as it is, so valid UTF-8 names, the index's path order and its prefix queries
(`_under`) are unchanged: the mapping works character by character.
"""

from __future__ import annotations

import os
import re

_ESC = "\U000f0000"
_TO_DB = re.compile("[\udc80-\udcff\U000f0000-\U000f00ff]")
_FROM_DB = re.compile("\U000f0000.|[\U000f0080-\U000f00ff]", re.DOTALL)


def _out(m: re.Match) -> str:
    ch = m.group()
    if "\udc80" <= ch <= "\udcff":
        return chr(0xF0000 + ord(ch) - 0xDC00)
    return _ESC + ch


def _in(m: re.Match) -> str:
    s = m.group()
    if s[0] == _ESC:
        return s[1:]
    return chr(ord(s) - 0xF0000 + 0xDC00)


def to_db(path: str) -> str:
    """A path as the index stores it."""
    if path.isascii():
        return path
    return _TO_DB.sub(_out, path)


def from_db(text: str) -> str:
    """A path as the index stored it, back as Python's name for the file."""
    if text.isascii():
        return text
    return _FROM_DB.sub(_in, text)


def url_quoted(path: str | os.PathLike[str]) -> str:
    """A path percent-encoded byte for byte, as file:// URLs and the freedesktop trash's
    `.trashinfo` want it (a name that is not UTF-8 too)."""
    from urllib.parse import quote

    return quote(os.fsencode(path))


def file_url(path: str | os.PathLike[str]) -> str:
    return "file://" + url_quoted(path)


def shown(path: str | os.PathLike[str]) -> str:
    """A path fit for a terminal, a page or a notification: bytes that are not UTF-8
    become U+FFFD (the real name stays in the index and in JSON output)."""
    path = os.fspath(path)
    if path.isascii():
        return path
    return os.fsencode(path).decode("utf-8", "replace")
