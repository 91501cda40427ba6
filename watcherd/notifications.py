"""Desktop notifications over the session D-Bus (org.freedesktop.Notifications).

The daemon's writer thread only hands verdicts to `DesktopNotifier.add`, which never
blocks: a thread of its own talks to the bus, so a slow, missing or broken
notification server can never hold up a decision. Verdicts arriving within a few
seconds of each other form one burst and share one notification, replaced in place as
the burst grows. "Undo" asks the daemon (through a callback) to restore the files the
burst quarantined; "Show" opens the HTML report.

jeepney speaks D-Bus in pure Python (no C library, no event loop of its own), which is
why it was chosen: see README, Dependencies.
"""

from __future__ import annotations

import logging
import os
import queue
import shutil
import stat
import subprocess
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from . import private
from .pathtext import file_url

log = logging.getLogger("watcherd")

BUS_NAME = "org.freedesktop.Notifications"
OBJECT_PATH = "/org/freedesktop/Notifications"
INTERFACE = "org.freedesktop.Notifications"

BURST_GAP = 5.0  # a verdict this long after the previous one starts a new notification
DEBOUNCE = 0.5  # wait this long for company before showing a burst's first verdict
MIN_UPDATE = 2.0  # replace a burst's notification at most this often
CALL_TIMEOUT = 5.0  # seconds to wait for the notification server to answer
THUMB_SIDE = 256
KEEP_BURSTS = 64  # bursts remembered for their Undo and Show buttons


class NotifyError(Exception):
    """No session bus, no notification server, or the server refused the call."""


def session_bus_address(environ: Mapping[str, str] | None = None) -> str | None:
    """Where the session bus is: the environment says, else the user manager's socket.

    A systemd user service started before any graphical login has no
    DBUS_SESSION_BUS_ADDRESS of its own, but with dbus-user-session the bus listens at
    $XDG_RUNTIME_DIR/bus, which is what a desktop session uses too.
    """
    env = os.environ if environ is None else environ
    address = env.get("DBUS_SESSION_BUS_ADDRESS")
    if address:
        return address
    runtime = env.get("XDG_RUNTIME_DIR") or f"/run/user/{os.getuid()}"
    socket_path = os.path.join(runtime, "bus")
    try:
        if stat.S_ISSOCK(os.stat(socket_path).st_mode):
            return f"unix:path={socket_path}"
    except OSError:
        pass
    return None


@dataclass
class Item:
    path: str  # where the duplicate is now (in quarantine, when it was moved)
    original_path: str  # where it was found
    kept_path: str
    size: int
    moved: bool
    action: str  # flagged | quarantined | would quarantine | linked | would link


@dataclass
class Burst:
    key: int
    items: list[Item] = field(default_factory=list)
    notification_id: int = 0  # the server's id, once shown
    last_item: float = 0.0
    last_sent: float = 0.0
    dirty: bool = False
    thumbnail: str | None = None
    sealed: bool = False  # undone or closed: later verdicts start a new burst


def _folder_names(items: list[Item]) -> str:
    names: list[str] = []
    for it in items:
        name = Path(it.original_path).parent.name or "/"
        if name not in names:
            names.append(name)
    if len(names) == 1:
        return names[0]
    if len(names) == 2:
        return f"{names[0]} and {names[1]}"
    return f"{names[0]}, {names[1]} and {len(names) - 2} more"


def describe(items: list[Item]) -> tuple[str, str]:
    """(summary, body) of a burst, as the user reads it."""
    from .report import human_size

    where = _folder_names(items)
    moved = [it for it in items if it.moved]
    linked = [it for it in items if not it.moved and it.action == "linked"]
    flagged = [it for it in items if not it.moved and it.action != "linked"]
    parts = []
    if moved:
        parts.append(f"{human_size(sum(it.size for it in moved))} moved to quarantine")
    if linked:
        parts.append(f"{human_size(sum(it.size for it in linked))} freed by links")
    if flagged:
        dry = all(it.action in ("would quarantine", "would link") for it in flagged)
        verb = "would be moved (dry run)" if dry else "could be freed"
        parts.append(f"{human_size(sum(it.size for it in flagged))} {verb}")
    if len(items) == 1:
        it = items[0]
        kept = Path(it.kept_path)
        summary = f"Duplicate in {where}"
        body = f"{Path(it.original_path).name} is a copy of {kept.name} (in {kept.parent.name})"
        return summary, body + "\n" + "; ".join(parts)
    return f"{len(items)} duplicates in {where}", "; ".join(parts)


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def make_thumbnail(source: str, dest: Path) -> str | None:
    """A small JPEG of the duplicate for the `image-path` hint, or None if unreadable.

    The server is given a thumbnail rather than the photo itself: it may be a 40 MB
    original, and Undo moves the file away while the notification still shows it.
    """
    from .fingerprint import thumbnail_of

    jpeg = thumbnail_of(source, THUMB_SIDE)
    if jpeg is None:
        return None
    try:
        private.folder(dest.parent)
        private.write(dest, jpeg)
    except OSError as exc:
        log.debug("no thumbnail for %s: %s", source, exc)
        return None
    return file_url(dest)


def _router(conn):
    """jeepney's threaded router, quiet when the bus goes away under it.

    Its receiver thread would die with a traceback on stderr; a lost bus is an
    expected event here (logout, a restarted bus): the next call fails cleanly and the
    notifier connects again.
    """
    from jeepney.io.threading import DBusRouter

    class Router(DBusRouter):
        def _receiver(self) -> None:
            try:
                super()._receiver()
            except Exception as exc:  # OSError, and jeepney's own clean-up racing it
                log.debug("session bus connection lost: %s", exc)

    return Router(conn)


class Connection:
    """One connection to the notification server on the session bus."""

    def __init__(self, address: str, signals: queue.SimpleQueue | None = None) -> None:
        from jeepney import DBusAddress, MatchRule
        from jeepney.bus_messages import message_bus
        from jeepney.io.threading import Proxy, open_dbus_connection

        try:
            self._conn = open_dbus_connection(address, auth_timeout=CALL_TIMEOUT)
        except Exception as exc:
            raise NotifyError(f"cannot connect to the session bus at {address}: {exc}") from exc
        self.router = _router(self._conn)
        self.address = DBusAddress(OBJECT_PATH, bus_name=BUS_NAME, interface=INTERFACE)
        self._filter = None
        try:
            if signals is not None:
                rule = MatchRule(type="signal", interface=INTERFACE, path=OBJECT_PATH)
                Proxy(message_bus, self.router, timeout=CALL_TIMEOUT).AddMatch(rule)
                self._filter = self.router.filter(rule, queue=signals)
            self.capabilities = set(self.call("GetCapabilities", "", ())[0])
        except Exception as exc:
            self.close()
            if isinstance(exc, NotifyError):
                raise
            raise NotifyError(f"session bus at {address}: {type(exc).__name__}: {exc}") from exc

    def call(self, method: str, signature: str, body: tuple) -> tuple:
        from jeepney import new_method_call
        from jeepney.wrappers import DBusErrorResponse, unwrap_msg

        msg = new_method_call(self.address, method, signature, body)
        try:
            return unwrap_msg(self.router.send_and_get_reply(msg, timeout=CALL_TIMEOUT))
        except DBusErrorResponse as exc:
            if exc.name.endswith((".ServiceUnknown", ".NameHasNoOwner")):
                raise NotifyError(
                    "no notification server is running in this session (nothing owns "
                    f"{BUS_NAME} on the session bus: {exc.name})"
                ) from exc
            raise NotifyError(f"{BUS_NAME}.{method}: {exc.name}: {exc.data}") from exc
        except Exception as exc:  # timeout, connection dropped
            raise NotifyError(f"{BUS_NAME}.{method}: {type(exc).__name__}: {exc}") from exc

    def notify(
        self,
        summary: str,
        body: str,
        replaces_id: int = 0,
        actions: list[tuple[str, str]] | None = None,
        image: str | None = None,
    ) -> int:
        if "body-markup" in self.capabilities:
            body = _escape(body)
        hints: dict[str, tuple[str, object]] = {"urgency": ("y", 0)}
        if image:
            hints["image-path"] = ("s", image)
        flat = [s for pair in actions or [] for s in pair]
        args = ("watcherd", replaces_id, "", summary, body, flat, hints, -1)
        return int(self.call("Notify", "susssasa{sv}i", args)[0])

    def server_information(self) -> tuple[str, str, str, str]:
        return tuple(self.call("GetServerInformation", "", ()))

    def close(self) -> None:
        if self._filter is not None:
            self._filter.close()
            self._filter = None
        try:
            self.router.close()
        finally:
            self._conn.close()


def send_test(environ: Mapping[str, str] | None = None) -> str:
    """Send one notification now; return who showed it (raises NotifyError)."""
    address = session_bus_address(environ)
    if address is None:
        raise NotifyError("no session bus: DBUS_SESSION_BUS_ADDRESS is unset and there is "
                          "no $XDG_RUNTIME_DIR/bus")  # fmt: skip
    conn = Connection(address)
    try:
        name, vendor, version, _spec = conn.server_information()
        nid = conn.notify(
            "watcherd notifications work",
            "Duplicates found while watching will be announced like this.",
        )
    finally:
        conn.close()
    return f"notification {nid} shown by {name} {version} ({vendor})"


def open_with_desktop(target: str) -> None:
    """Hand a folder or file to the desktop's opener, without waiting for it."""
    opener = shutil.which("xdg-open")
    if opener is None:
        log.warning("cannot show %s: xdg-open is not installed", target,
                    extra={"event": "notify", "reason": "no xdg-open"})  # fmt: skip
        return
    subprocess.Popen(
        [opener, target],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )


class DesktopNotifier:
    """Coalesces verdicts into notifications and answers their buttons, in a thread.

    `on_undo(paths)` is called from this thread with the quarantine paths of a burst
    when the user presses Undo; the daemon queues the restore for its writer thread
    and reports back through `restored`.
    """

    def __init__(
        self,
        on_undo: Callable[[int, list[str]], None],
        environ: Mapping[str, str] | None = None,
        cache_dir: Path | None = None,
        show_command: list[str] | None = None,
    ) -> None:
        self.on_undo = on_undo
        self.show_command = show_command
        self.environ = dict(os.environ if environ is None else environ)
        if cache_dir is None:
            from platformdirs import user_cache_path

            cache_dir = user_cache_path("watcherd") / "notifications"
        self.cache_dir = cache_dir
        self.inbox: queue.SimpleQueue = queue.SimpleQueue()
        self.conn: Connection | None = None
        self.bursts: dict[int, Burst] = {}  # by key
        self.by_notification: dict[int, Burst] = {}
        self.current: Burst | None = None
        self._keys = iter(range(1, 1 << 62))
        self._unavailable: str | None = None  # why the last attempt failed (logged once)
        self._wait_for_news = False  # after a failure, retry when the next verdict comes
        self._thread = threading.Thread(target=self._run, name="watcherd-notify", daemon=True)

    # -- called from the daemon's thread -------------------------------------------------

    def start(self) -> None:
        shutil.rmtree(self.cache_dir, ignore_errors=True)  # thumbnails of a past run
        self._thread.start()

    def add(self, verdict) -> None:
        """A duplicate was decided (never blocks)."""
        self.inbox.put(("verdict", verdict, time.monotonic()))

    def restored(self, key: int, restored: list[str], failed: list[str]) -> None:
        self.inbox.put(("restored", key, restored, failed))

    def stop(self, timeout: float = 2.0) -> None:
        if self._thread.is_alive():
            self.inbox.put(("stop",))
            self._thread.join(timeout)
        shutil.rmtree(self.cache_dir, ignore_errors=True)

    # -- the thread ----------------------------------------------------------------------

    def _run(self) -> None:
        while True:
            try:
                msg = self.inbox.get(timeout=self._timeout())
            except queue.Empty:
                msg = None
            try:
                if isinstance(msg, tuple) and msg[0] == "stop":
                    break
                if msg is not None:
                    self._handle(msg)
                self._flush()
            except Exception:  # a bug here must not take notifications down for good
                log.exception("notification thread error", extra={"event": "error"})
        if self.conn is not None:
            self.conn.close()
            self.conn = None

    def _timeout(self) -> float | None:
        b = self.current
        if b is None or not b.dirty or self._wait_for_news:
            return None
        return max(0.0, self._due(b) - time.monotonic())

    def _due(self, b: Burst) -> float:
        if not b.notification_id:
            return b.last_item + DEBOUNCE
        return max(b.last_item + DEBOUNCE, b.last_sent + MIN_UPDATE)

    def _handle(self, msg) -> None:
        if isinstance(msg, tuple) and msg[0] == "verdict":
            self._on_verdict(msg[1], msg[2])
        elif isinstance(msg, tuple) and msg[0] == "restored":
            self._on_restored(*msg[1:])
        else:  # a D-Bus signal from the notification server
            self._on_signal(msg)

    def _on_verdict(self, v, now: float) -> None:
        moved = v.moved_to is not None
        item = Item(v.moved_to or v.redundant_path, v.redundant_path, v.kept_path, v.size,
                    moved, v.action)  # fmt: skip
        b = self.current
        if b is None or b.sealed or now - b.last_item > BURST_GAP:
            b = Burst(next(self._keys))
            self.bursts[b.key] = b
            self.current = b
            self._forget_old_bursts()
        b.items.append(item)
        b.last_item = now
        b.dirty = True
        self._wait_for_news = False

    def _forget_old_bursts(self) -> None:
        """Keep the last KEEP_BURSTS bursts (their buttons still work), not every burst
        of a daemon that runs for months."""
        while len(self.bursts) > KEEP_BURSTS:
            key = next(iter(self.bursts))  # dicts keep insertion order: the oldest
            old = self.bursts.pop(key)
            if self.by_notification.get(old.notification_id) is old:
                del self.by_notification[old.notification_id]
            (self.cache_dir / f"{key}.jpg").unlink(missing_ok=True)

    def _connect(self) -> Connection | None:
        if self.conn is not None:
            return self.conn
        address = session_bus_address(self.environ)
        try:
            if address is None:
                raise NotifyError("no session bus (DBUS_SESSION_BUS_ADDRESS is unset)")
            self.conn = Connection(address, signals=self.inbox)
        except NotifyError as exc:
            self._fail(str(exc))
            return None
        if self._unavailable is not None:
            log.info("desktop notifications available again",
                     extra={"event": "notify", "reason": "available"})  # fmt: skip
        self._unavailable = None
        return self.conn

    def _fail(self, why: str) -> None:
        """Log once per outage; the next burst tries again."""
        if self._unavailable is None:
            log.warning(
                "desktop notifications unavailable: %s; will try again with the next duplicate",
                why,
                extra={"event": "notify_unavailable", "reason": why},
            )
        self._unavailable = why
        self._wait_for_news = True
        if self.conn is not None:
            self.conn.close()
            self.conn = None

    def _flush(self) -> None:
        b = self.current
        if b is None or not b.dirty or self._wait_for_news or time.monotonic() < self._due(b):
            return
        conn = self._connect()
        if conn is None:
            return
        if b.thumbnail is None:
            first = b.items[0]
            b.thumbnail = make_thumbnail(first.path, self.cache_dir / f"{b.key}.jpg") or ""
        summary, body = describe(b.items)
        actions = [("default", "Show"), ("show", "Show")]
        if any(it.moved for it in b.items):
            actions.append(("undo", "Undo"))
        try:
            nid = conn.notify(summary, body, b.notification_id, actions, b.thumbnail or None)
        except NotifyError as exc:
            self._fail(str(exc))
            return
        b.dirty = False
        if nid != b.notification_id:
            self.by_notification.pop(b.notification_id, None)
            b.notification_id = nid
            self.by_notification[nid] = b
        b.last_sent = time.monotonic()
        log.debug("notified: %s", summary, extra={"event": "notify", "id": nid})

    def _on_signal(self, msg) -> None:
        from jeepney import HeaderFields

        member = msg.header.fields.get(HeaderFields.member)
        body = msg.body
        if not body:
            return
        b = self.by_notification.get(int(body[0]))
        if b is None:
            return  # another program's notification
        if member == "ActionInvoked":
            action = body[1]
            if action == "undo":
                paths = [it.path for it in b.items if it.moved]
                b.sealed = True
                log.info("undo pressed: restoring %d file(s)", len(paths),
                         extra={"event": "undo", "count": len(paths)})  # fmt: skip
                self.on_undo(b.key, paths)
            elif action in ("show", "default"):
                self._show(b)
        elif member == "NotificationClosed":
            # Closed by the user or expired: a later verdict gets a fresh notification.
            b.sealed = True
            self.by_notification.pop(b.notification_id, None)
            b.notification_id = 0  # anything still unsent goes out as a new notification
            if b.thumbnail:
                (self.cache_dir / f"{b.key}.jpg").unlink(missing_ok=True)

    def _show(self, b: Burst) -> None:
        """The HTML report (side by side, with restore commands), made by a separate
        `watcherd report` process that reads the index while the daemon writes it; the
        folder holding the duplicates when there is no such command."""
        if not self.show_command:
            open_with_desktop(str(Path(b.items[-1].path).parent))
            return
        try:
            subprocess.Popen(
                self.show_command,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                start_new_session=True,
            )
        except OSError as exc:
            log.warning("cannot show the report: %s", exc,
                        extra={"event": "notify", "reason": str(exc)})  # fmt: skip

    def _on_restored(self, key: int, restored: list[str], failed: list[str]) -> None:
        b = self.bursts.get(key)
        conn = self._connect()
        if b is None or conn is None:
            return
        where = _folder_names(b.items)
        summary = f"Restored {len(restored)} file{'s' if len(restored) != 1 else ''} to {where}"
        body = (
            f"{len(failed)} could not be restored: see `watcherd quarantine list`" if failed else ""
        )
        try:
            nid = conn.notify(summary, body, b.notification_id)
        except NotifyError as exc:
            self._fail(str(exc))
            return
        self.by_notification.pop(b.notification_id, None)
        b.notification_id = nid
