"""``/api/v1/traffic``, ``/api/v1/occupancy`` and ``/api/v1/dwell`` (JSON, CSV or Parquet)."""

from __future__ import annotations

from typing import Annotated

from edgetally.fleet.http.context import (
    FleetContext,
    context,
    filters,
    heavy_query,
    table_response,
)
from edgetally.fleet.http.export import ExportFormat
from edgetally.fleet.store import queries
from edgetally.fleet.store.records import Filters
from fastapi import APIRouter, Depends, Query, Response
from pydantic import BaseModel, ConfigDict, Field

router = APIRouter(prefix="/api/v1", tags=["analytics"])

Ctx = Annotated[FleetContext, Depends(context)]
Flt = Annotated[Filters, Depends(filters)]
By = Annotated[
    queries.Group,
    Query(
        description="device (default): one row per bucket, site, device and line. site: the "
        'devices and lines of each site summed per bucket (device and line read "*"). '
        'fleet: everything summed per bucket (site, device and line read "*"). The rows '
        "keep the same keys whatever the grouping."
    ),
]


class _Row(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    bucket: str = Field(description="bucket start, ISO 8601 UTC")
    site: str = Field(description='site id ("*" with group=fleet)')
    device: str = Field(description='device id ("*" with group=site or fleet)')
    line: str = Field(
        description='line (traffic) or zone (occupancy, dwell) id ("*" with group=site or fleet)'
    )


class TrafficRow(_Row):
    in_: int = Field(alias="in")
    out: int


class OccupancyRow(_Row):
    occupancy_mean: float = Field(
        description="time-weighted mean of people in the zone (exact at any interval); with "
        "group=site or fleet the sum of the zones' means: people present across them"
    )
    occupancy_peak: int | None = Field(
        description="most people at once (exact); null with group=site or fleet (a peak of "
        "the sum is not known from the zones' peaks)"
    )


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
def traffic(ctx: Ctx, f: Flt, format: ExportFormat = "json", group: By = "device") -> Response:
    """Sums of ``in``/``out`` line crossings; buckets are UTC. ``format``: json (default,
    ``{"rows": [...]}``), csv or parquet (the same rows as a file). ``group``: per device
    (default), or summed per site or over the whole fleet (``device``/``line`` read ``"*"``):
    the exact sums of the per-device rows."""
    with heavy_query(ctx):
        table = queries.traffic(ctx.store, f, max_rows=ctx.max_rows, group=group)
        return table_response(table, format, "traffic")


@router.get(
    "/occupancy",
    responses={200: {"model": OccupancyAnswer}},
    summary="Zone occupancy per time bucket: time-weighted mean and peak",
)
def occupancy(ctx: Ctx, f: Flt, format: ExportFormat = "json", group: By = "device") -> Response:
    """With ``group`` site or fleet, ``occupancy_mean`` is the sum of the zones' means
    (people present across them, on average, exact) and ``occupancy_peak`` is null."""
    with heavy_query(ctx):
        table = queries.occupancy(ctx.store, f, max_rows=ctx.max_rows, group=group)
        return table_response(table, format, "occupancy")


@router.get(
    "/dwell",
    responses={200: {"model": DwellAnswer}},
    summary="Visits that ended per time bucket, with median and p90 dwell (seconds)",
)
def dwell(ctx: Ctx, f: Flt, format: ExportFormat = "json", group: By = "device") -> Response:
    """``visits`` is exact at any interval. ``median_s`` and ``p90_s`` are exact at the
    devices' bucket length; over longer intervals they are the visit-weighted means of the
    buckets' own median and p90, an approximation (the raw visit times never leave a
    store). With ``group`` site or fleet, ``visits`` are summed (exact) and the times are
    the same visit-weighted means over all the zones."""
    with heavy_query(ctx):
        table = queries.dwell(ctx.store, f, max_rows=ctx.max_rows, group=group)
        return table_response(table, format, "dwell")
