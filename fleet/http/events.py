"""``/api/v1/events``: shelf and audio event counts per bucket and kind (JSON, CSV, Parquet)."""

from __future__ import annotations

from typing import Annotated, Literal

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
from fastapi import APIRouter, Depends, Response
from pydantic import BaseModel, ConfigDict, Field

router = APIRouter(prefix="/api/v1", tags=["analytics"])


class EventRow(BaseModel):
    model_config = ConfigDict(extra="forbid")

    bucket: str = Field(description="bucket start, ISO 8601 UTC")
    site: str
    device: str
    family: Literal["shelf", "audio"]
    event: str = Field(description="the kind, e.g. gap_opened, glass_break")
    count: int


class EventsAnswer(BaseModel):
    rows: list[EventRow]


@router.get(
    "/events",
    responses={200: {"model": EventsAnswer}},
    summary="Shelf and audio events per time bucket, site, device and kind",
)
def events(
    ctx: Annotated[FleetContext, Depends(context)],
    f: Annotated[Filters, Depends(filters)],
    format: ExportFormat = "json",
) -> Response:
    """Sums of the aggregates' ``shelf_events`` and ``audio_events`` counts; buckets are UTC.
    ``line`` filters by the line or zone the events were counted on."""
    with heavy_query(ctx):
        table = queries.events(ctx.store, f, max_rows=ctx.max_rows)
        return table_response(table, format, "events")
