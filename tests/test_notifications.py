"""Desktop notifications through a real dbus-daemon and a notification server on it."""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import stat
import threading
from pathlib import Path
from urllib.parse import unquote, urlparse

import pytest
from conftest import run_cli
from daemon_harness import poll_until
from helpers import photo, save
from notify_server import NotificationServer, SessionBus

from watcherd.notifications import DesktopNotifier, Item, describe, session_bus_address
from watcherd.pipeline import Verdict


def verdict(folder: Path, name: str, moved: bool = True, size: int = 1_400_000) -> Verdict:
    dup = folder / name
    return Verdict(
        redundant_path=str(dup),
        kept_path=str(folder.parent / "Pictures" / "IMG_1.jpg"),
        kind="near",
        distance=2,
        transform=None,
        size=size,
        action="quarantined" if moved else "flagged",
        moved_to=str(folder.parent / "quarantine" / name) if moved else None,
    )


# -- what the notification says ------------------------------------------------------------


def test_one_duplicate_names_the_file_and_its_original():
    item = Item("/q/IMG-2.jpg", "/x/WhatsApp Images/IMG-2.jpg", "/x/Pictures/IMG_1.jpg",
                4_200_000, True, "quarantined")  # fmt: skip
    summary, body = describe([item])
    assert summary == "Duplicate in WhatsApp Images"
    assert body.splitlines() == [
        "IMG-2.jpg is a copy of IMG_1.jpg (in Pictures)",
        "4.2 MB moved to quarantine",
    ]


def test_a_burst_counts_files_folders_and_bytes():
    items = [
        Item(f"/q/{i}.jpg", f"/x/{folder}/{i}.jpg", "/x/P/a.jpg", 1_000_000, moved, "quarantined")
        for i, (folder, moved) in enumerate(
            [("WhatsApp Images", True), ("WhatsApp Images", True), ("Downloads", False)]
        )
    ]
    items[2].action = "flagged"
    summary, body = describe(items)
    assert summary == "3 duplicates in WhatsApp Images and Downloads"
    assert body == "2.0 MB moved to quarantine; 1.0 MB could be freed"


def test_session_bus_found_from_the_runtime_dir_when_the_environment_has_none(tmp_path):
    assert session_bus_address({"XDG_RUNTIME_DIR": str(tmp_path)}) is None
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.bind(str(tmp_path / "bus"))
    try:
        env = {"XDG_RUNTIME_DIR": str(tmp_path)}
        assert session_bus_address(env) == f"unix:path={tmp_path}/bus"
        env["DBUS_SESSION_BUS_ADDRESS"] = "unix:path=/elsewhere"
        assert session_bus_address(env) == "unix:path=/elsewhere"
    finally:
        sock.close()


# -- the notifier on a real bus ------------------------------------------------------------


class UndoCalls:
    def __init__(self) -> None:
        self.calls: list[tuple[int, list[str]]] = []
        self.event = threading.Event()

    def __call__(self, key: int, paths: list[str]) -> None:
        self.calls.append((key, paths))
        self.event.set()


def notifier_on(address: str | None, tmp_path: Path, undo=None) -> DesktopNotifier:
    env = {"XDG_RUNTIME_DIR": str(tmp_path)}
    if address:
        env["DBUS_SESSION_BUS_ADDRESS"] = address
    n = DesktopNotifier(undo or UndoCalls(), env, cache_dir=tmp_path / "cache")
    n.start()
    return n


def test_a_burst_is_one_notification_replaced_in_place(tmp_path, session_bus, notification_server):
    wa = tmp_path / "WhatsApp Images"
    (tmp_path / "quarantine").mkdir()
    save(photo(1), tmp_path / "quarantine" / "IMG-1.jpg")
    undo = UndoCalls()
    n = notifier_on(session_bus.address, tmp_path, undo)
    try:
        n.add(verdict(wa, "IMG-1.jpg"))
        first = notification_server.wait_for(lambda c: True)
        for i in (2, 3):
            n.add(verdict(wa, f"IMG-{i}.jpg"))
        last = notification_server.wait_for(lambda c: c["summary"].startswith("3 "))
    finally:
        n.stop()
    shown = notification_server.notifications()
    assert {c["id"] for c in shown} == {first["id"]}, "later updates replace the first"
    assert all(c["replaces_id"] == first["id"] for c in shown[1:])
    assert first["summary"] == "Duplicate in WhatsApp Images"
    assert "IMG-1.jpg is a copy of IMG_1.jpg" in first["body"]
    assert last["summary"] == "3 duplicates in WhatsApp Images"
    assert last["body"] == "4.2 MB moved to quarantine"
    assert last["app_name"] == "watcherd"
    assert last["hints"]["urgency"] == 0
    assert last["actions"] == {"default": "Show", "show": "Show", "undo": "Undo"}
    thumb = Path(unquote(urlparse(last["hints"]["image-path"]).path))
    assert last["hints"]["image-path"].startswith("file://")
    assert not thumb.exists(), "thumbnails are cleaned up when the notifier stops"


def test_undo_hands_the_bursts_quarantined_files_back(tmp_path, session_bus, notification_server):
    wa = tmp_path / "WhatsApp Images"
    undo = UndoCalls()
    n = notifier_on(session_bus.address, tmp_path, undo)
    try:
        n.add(verdict(wa, "a.jpg"))
        n.add(verdict(wa, "b.jpg", moved=False))
        n.add(verdict(wa, "c.jpg"))
        shown = notification_server.wait_for(lambda c: c["summary"].startswith("3 "))
        notification_server.invoke(shown["id"] + 1000, "undo")  # someone else's: ignored
        notification_server.invoke(shown["id"], "undo")
        assert undo.event.wait(10)
        key, paths = undo.calls[0]
        assert paths == [str(tmp_path / "quarantine" / "a.jpg"), str(tmp_path / "quarantine/c.jpg")]
        assert len(undo.calls) == 1
        n.restored(key, paths, [])
        done = notification_server.wait_for(lambda c: c["summary"].startswith("Restored"))
        assert done["summary"] == "Restored 2 files to WhatsApp Images"
        assert done["id"] == shown["id"] and "undo" not in done["actions"]
        # After Undo the burst is over: the next duplicate gets a notification of its own.
        n.add(verdict(wa, "d.jpg"))
        fresh = notification_server.wait_for(lambda c: "d.jpg" in c["body"])
        assert fresh["replaces_id"] == 0 and fresh["id"] != shown["id"]
    finally:
        n.stop()


def test_closed_notification_is_not_reused(tmp_path, session_bus, notification_server):
    wa = tmp_path / "Downloads"
    n = notifier_on(session_bus.address, tmp_path)
    try:
        n.add(verdict(wa, "a.jpg", moved=False))
        shown = notification_server.wait_for(lambda c: True)
        assert "undo" not in shown["actions"], "nothing was moved: nothing to undo"
        poll_until(lambda: shown["id"] in n.by_notification, timeout=10)
        notification_server.close_notification(shown["id"], 2)
        poll_until(lambda: shown["id"] not in n.by_notification, timeout=10)
        n.add(verdict(wa, "b.jpg", moved=False))
        again = notification_server.wait_for(lambda c: "b.jpg" in c["body"])
        assert again["replaces_id"] == 0
    finally:
        n.stop()


def test_markup_is_escaped_only_for_servers_that_read_it(tmp_path, session_bus):
    plain = NotificationServer(session_bus.address, capabilities=("body",))
    n = notifier_on(session_bus.address, tmp_path)
    try:
        n.add(verdict(tmp_path / "Tom & Jerry", "<b>.jpg", moved=False))
        shown = plain.wait_for(lambda c: True)
        assert "<b>.jpg" in shown["body"]
    finally:
        n.stop()
        plain.close()
    marked = NotificationServer(session_bus.address, capabilities=("body", "body-markup"))
    n = notifier_on(session_bus.address, tmp_path)
    try:
        n.add(verdict(tmp_path / "Tom & Jerry", "<b>.jpg", moved=False))
        shown = marked.wait_for(lambda c: True)
        assert "&lt;b&gt;.jpg" in shown["body"] and "<b>" not in shown["body"]
    finally:
        n.stop()
        marked.close()


@pytest.fixture
def logs(caplog, monkeypatch):
    caplog.set_level(logging.INFO, logger="watcherd")
    monkeypatch.setattr(logging.getLogger("watcherd"), "propagate", True)
    return caplog


def test_no_bus_is_logged_once_and_tried_again_later(tmp_path, logs):
    """The bus is missing, then appears at the address the notifier was given."""
    address = f"unix:path={tmp_path / 'later-bus'}"
    n = notifier_on(address, tmp_path)
    try:
        n.add(verdict(tmp_path / "A", "1.jpg"))
        poll_until(lambda: n._unavailable is not None, timeout=10)
        n.add(verdict(tmp_path / "A", "2.jpg"))
        poll_until(lambda: "2.jpg" in str(n.current.items), timeout=10)
        bus = SessionBus(tmp_path / "later-bus")
        server = NotificationServer(bus.address)
        try:
            n.add(verdict(tmp_path / "A", "3.jpg"))
            shown = server.wait_for(lambda c: True)
            assert shown["summary"] == "3 duplicates in A", "the whole burst, once the bus is up"
            poll_until(lambda: shown["id"] in n.by_notification, timeout=10)
        finally:
            server.close()
            bus.close()
    finally:
        n.stop()
    unavailable = [r for r in logs.records if getattr(r, "event", "") == "notify_unavailable"]
    assert len(unavailable) == 1, "one warning per outage, not one per duplicate"
    assert "cannot connect to the session bus" in unavailable[0].getMessage()


def test_a_running_bus_without_a_notification_server(tmp_path, session_bus, logs):
    n = notifier_on(session_bus.address, tmp_path)
    try:
        n.add(verdict(tmp_path / "A", "1.jpg"))
        poll_until(lambda: n._unavailable is not None, timeout=10)
    finally:
        n.stop()
    assert "ServiceUnknown" in n._unavailable


# -- the real daemon -----------------------------------------------------------------------


def test_daemon_notifies_a_burst_and_undo_restores_it(
    tmp_path, daemons, session_bus, notification_server
):
    pictures, wa = tmp_path / "Pictures", tmp_path / "WhatsApp Images"
    pictures.mkdir()
    wa.mkdir()
    originals = [save(photo(i), pictures / f"IMG_{i}.jpg") for i in range(3)]
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    opener = bin_dir / "xdg-open"  # stands in for the desktop: records what it was asked
    opener.write_text(f'#!/bin/sh\necho "$1" > {tmp_path / "opened"}\n')
    opener.chmod(opener.stat().st_mode | stat.S_IXUSR)
    d = daemons(
        tmp_path,
        [pictures, wa],
        config=f'action = "quarantine"\nquarantine_dir = "{tmp_path / "q"}"\n',
        env={
            "DBUS_SESSION_BUS_ADDRESS": session_bus.address,
            "PATH": f"{bin_dir}:{os.environ['PATH']}",
        },
    ).start()
    dups = []
    for i, src in enumerate(originals):
        dups.append(wa / f"IMG-WA{i}.jpg")
        dups[-1].write_bytes(src.read_bytes())
    for p in dups:
        d.wait_path("duplicate", p)
    shown = notification_server.wait_for(lambda c: c["summary"].startswith("3 "))
    assert shown["summary"] == "3 duplicates in WhatsApp Images"
    assert shown["body"].endswith("moved to quarantine")
    assert shown["hints"]["urgency"] == 0
    thumb = Path(unquote(urlparse(shown["hints"]["image-path"]).path))
    assert thumb.is_file() and thumb.stat().st_size > 0
    assert set(shown["actions"]) == {"default", "show", "undo"}
    assert not any(p.exists() for p in dups)

    notification_server.invoke(shown["id"], "show")
    poll_until(lambda: (tmp_path / "opened").exists(), timeout=30)
    opened = Path((tmp_path / "opened").read_text().strip())
    page = opened.read_text()
    assert opened.suffix == ".html" and all(f"{p.name}</div>" in page for p in dups)
    assert page.count('<code class="restore">') == 3, "a restore command for each copy"

    notification_server.invoke(shown["id"], "undo")
    done = notification_server.wait_for(lambda c: c["summary"].startswith("Restored"), 30)
    assert done["summary"] == "Restored 3 files to WhatsApp Images"
    assert all(p.exists() for p in dups)
    assert not any(f.is_file() for f in (tmp_path / "q").rglob("*"))
    listed = run_cli("--db", str(d.db), "quarantine", "list", "--format", "json")
    assert json.loads(listed.stdout) == []
    # The files came back into a watched folder: they are not quarantined again.
    d.wait_for(lambda e: e["event"] == "restored", count=3)
    extra = save(photo(7), pictures / "IMG_7.jpg")
    d.wait_decided(extra)
    assert all(p.exists() for p in dups)
    assert d.stop() == 0


def test_daemon_without_a_session_bus_keeps_deciding(tmp_path, daemons):
    pictures = tmp_path / "Pictures"
    pictures.mkdir()
    src = save(photo(1), pictures / "a.jpg")
    d = daemons(tmp_path, [pictures]).start()
    for i in range(2):
        dup = pictures / f"copy{i}.jpg"
        dup.write_bytes(src.read_bytes())
        d.wait_path("duplicate", dup)
    d.wait_for(lambda e: e["event"] == "notify_unavailable")
    assert len(d.of("notify_unavailable")) == 1
    assert d.stop() == 0


def test_notifications_false_sends_none(tmp_path, daemons, session_bus, notification_server):
    pictures = tmp_path / "Pictures"
    pictures.mkdir()
    src = save(photo(1), pictures / "a.jpg")
    d = daemons(
        tmp_path,
        [pictures],
        config="notifications = false\n",
        env={"DBUS_SESSION_BUS_ADDRESS": session_bus.address},
    ).start()
    (pictures / "quiet.jpg").write_bytes(src.read_bytes())
    d.wait_path("duplicate", pictures / "quiet.jpg")
    # Turned on by a reload: only what comes after is announced.
    d.config.write_text(d.config.read_text().replace("notifications = false", ""))
    d.signal(signal.SIGHUP)
    d.wait_for(lambda e: e["event"] == "reload")
    (pictures / "loud.jpg").write_bytes(src.read_bytes())
    d.wait_path("duplicate", pictures / "loud.jpg")
    shown = notification_server.wait_for(lambda c: True)
    assert "loud.jpg" in shown["body"]
    assert not any("quiet.jpg" in c["body"] for c in notification_server.notifications())
    assert d.stop() == 0


def test_notify_test_command(tmp_path, session_bus, notification_server):
    out = run_cli("notify-test", env={"DBUS_SESSION_BUS_ADDRESS": session_bus.address})
    assert "shown by test-server 1.0" in out.stdout
    shown = notification_server.wait_for(lambda c: True)
    assert shown["summary"] == "watcherd notifications work"


def test_notify_test_without_a_bus_says_why(tmp_path):
    out = run_cli("notify-test", check=False)
    assert out.returncode == 1
    assert "no session bus" in out.stderr


def test_notify_test_without_a_server_says_why(tmp_path, session_bus):
    out = run_cli("notify-test", env={"DBUS_SESSION_BUS_ADDRESS": session_bus.address},
                  check=False)  # fmt: skip
    assert out.returncode == 1
    assert "ServiceUnknown" in out.stderr


def test_a_long_running_notifier_keeps_only_recent_bursts(tmp_path):
    from watcherd.notifications import KEEP_BURSTS

    n = DesktopNotifier(UndoCalls(), {}, cache_dir=tmp_path / "cache")
    for i in range(100):  # a burst every 10 s, never shown (the thread is not started)
        n._on_verdict(verdict(tmp_path / "A", f"{i}.jpg"), now=i * 10.0)
    assert len(n.bursts) == KEEP_BURSTS
    assert min(n.bursts) == 100 - KEEP_BURSTS + 1 and n.current is n.bursts[100]
