"""``/api/v1/shelf``: shelf events per bucket and facing (JSON, CSV, Parquet)."""

from __future__ import annotations

from typing import Annotated

from edgetally.fleet.http.context import (
    FleetContext,
    IdQuery,
    context,
    heavy_query,
    sensor_filters,
)
from edgetally.fleet.http.export import ExportFormat
from edgetally.fleet.http.sensors_export import sensor_response
from edgetally.fleet.store import sensors
from edgetally.fleet.store.records import Filters
from fastapi import APIRouter, Depends, Response
from pydantic import BaseModel, ConfigDict, Field

router = APIRouter(prefix="/api/v1", tags=["analytics"])


class ShelfRow(BaseModel):
    model_config = ConfigDict(extra="forbid")

    bucket: str = Field(description="bucket start, ISO 8601 UTC")
    site: str
    device: str
    source: str = Field(description="the camera")
    region: str
    facing: str
    facing_empty: int = Field(description="times the facing went empty")
    restocked: int
    product_taken: int
    empty_at_end: bool = Field(description="empty at the end of the bucket's last message")


class ShelfAnswer(BaseModel):
    rows: list[ShelfRow]


@router.get(
    "/shelf",
    responses={200: {"model": ShelfAnswer}},
    summary="Shelf events per time bucket, site, device and facing",
)
def shelf(
    ctx: Annotated[FleetContext, Depends(context)],
    f: Annotated[Filters, Depends(sensor_filters)],
    region: IdQuery = None,
    facing: IdQuery = None,
    format: ExportFormat = "json",
) -> Response:
    """Sums of ``facing_empty``, ``restocked`` and ``product_taken``, and whether the facing
    was empty when the last bucket in the interval closed; buckets are UTC."""
    with heavy_query(ctx):
        table = sensors.shelf(ctx.store, f, region=region, facing=facing, max_rows=ctx.max_rows)
        return sensor_response(table, format, "shelf")
