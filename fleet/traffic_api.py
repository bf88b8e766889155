"""``/api/v1/traffic``, ``/api/v1/occupancy`` and ``/api/v1/dwell`` (JSON, CSV or Parquet)."""

from __future__ import annotations

from typing import Annotated

from edgetally.fleet import queries
from edgetally.fleet.api_context import FleetContext, context, filters, table_response
from edgetally.fleet.export import ExportFormat
from edgetally.fleet.records import Filters
from fastapi import APIRouter, Depends, Response
from pydantic import BaseModel, ConfigDict, Field

router = APIRouter(prefix="/api/v1", tags=["analytics"])

Ctx = Annotated[FleetContext, Depends(context)]
Flt = Annotated[Filters, Depends(filters)]


class _Row(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    bucket: str = Field(description="bucket start, ISO 8601 UTC")
    site: str
    device: str
    line: str = Field(description="line (traffic) or zone (occupancy, dwell) id")


class TrafficRow(_Row):
    in_: int = Field(alias="in")
    out: int


class OccupancyRow(_Row):
    occupancy_mean: float = Field(
        description="time-weighted mean of people in the zone (exact at any interval)"
    )
    occupancy_peak: int | None = Field(description="most people at once (exact)")


class DwellRow(_Row):
    visits: int = Field(description="visits that ended in the bucket (exact)")
    median_s: float = Field(
        description="median dwell: exact when the interval is the device's bucket length; "
        "over longer intervals the visit-weighted mean of the device buckets' medians "
        "(an approximation: medians do not merge)"
    )
    p90_s: float = Field(
        description="90th percentile dwell: exact or a visit-weighted mean, as median_s"
    )


class TrafficAnswer(BaseModel):
    rows: list[TrafficRow]


class OccupancyAnswer(BaseModel):
    rows: list[OccupancyRow]


class DwellAnswer(BaseModel):
    rows: list[DwellRow]


@router.get(
    "/traffic",
    responses={200: {"model": TrafficAnswer}},
    summary="People in and out per time bucket, site, device and line",
)
def traffic(ctx: Ctx, f: Flt, format: ExportFormat = "json") -> Response:
    """Sums of ``in``/``out`` line crossings; buckets are UTC. ``format``: json (default,
    ``{"rows": [...]}``), csv or parquet (the same rows as a file)."""
    return table_response(queries.traffic(ctx.store, f, max_rows=ctx.max_rows), format, "traffic")


@router.get(
    "/occupancy",
    responses={200: {"model": OccupancyAnswer}},
    summary="Zone occupancy per time bucket: time-weighted mean and peak",
)
def occupancy(ctx: Ctx, f: Flt, format: ExportFormat = "json") -> Response:
    table = queries.occupancy(ctx.store, f, max_rows=ctx.max_rows)
    return table_response(table, format, "occupancy")


@router.get(
    "/dwell",
    responses={200: {"model": DwellAnswer}},
    summary="Visits that ended per time bucket, with median and p90 dwell (seconds)",
)
def dwell(ctx: Ctx, f: Flt, format: ExportFormat = "json") -> Response:
    """``visits`` is exact at any interval. ``median_s`` and ``p90_s`` are exact at the
    devices' bucket length; over longer intervals they are the visit-weighted means of the
    buckets' own median and p90, an approximation (the raw visit times never leave a
    store)."""
    return table_response(queries.dwell(ctx.store, f, max_rows=ctx.max_rows), format, "dwell")
