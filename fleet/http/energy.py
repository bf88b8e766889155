"""``GET /api/v1/energy``: edge energy and CO2e beside the cloud baseline, per device and
site; ``GET /api/v1/power``: the devices' watts over time, measured and estimated apart.
Methodology: docs/energy.md.

Included by :func:`edgetally.fleet.http.app.create_app` (listed in its routers). The energy
config (cameras per device, hours per day, regions, accounting, overridden assumptions) is
``app.state.energy`` when set, by the hook :func:`energy_config_hook` (``fleet serve
--energy-config FILE`` and its flags, the demo); otherwise the central defaults (every
camera 3 Mb/s at 15 fps, world-average grids), which the answer lists under ``config``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any, Literal

from edgetally.fleet.energy.assumptions import EnergyConfig
from edgetally.fleet.energy.report import report_from_store
from edgetally.fleet.energy.series import power_series
from edgetally.fleet.http.context import (
    FleetContext,
    context,
    filters,
    heavy_query,
    sensor_filters,
    table_response,
)
from edgetally.fleet.http.export import ExportFormat
from edgetally.fleet.store.records import Filters
from fastapi import APIRouter, Depends, FastAPI, Request, Response
from pydantic import BaseModel, ConfigDict, Field

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
    """Per device-day, site and device: edge Wh and gCO2e (measured, estimated or partial)
    beside the cloud baseline of the camera hours the devices counted, in the attributional
    and the marginal accounting; every assumption with its source; the config applied."""
    with heavy_query(ctx):
        return report_from_store(ctx.store, f, config, max_rows=ctx.max_rows)


class PowerRow(BaseModel):
    model_config = ConfigDict(extra="forbid")

    bucket: str = Field(description="bucket start, ISO 8601 UTC")
    site: str = Field(description='"*" when summed over sites (group=fleet)')
    device: str = Field(description='"*" when summed over devices (group=site, fleet)')
    watts: float = Field(description="mean power while the readings covered: measured + estimated")
    measured_w: float = Field(description="the part of the watts that was measured")
    estimated_w: float = Field(description="the part that was estimated (never measured)")
    measured_wh: float
    estimated_wh: float
    covered_s: float = Field(description="device-seconds the readings covered")
    devices: int = Field(description="devices summed")


class PowerAnswer(BaseModel):
    rows: list[PowerRow]


@router.get(
    "/power",
    responses={200: {"model": PowerAnswer}},
    summary="Edge power over time per bucket: watts, measured and estimated apart",
)
def power(
    ctx: Annotated[FleetContext, Depends(context)],
    f: Annotated[Filters, Depends(sensor_filters)],
    group: Literal["device", "site", "fleet"] = "device",
    format: ExportFormat = "json",
) -> Response:
    """Per bucket and device (or summed per site, or over the fleet): the mean watts while
    the readings covered, split into measured and estimated; buckets are UTC."""
    with heavy_query(ctx):
        table = power_series(ctx.store, f, group=group, max_rows=ctx.max_rows)
        return table_response(table, format, "power")
