"""A real session bus (Debian's dbus-daemon) and a small notification server on it.

The server owns org.freedesktop.Notifications and implements the interface's methods
the way a desktop's server does (ids, replaces_id, capabilities), records every call,
and can emit the ActionInvoked and NotificationClosed signals a user's click causes.
"""

from __future__ import annotations

import itertools
import queue
import shutil
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from jeepney import DBusAddress, MatchRule, new_error, new_method_return, new_signal
from jeepney.bus_messages import message_bus
from jeepney.io.threading import DBusRouter, Proxy, open_dbus_connection

NAME = "org.freedesktop.Notifications"
PATH = "/org/freedesktop/Notifications"


class SessionBus:
    """`dbus-daemon --session` listening on a socket in the test's folder."""

    def __init__(self, socket_path: Path) -> None:
        exe = shutil.which("dbus-daemon")
        if exe is None:
            pytest.skip("dbus-daemon is not installed (Debian package dbus; .ci/run installs it)")
        self.address = f"unix:path={socket_path}"
        self.proc = subprocess.Popen(
            [exe, "--session", "--nofork", "--nopidfile", "--print-address=1",
             f"--address={self.address}"],
            stdout=subprocess.PIPE,
            text=True,
        )  # fmt: skip
        line = self.proc.stdout.readline()  # printed once the bus listens
        if not line.startswith("unix:"):
            self.close()
            raise RuntimeError(f"dbus-daemon did not start: {line!r}")

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=10)


class NotificationServer:
    """org.freedesktop.Notifications on `address`, recording each call."""

    def __init__(self, address: str, capabilities=("actions", "body", "body-markup")) -> None:
        self.capabilities = list(capabilities)
        self.calls: list[dict] = []
        self.open: set[int] = set()
        self._ids = itertools.count(1)
        self._cond = threading.Condition()
        self._conn = open_dbus_connection(address)
        self.router = DBusRouter(self._conn)
        reply = Proxy(message_bus, self.router, timeout=5).RequestName(NAME, 4)
        assert reply == (1,), f"could not own {NAME}: {reply}"
        self._inbox: queue.Queue = queue.Queue()
        self._filter = self.router.filter(
            MatchRule(type="method_call", interface=NAME, path=PATH), queue=self._inbox
        )
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while True:
            msg = self._inbox.get()
            if msg is None:
                return
            method = msg.header.fields.get(3)
            body = msg.body
            if method == "Notify":
                app, replaces, icon, summary, text, actions, hints, timeout = body
                with self._cond:
                    nid = replaces if replaces in self.open else next(self._ids)
                    self.open.add(nid)
                    self.calls.append(
                        dict(
                            method="Notify", id=nid, app_name=app, replaces_id=replaces,
                            app_icon=icon, summary=summary, body=text,
                            actions=dict(zip(actions[::2], actions[1::2], strict=True)),
                            hints={k: v[1] for k, v in hints.items()}, timeout=timeout,
                        )
                    )  # fmt: skip
                    self._cond.notify_all()
                self.router.send(new_method_return(msg, "u", (nid,)))
            elif method == "GetCapabilities":
                self.router.send(new_method_return(msg, "as", (self.capabilities,)))
            elif method == "GetServerInformation":
                info = ("test-server", "watcherd tests", "1.0", "1.2")
                self.router.send(new_method_return(msg, "ssss", info))
            elif method == "CloseNotification":
                self.close_notification(body[0], 3)
                self.router.send(new_method_return(msg))
            else:
                self.router.send(new_error(msg, "org.freedesktop.DBus.Error.UnknownMethod"))

    def notifications(self) -> list[dict]:
        with self._cond:
            return [c for c in self.calls if c["method"] == "Notify"]

    def wait_for(self, match: Callable[[dict], bool], timeout: float = 30) -> dict:
        """The first Notify call that matches, waiting for it if need be."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for c in self.calls:
                    if c["method"] == "Notify" and match(c):
                        return c
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise AssertionError(f"no matching notification; calls: {self.calls}")
                self._cond.wait(remaining)

    def _signal(self, member: str, signature: str, body: tuple) -> None:
        emitter = DBusAddress(PATH, interface=NAME)
        self.router.send(new_signal(emitter, member, signature, body))

    def invoke(self, nid: int, action: str) -> None:
        """The user clicked a button (or the body, for "default")."""
        self._signal("ActionInvoked", "us", (nid, action))

    def close_notification(self, nid: int, reason: int = 2) -> None:
        """Dismissed by the user (2), expired (1) or closed by a call (3)."""
        with self._cond:
            self.open.discard(nid)
        self._signal("NotificationClosed", "uu", (nid, reason))

    def close(self) -> None:
        self._inbox.put(None)
        self._filter.close()
        self.router.close()
        self._conn.close()
