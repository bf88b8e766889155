"""Progress of long work on the terminal: rich's bars on stderr, or nothing at all.

A command opens :func:`progress` around its long loop and hands what it yields to the
runtime: a callback ``(what, done, total)`` (the runtime's ``Progress``), or None when
nothing is to be drawn, that is with ``--json`` or when stderr is not a terminal. One bar per
``what``; bars show while one of them is unfinished and go away once all are done, so the
command's own output, and any library's own progress shown in between (NNCF's while it
quantizes), never mixes with them. Log lines printed meanwhile go above the bars.
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading
from collections.abc import Callable, Iterator
from typing import IO, TYPE_CHECKING

if TYPE_CHECKING:
    from rich.console import Console
    from rich.progress import Progress, TaskID

Callback = Callable[[str, float, float | None], None]


def is_terminal(stream: IO[str]) -> bool:
    """A terminal that can redraw a line: a tty, and not ``TERM=dumb``."""
    isatty = getattr(stream, "isatty", None)
    try:
        tty = bool(isatty is not None and isatty())
    except ValueError:  # a closed stream
        return False
    return tty and os.environ.get("TERM", "").lower() not in ("dumb", "unknown")


class Bars:
    """The callback: one rich bar per ``what``, drawn while any of them is unfinished.

    Safe to call from several threads (the device's cameras)."""

    def __init__(self, console: Console, unit: str) -> None:
        self._console = console
        self._unit = unit
        self._lock = threading.Lock()
        self._bars: Progress | None = None
        self._tasks: dict[str, TaskID] = {}
        self._done: set[str] = set()

    def __call__(self, what: str, done: float, total: float | None) -> None:
        finished = total is not None and done >= total
        with self._lock:
            if what in self._done:
                return  # a file that had more frames than it said: its bar is gone already
            if finished and what not in self._tasks:
                self._done.add(what)  # done at its first word: nothing to show
                return
            if self._bars is None:
                self._bars = self._start()
            task = self._tasks.get(what)
            if task is None:
                task = self._tasks[what] = self._bars.add_task(what, total=total)
            self._bars.update(task, completed=done, total=total)
            if finished:
                self._done.add(what)
                if all(name in self._done for name in self._tasks):
                    self._stop()

    def close(self) -> None:
        with self._lock:
            self._stop()

    def _start(self) -> Progress:
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            SpinnerColumn,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        bars = Progress(
            SpinnerColumn(),
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn(self._unit),
            TimeElapsedColumn(),
            TextColumn("left"),
            TimeRemainingColumn(),
            console=self._console,
            transient=True,
            redirect_stdout=False,  # stdout is the command's (a pipe, a file)
            redirect_stderr=True,  # warnings printed meanwhile go above the bars
        )
        bars.start()
        return bars

    def _stop(self) -> None:
        if self._bars is not None:
            self._bars.stop()
        self._bars = None
        self._tasks = {}


@contextlib.contextmanager
def progress(
    unit: str = "frames", *, quiet: bool = False, stream: IO[str] | None = None
) -> Iterator[Callback | None]:
    """A progress callback for the runtime's loops, counting ``unit``; None (draw nothing)
    when ``quiet`` (``--json``) or when ``stream`` (stderr) is not a terminal."""
    out = sys.stderr if stream is None else stream
    if quiet or not is_terminal(out):
        yield None
        return
    from rich.console import Console

    bars = Bars(Console(file=out, force_terminal=True), unit)
    try:
        yield bars
    finally:
        bars.close()
