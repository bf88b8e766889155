"""Error root of the device runtime."""

from __future__ import annotations

from typing import TYPE_CHECKING

from edgetally.models.errors import EdgetallyError

if TYPE_CHECKING:
    from pydantic_core import ErrorDetails


class EdgeRuntimeError(EdgetallyError):
    """Something on the device failed: a source, a backend, a pipeline stage."""


class SourceError(EdgeRuntimeError):
    """A video, image folder, camera or stream cannot be opened or read."""


class BackendError(EdgeRuntimeError):
    """An inference backend is missing, cannot load the model, or fails to run it."""


class ConfigError(EdgeRuntimeError):
    """A device configuration (CLI arguments or config file) is invalid."""


def deepest_errors(errors: list[ErrorDetails]) -> list[ErrorDetails]:
    """A config's validation errors without their follow-ons: a bad item makes its container
    fail too ("cameras: at least 1 item"), so keep the deepest problems."""
    locs = [e["loc"] for e in errors]
    return [
        e
        for e in errors
        if not any(len(o) > len(e["loc"]) and o[: len(e["loc"])] == e["loc"] for o in locs)
    ] or errors
