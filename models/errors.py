"""The error root shared by every edgetally package.

Each package derives its own root from :class:`EdgetallyError`, converts third-party errors
where they enter, and the command line turns any of them into one line on stderr.
"""

from __future__ import annotations


class EdgetallyError(Exception):
    """Base of every error edgetally raises on purpose: its message is shown to the user."""


class ModelsError(EdgetallyError):
    """A model manifest, model file, bundle or wire message is wrong."""


class UnknownModelError(ModelsError):
    """A model name that is not in the zoo, or a file whose processing family is unknown."""


class ModelFileError(ModelsError):
    """A model file that is missing, unreadable, or whose contents do not match."""


class WireError(ModelsError):
    """A message that does not parse or validate against the wire schema."""
