"""A real `watcherd run` subprocess whose JSON log lines tests can wait on."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path


def poll_until(check: Callable[[], bool], timeout: float = 60, interval: float = 0.1) -> None:
    """Poll `check` until it holds, failing after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout} s: {check}")
        time.sleep(interval)


class Daemon:
    def __init__(
        self,
        tmp_path: Path,
        roots: list[Path] | None = None,
        config: str = "",
        env: dict[str, str] | None = None,
        db: Path | None = None,
        run_args: list[str] | None = None,
        own_session: bool = False,
        debug: bool = False,
    ) -> None:
        """`own_session`: the daemon leads a process group of its own, so that a test
        can signal the whole group (as a terminal's Ctrl-C does) without hitting pytest."""
        self.own_session = own_session
        self.debug = debug  # -vv: debug lines too (each retry of a busy or full index)
        self.run_args = run_args or []
        self.db = db or tmp_path / "index.sqlite3"
        self.config = tmp_path / "config.toml"
        if not self.config.exists() or config:
            self.config.write_text("settle_seconds = 0.3\nworkers = 2\n" + config)
        self.roots = [str(r) for r in roots or []]
        # faulthandler: a daemon that hangs can be made to print every thread's stack
        self.env = {**os.environ, "PYTHONFAULTHANDLER": "1", **(env or {})}
        self.events: list[dict] = []
        self.other: list[str] = []
        self._cond = threading.Condition()
        self.proc: subprocess.Popen | None = None

    def start(self, wait_ready: bool = True) -> Daemon:
        self.proc = subprocess.Popen(
            [
                sys.executable, "-m", "watcherd", "--config", str(self.config),
                "--db", str(self.db), "--log-format", "json", *(["-vv"] if self.debug else []),
                "run", *self.run_args, *self.roots,
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            env=self.env,
            start_new_session=self.own_session,
        )  # fmt: skip
        self.reader = threading.Thread(target=self._read, daemon=True)  # ends at EOF
        self.reader.start()
        if wait_ready:
            self.wait_for(lambda e: e["event"] == "ready", what="ready")
        return self

    def _read(self) -> None:
        assert self.proc is not None and self.proc.stderr is not None
        for line in self.proc.stderr:
            with self._cond:
                try:
                    self.events.append(json.loads(line))
                except ValueError:
                    self.other.append(line)
                self._cond.notify_all()
        with self._cond:
            self._cond.notify_all()

    def wait_for(
        self, match: Callable[[dict], bool], count: int = 1, timeout: float = 60, what: str = ""
    ) -> list[dict]:
        """Block until `count` log events match, or fail with the log so far."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                found = [e for e in self.events if match(e)]
                if len(found) >= count:
                    return found
                remaining = deadline - time.monotonic()
                exited = self.proc is not None and self.proc.poll() is not None
                if remaining <= 0 or exited:
                    raise AssertionError(
                        f"waited for {count} x {what or match}: found {len(found)}; "
                        f"exit={self.proc.poll() if self.proc else None}\n" + self.dump()
                    )
                self._cond.wait(min(remaining, 0.5))

    def wait_path(self, event: str, path: Path | str, count: int = 1, timeout: float = 60):
        p = str(path)
        return self.wait_for(
            lambda e: e["event"] == event and e.get("path") == p, count, timeout, f"{event} {p}"
        )

    def wait_decided(self, path: Path | str, timeout: float = 60) -> dict:
        """The decision that covers `path`: indexed, error, or either side of a duplicate."""
        p = str(path)
        return self.wait_for(
            lambda e: (
                e["event"] in ("indexed", "duplicate", "similar", "error")
                and p in (e.get("path"), e.get("original"))
            ),
            timeout=timeout,
            what=f"decision on {p}",
        )[0]

    def of(self, event: str, path: Path | str | None = None) -> list[dict]:
        with self._cond:
            return [
                e
                for e in self.events
                if e["event"] == event and (path is None or e.get("path") == str(path))
            ]

    def dump(self) -> str:
        return "\n".join(json.dumps(e) for e in self.events[-80:]) + "".join(self.other[-40:])

    def signal(self, sig: int) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)

    def stop(self, timeout: float = 20) -> int:
        """SIGTERM, and the daemon must be gone within `timeout` seconds (a deadline
        for a hung stop, generous because a loaded CI machine is slow, not a wait)."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            seen = len(self.other)
            self.proc.send_signal(signal.SIGABRT)  # faulthandler prints where it hangs
            self.proc.wait(timeout=30)
            with self._cond:
                self._cond.wait_for(lambda: len(self.other) > seen, timeout=5)
            stacks = "".join(self.other[seen:])
            raise AssertionError(
                f"the daemon did not stop within {timeout} s of SIGTERM; its threads:\n"
                f"{stacks}\nits last log lines:\n{self.dump()}"
            ) from None

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait(timeout=10)

    def close(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)
