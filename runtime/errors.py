"""Error root of the device runtime."""

from __future__ import annotations

from edgetally.models.errors import EdgetallyError


class EdgeRuntimeError(EdgetallyError):
    """Something on the device failed: a source, a backend, a pipeline stage."""


class SourceError(EdgeRuntimeError):
    """A video, image folder, camera or stream cannot be opened or read."""


class BackendError(EdgeRuntimeError):
    """An inference backend is missing, cannot load the model, or fails to run it."""


class ConfigError(EdgeRuntimeError):
    """A device configuration (CLI arguments or config file) is invalid."""
