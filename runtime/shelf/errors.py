"""Errors of the shelf analytics."""

from __future__ import annotations

from edgetally.runtime.errors import EdgeRuntimeError


class ShelfError(EdgeRuntimeError):
    """A shelf configuration, reference image or data set that cannot be used."""
