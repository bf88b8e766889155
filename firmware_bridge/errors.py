"""Error root of the hardware adapters."""

from __future__ import annotations

from edgetally.models.errors import EdgetallyError


class BridgeError(EdgetallyError):
    """A hardware adapter (power meter, serial MCU, watchdog) is missing or misbehaves."""
