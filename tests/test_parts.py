"""Each part alone, as watchdog tests its observer, handler and event apart: the
translation of watchdog's events, the sd_notify datagrams, the HTML report page, the
settling of arriving files."""

from __future__ import annotations

import os
import socket
import time

import pytest
from helpers import busy_photo, save
from watchdog.events import (
    DirCreatedEvent,
    DirDeletedEvent,
    DirModifiedEvent,
    DirMovedEvent,
    FileClosedEvent,
    FileClosedNoWriteEvent,
    FileCreatedEvent,
    FileDeletedEvent,
    FileModifiedEvent,
    FileMovedEvent,
    FileOpenedEvent,
)

from watcherd import report, report_html
from watcherd.config import Config
from watcherd.index import Index
from watcherd.scanner import scan
from watcherd.sdnotify import Notifier
from watcherd.settling import CLOSE_FALLBACK_FACTOR, Settler
from watcherd.watcher import FsEvent, translate


@pytest.mark.parametrize(
    ("event", "expected"),
    [
        (FileCreatedEvent("/r/a.jpg"), FsEvent("created", "/r/a.jpg")),
        (FileModifiedEvent("/r/a.jpg"), FsEvent("modified", "/r/a.jpg")),
        (FileClosedEvent("/r/a.jpg"), FsEvent("closed", "/r/a.jpg")),
        (FileDeletedEvent("/r/a.jpg"), FsEvent("deleted", "/r/a.jpg")),
        (FileMovedEvent("/r/a.part", "/r/a.jpg"), FsEvent("moved", "/r/a.part", "/r/a.jpg")),
        (FileMovedEvent("", "/r/in.jpg"), FsEvent("arrived", "/r/in.jpg")),  # from outside
        (FileMovedEvent("/r/out.jpg", ""), FsEvent("deleted", "/r/out.jpg")),  # out of it
        (DirCreatedEvent("/r/d"), FsEvent("dir_created", "/r/d")),
        (DirDeletedEvent("/r/d"), FsEvent("dir_deleted", "/r/d")),
        (DirMovedEvent("/r/d", "/r/e"), FsEvent("dir_moved", "/r/d", "/r/e")),
        (DirMovedEvent("", "/r/e"), FsEvent("dir_created", "/r/e")),
        (DirMovedEvent("/r/d", ""), FsEvent("dir_deleted", "/r/d")),
        (
            FileMovedEvent(b"/r/\xff.jpg", b"/r/b.jpg"),  # a name that is not UTF-8
            FsEvent("moved", "/r/\udcff.jpg", "/r/b.jpg"),
        ),
    ],
)
def test_translate_names_what_happened(event, expected):
    assert translate(event) == expected


@pytest.mark.parametrize(
    "event",
    [FileOpenedEvent("/r/a.jpg"), FileClosedNoWriteEvent("/r/a.jpg"), DirModifiedEvent("/r")],
)
def test_translate_drops_what_needs_nothing(event):
    assert translate(event) is None


def test_translate_keeps_whether_the_event_was_polled():
    assert translate(FileCreatedEvent("/r/a.jpg"), polled=True).polled


def _listening(tmp_path) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(tmp_path / "notify"))
    sock.settimeout(5)
    return sock


def test_sdnotify_sends_the_lines_systemd_reads(tmp_path):
    sock = _listening(tmp_path)
    env = {"NOTIFY_SOCKET": str(tmp_path / "notify"), "WATCHDOG_USEC": "20000000"}
    n = Notifier(env)
    assert n.watchdog_interval == 10.0  # half of what systemd waits
    assert n.ready("3 indexed")
    assert sock.recv(4096).decode().split("\n") == [
        "READY=1",
        f"MAINPID={os.getpid()}",
        "STATUS=3 indexed",
    ]
    for send, line in ((n.watchdog, "WATCHDOG=1"), (n.stopping, "STOPPING=1")):
        assert send()
        assert sock.recv(4096).decode() == line
    n.close()
    sock.close()


def test_sdnotify_without_systemd_does_nothing(tmp_path):
    n = Notifier({})
    assert not n.ready() and n.watchdog_interval is None
    # a watchdog meant for another process (systemd sets WATCHDOG_PID) is not ours
    assert Notifier({"WATCHDOG_USEC": "1000", "WATCHDOG_PID": "1"}).watchdog_interval is None
    gone = Notifier({"NOTIFY_SOCKET": str(tmp_path / "nobody")})
    assert not gone.status("x")  # no listener: reported, never raised


def test_report_page_escapes_names_and_quotes_the_restore_command(tmp_path):
    lib = tmp_path / "lib"
    img = busy_photo(3)
    save(img, lib / "a.jpg")
    odd = save(img.resize((400, 300)), lib / "<b>it's & 'me'.jpg")
    cfg = Config(workers=1, action="quarantine", quarantine_dir=tmp_path / "Q")
    with Index(tmp_path / "i.sqlite3") as index:
        scan([lib], cfg, index)
        data = report.build(index)
        stored = index.thumbnails(report_html.pictured(data))
        page = report_html.render(data, stored, ["watcherd", "--db", str(tmp_path / "i.sqlite3")])
    assert page.count('<section class="group"') == 1
    assert "<b>it" not in page and "&lt;b&gt;it" in page  # the name is text, not markup
    [dup] = data["duplicates"]
    assert dup["quarantined_path"] and not odd.exists()
    restore = page.split('<code class="restore">')[1].split("</code>")[0]
    assert "restore" in restore and "&#x27;" in restore  # shell-quoted, then escaped
    assert page.count("data:image/jpeg;base64,") == 2  # both pictures shown


def test_a_file_still_written_waits_until_it_holds_still(tmp_path):
    path = tmp_path / "a.jpg"
    path.write_bytes(b"1")
    s = Settler(settle_seconds=1.0)
    now = time.monotonic()
    s.touch(str(path), str(tmp_path), wait_close=False, now=now)
    assert s.settled(now + 0.5) == [] and s.deadline() == now + 1.0
    path.write_bytes(b"12")  # written again before the wait is over: it waits again
    assert s.settled(now + 1.0) == [] and str(path) in s
    assert s.settled(now + 2.0) == [(str(path), str(tmp_path))] and len(s) == 0


def test_a_file_held_open_waits_longer_than_one_written_and_closed(tmp_path):
    s = Settler(settle_seconds=1.0)
    s.touch(str(tmp_path / "a"), str(tmp_path), wait_close=True, now=0.0)
    assert s.deadline() == CLOSE_FALLBACK_FACTOR * 1.0
    s.move_under(str(tmp_path), str(tmp_path / "moved"), None)  # moved out of every root
    assert len(s) == 0 and s.deadline() is None


def test_verdicts_of_other_machines_are_looked_for_again_only_on_a_shared_index(tmp_path):
    """A daemon on a file's index looks once, at start; on a server's, every
    poll_interval; in a dry run never. (Before, a dry-run daemon found a look always
    due and never slept.)"""
    from watcherd.actions import Mover
    from watcherd.remote_verdicts import RemoteVerdicts

    cfg = Config(workers=1, poll_interval=5.0)
    with Index(tmp_path / "i.sqlite3", writer=True) as index:
        mover = Mover(index, cfg)
        once = RemoteVerdicts(index, shared=False)
        again = RemoteVerdicts(index, shared=True)
        never = RemoteVerdicts(index, shared=True, active=False)
        for remote in (once, again, never):
            remote.look(cfg, mover, now=100.0)
        assert (once.next_at, again.next_at, never.next_at) == (None, 105.0, None)
        again.look(cfg, mover, now=101.0)  # not due yet
        assert again.next_at == 105.0
