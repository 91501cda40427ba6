"""Signals as inbox messages: SIGTERM and SIGINT stop the daemon, SIGHUP reloads it.

Not through Python signal handlers that post to the inbox: the kernel hands a signal
to any one of the process's threads, and Python runs the handler in the main thread
only once that thread wakes, which an idle daemon asleep on its inbox did not do for
a minute, or ever (the stop that hung now and then). The handlers do nothing; Python
writes each signal's number to a wakeup pipe whichever thread takes it, and a thread
of ours turns it into a message.
"""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Callable

from .inbox import Reload, Stop

MESSAGES = {signal.SIGTERM: Stop(), signal.SIGINT: Stop(), signal.SIGHUP: Reload()}


class SignalRelay:
    def __init__(self, post: Callable[[object], None], on_stop: Callable[[], None]) -> None:
        """`post(message)` from the relay's thread; `on_stop()` too, at once, for work
        that checks a flag rather than the inbox (a long walk)."""
        self._post = post
        self._on_stop = on_stop
        self._pipe: tuple[int, int] | None = None

    def install(self) -> None:
        read_end, write_end = os.pipe()
        os.set_blocking(write_end, False)  # set_wakeup_fd requires it; the reader blocks
        for sig in MESSAGES:
            signal.signal(sig, lambda *_: None)
        signal.set_wakeup_fd(write_end, warn_on_full_buffer=False)
        self._pipe = (read_end, write_end)
        threading.Thread(
            target=self._relay, args=(read_end,), name="watcherd-signals", daemon=True
        ).start()

    def _relay(self, read_end: int) -> None:
        while data := os.read(read_end, 64):  # empty: the write end closed at shutdown
            for number in data:
                message = MESSAGES.get(number)
                if message is not None:
                    if isinstance(message, Stop):
                        self._on_stop()
                    self._post(message)
        os.close(read_end)

    def uninstall(self) -> None:
        if self._pipe is not None:
            signal.set_wakeup_fd(-1)
            os.close(self._pipe[1])
            self._pipe = None
