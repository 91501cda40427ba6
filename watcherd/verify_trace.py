"""WATCHERD_VERIFY_TRACE=FILE: every check verification makes, as a JSON line.

How the limits in verify.py were chosen: run benchmarks/accuracy.py or
benchmarks/trust.py with it and join the lines (both paths, the pose, the cell
statistics, the verdict) on the benchmarks' labels. Off unless the variable is set.
"""

from __future__ import annotations

import json
import os

from .index import Index
from .verify import Check


class Trace:
    def __init__(self, index: Index) -> None:
        self.index = index
        path = os.environ.get("WATCHERD_VERIFY_TRACE")
        self._out = open(path, "a", encoding="utf-8") if path else None  # noqa: SIM115

    def write(self, path: str, file_id: int, transform: str, found: Check) -> None:
        """One check: the newcomer at `path` against indexed file `file_id`."""
        if self._out is None:
            return
        other = self.index.get(file_id)
        row = {"new": path, "old": other.path if other else None, "transform": transform}
        row.update({k: getattr(found, k) for k in found.__slots__})
        row.update(copy=found.copy, shot=found.shot)
        self._out.write(json.dumps(row) + "\n")
        self._out.flush()
