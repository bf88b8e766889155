"""Error root of the fleet manager."""

from __future__ import annotations

from edgetally.models.errors import EdgetallyError


class FleetError(EdgetallyError):
    """The fleet manager cannot do what was asked (store, API, rollout, ledger)."""
