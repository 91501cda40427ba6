"""What opening an index can refuse, on any backend."""

from __future__ import annotations


class NotAnIndex(Exception):
    """`--db` names something that is not (and cannot become) a watcherd index: the
    message says what, in one line."""


class SchemaTooNew(Exception):
    """The index was written by a newer watcherd; refusing protects the user's data."""
