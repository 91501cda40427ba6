"""Logging: readable lines for people, one JSON object per line for machines.

Modules log through the standard `logging` module and put structured facts in
`extra={"event": ..., "path": ...}`; the formatter decides how they are shown.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time

# Attributes every LogRecord has; anything else was passed through `extra`.
_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime"}


def _extras(record: logging.LogRecord) -> dict:
    return {k: v for k, v in vars(record).items() if k not in _STANDARD}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "ts": record.created,
            "level": record.levelname.lower(),
            "event": getattr(record, "event", "log"),
            "msg": record.getMessage(),
        }
        entry.update(_extras(record))
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


class TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(record.created))
        line = f"{stamp} {record.levelname.lower():7} {record.getMessage()}"
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


# syslog priorities (sd-daemon(3)): journald reads a "<N>" at the start of each line
_PRIORITY = {logging.DEBUG: 7, logging.INFO: 6, logging.WARNING: 4, logging.ERROR: 3}


class JournalFormatter(logging.Formatter):
    """For stderr connected to the journal (systemd sets JOURNAL_STREAM): each line
    starts with its syslog priority, so that `journalctl -p warning` shows the
    warnings, and carries no timestamp of its own (the journal keeps one)."""

    def format(self, record: logging.LogRecord) -> str:
        priority = _PRIORITY.get(record.levelno, 2 if record.levelno > logging.ERROR else 6)
        line = record.getMessage()
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return "\n".join(f"<{priority}>{part}" for part in line.splitlines() or [""])


def to_journal(stream) -> bool:
    """Whether `stream` is the journal's: JOURNAL_STREAM names its device and inode."""
    named = os.environ.get("JOURNAL_STREAM", "")
    try:
        device, inode = (int(x) for x in named.split(":"))
        st = os.fstat(stream.fileno())
    except (ValueError, OSError, AttributeError):
        return False
    return (st.st_dev, st.st_ino) == (device, inode)


def setup(level: int = logging.INFO, fmt: str = "text", stream=None) -> None:
    stream = stream or sys.stderr
    handler = logging.StreamHandler(stream)
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    elif to_journal(stream):
        handler.setFormatter(JournalFormatter())
    else:
        handler.setFormatter(TextFormatter())
    logger = logging.getLogger("watcherd")
    logger.handlers[:] = [handler]
    logger.setLevel(level)
    logger.propagate = False


class _ConsoleStream:
    """A stream whose lines are printed by a rich Console: above its live progress bar
    while one is shown."""

    def __init__(self, console) -> None:
        self.console = console

    def write(self, text: str) -> int:
        if text.strip():
            self.console.print(text.rstrip("\n"), markup=False, highlight=False, soft_wrap=True)
        return len(text)

    def flush(self) -> None:
        pass


def write_through(console) -> list:
    """Send watcherd's log lines through `console` (see _ConsoleStream); returns what
    restore_streams needs to undo it."""
    saved = []
    for handler in logging.getLogger("watcherd").handlers:
        if isinstance(handler, logging.StreamHandler):
            saved.append((handler, handler.setStream(_ConsoleStream(console))))
    return saved


def restore_streams(saved: list) -> None:
    for handler, stream in saved:
        handler.setStream(stream)


class _NotSummarised(logging.Filter):
    """Drops the per-file error and failed-move lines a scan lists in its summary."""

    def filter(self, record: logging.LogRecord) -> bool:
        event = getattr(record, "event", None)
        return not (record.levelno < logging.ERROR and event in ("error", "duplicate"))


def leave_to_summary() -> None:
    """For a scan without -v: each file's error is printed once, in the summary."""
    for handler in logging.getLogger("watcherd").handlers:
        handler.addFilter(_NotSummarised())
