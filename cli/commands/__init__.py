"""Subcommands of `edgetally`, one file per topic; each exposes ``register(app)``.

A command module imports its side (runtime, fleet...) inside the commands, never at the top:
building the command line then loads nothing of the fleet on a device install, nor of the
device on a fleet server.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

from edgetally.models.errors import EdgetallyError


class CommandError(EdgetallyError):
    """A command's options or arguments cannot be used (shown as one line)."""


class UsageError(CommandError):
    """A command called the wrong way (a required option missing): one line naming what to
    pass, exit 2 like the command line's own usage errors."""


@contextlib.contextmanager
def sigterm_as_interrupt(came: list[str] | None) -> Iterator[None]:
    """SIGTERM (what systemd and container runtimes send) ends a run as Ctrl-C does;
    ``came`` gets "SIGTERM" when it came."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def on_term(_signum: int, _frame: Any) -> None:
        if came is not None:
            came.append("SIGTERM")
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, on_term)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
