"""Stop a training run between steps when asked (Ctrl-C, or SIGTERM from a scheduler), so its work is kept.

Without this, Ctrl-C raised ``KeyboardInterrupt`` wherever the loop was, and every step since the last
``train.save_every`` checkpoint was lost (a KEGG step takes 8-15 s on a laptop CPU; a cluster's pre-emption
sends SIGTERM, which killed the process outright). :class:`StopRequest` installs handlers for SIGINT and SIGTERM
that only record the request and say so on stderr; the trainer checks :attr:`StopRequest.requested` after each
whole step (never inside an optimiser update), saves a checkpoint and stops. A second Ctrl-C quits at once, as
Python's default does. Handlers are installed only in the main thread and restored on exit.
"""

from __future__ import annotations

import signal
import sys
import threading


class StopRequest:
    """``with StopRequest() as stop: ... if stop.requested: ...``: the signal's name once one arrived, else None."""

    SIGNALS = ("SIGINT", "SIGTERM")

    def __init__(self):
        self.requested: str | None = None
        self._previous: dict = {}

    def _handler(self, signum, frame):
        name = signal.Signals(signum).name
        if self.requested is not None and name == "SIGINT":  # asked twice: stop now
            raise KeyboardInterrupt
        self.requested = name
        print(f"\n{name}: stopping after this step and saving a checkpoint (Ctrl-C again to quit at once)",
              file=sys.stderr, flush=True)

    def __enter__(self) -> "StopRequest":
        if threading.current_thread() is threading.main_thread():
            for name in self.SIGNALS:
                sig = getattr(signal, name)
                self._previous[sig] = signal.signal(sig, self._handler)
        return self

    def __exit__(self, *exc) -> None:
        for sig, previous in self._previous.items():
            signal.signal(sig, previous)
        self._previous.clear()


__all__ = ["StopRequest"]
