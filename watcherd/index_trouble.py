"""When the daemon cannot write its index: another process held it past the busy
timeout, its disk is full, or (an index on a server) the server is down or the
connection was lost, or the server gave this transaction up for another's.

What the daemon did in that step is dropped and the folders are rescanned later, so no
event is lost for good: soon after a busy spell, backing off up to a minute while the
disk stays full. It is said once per change of state, not at every try (a full disk
was logged as "index busy" some 25 times a second), and its end is said once, when
something was written again (an empty commit proves nothing).
"""

from __future__ import annotations

import logging

log = logging.getLogger("watcherd")

MAX_WAIT = 60.0  # seconds between tries while the disk stays full


class IndexTrouble:
    def __init__(self) -> None:
        self.state: str | None = None  # "disk full" or "index busy"
        self._wait = 0.0
        self._mark = 0

    def failed(self, exc: BaseException, written: int, settle: float) -> float:
        """The step failed with `exc` after `written` things were written so far:
        returns the seconds to wait before the rescan. A full disk and a server that
        cannot be reached are waited out, backing off; a conflict is tried again soon."""
        from . import db

        reason = str(getattr(exc, "orig", exc)).strip().splitlines()[0]
        if db.conflict(exc):  # another machine's transaction won: nothing is wrong
            log.debug("transaction conflict, retrying: %s", reason,
                      extra={"event": "retry", "reason": "conflict"})  # fmt: skip
            return settle
        server = db.unreachable(exc)
        full = server or "full" in reason.lower()
        state = "index server unreachable" if server else "disk full" if full else "index busy"
        self._mark = written
        if state != self.state:
            self.state, self._wait = state, settle
            log.error(
                "%s, will rescan: %s%s",
                state,
                reason,
                "; nothing is decided until there is room for the index"
                if full and not server
                else "",
                extra={"event": "error", "reason": state, "detail": reason},
            )
        else:
            self._wait = min(MAX_WAIT, self._wait * 2)
            log.debug(
                "still %s: retrying in %.1f s",
                state,
                self._wait,
                extra={"event": "retry", "reason": state},
            )
        return self._wait if full else settle

    def ok(self, written: int) -> None:
        """A step succeeded; the trouble is over once more was written than before it."""
        if self.state is not None and written > self._mark:
            log.warning(
                "the index is writable again (%s is over)",
                self.state,
                extra={"event": "recovered", "reason": self.state},
            )
            self.state = None
