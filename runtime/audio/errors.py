"""Errors of the audio pipeline."""

from __future__ import annotations

from edgetally.runtime.errors import EdgeRuntimeError


class AudioError(EdgeRuntimeError):
    """An audio source, model or setting that cannot be used."""
