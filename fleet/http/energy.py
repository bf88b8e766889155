"""``GET /api/v1/energy``: edge energy and CO2e beside the cloud baseline, per device and site.

Included by :func:`edgetally.fleet.http.app.create_app` (a module ending in ``_api`` with a
``router``). The energy config (cameras per device, regions, overridden assumptions) is
``app.state.energy`` when set, e.g. by the hook :func:`energy_config_hook`; otherwise the
central defaults (one 1080p15 camera, 12 h, world-average grids), which the answer lists.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any

from edgetally.fleet.energy.assumptions import EnergyConfig
from edgetally.fleet.energy.report import report_from_store
from edgetally.fleet.http.context import FleetContext, context, filters, heavy_query
from edgetally.fleet.store.records import Filters
from fastapi import APIRouter, Depends, FastAPI, Request

router = APIRouter(prefix="/api/v1", tags=["energy"])


def energy_config(request: Request) -> EnergyConfig:
    config = getattr(request.app.state, "energy", None)
    return config if isinstance(config, EnergyConfig) else EnergyConfig()


def energy_config_hook(config: EnergyConfig) -> Callable[[FastAPI], None]:
    """A ``create_app`` hook that sets the energy config of the app."""

    def hook(app: FastAPI) -> None:
        app.state.energy = config

    return hook


@router.get("/energy", summary="Energy ledger: edge (measured or estimated) vs cloud baseline")
def energy(
    ctx: Annotated[FleetContext, Depends(context)],
    f: Annotated[Filters, Depends(filters)],
    config: Annotated[EnergyConfig, Depends(energy_config)],
) -> dict[str, Any]:
    with heavy_query(ctx):
        return report_from_store(ctx.store, f, config, max_rows=ctx.max_rows)
