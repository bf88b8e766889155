"""Subcommands of `edgetally`, one file per topic; each exposes ``register(app)``.

A command module imports its side (runtime, fleet...) inside the commands, never at the top:
building the command line then loads nothing of the fleet on a device install, nor of the
device on a fleet server.
"""

from __future__ import annotations

from edgetally.models.errors import EdgetallyError


class CommandError(EdgetallyError):
    """A command's options or arguments cannot be used (shown as one line)."""


class UsageError(CommandError):
    """A command called the wrong way (a required option missing): one line naming what to
    pass, exit 2 like the command line's own usage errors."""
