"""Ctrl-C and SIGTERM during training: the current step finishes, the state is saved, the run stops."""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator


class StopRequest:
    """``requested`` turns true at the first SIGINT/SIGTERM while :meth:`on_signals` is active; a second one
    raises ``KeyboardInterrupt`` at once (the user insists)."""

    def __init__(self) -> None:
        self.requested = False

    def _handle(self, signum, frame) -> None:
        if self.requested:  # second Ctrl-C: give up at once
            raise KeyboardInterrupt
        self.requested = True

    @contextlib.contextmanager
    def on_signals(self) -> Iterator[None]:
        """The handlers installed for the duration (main thread only: elsewhere signals cannot be caught)."""
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        previous = {s: signal.signal(s, self._handle) for s in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
