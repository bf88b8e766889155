"""``/api/v1/audio``: sound level, speech share and sound events per bucket (JSON, CSV)."""

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


class AudioRow(BaseModel):
    model_config = ConfigDict(extra="forbid")

    bucket: str = Field(description="bucket start, ISO 8601 UTC")
    site: str
    device: str
    source: str = Field(description="the microphone or sound file")
    seconds: float = Field(description="seconds of sound behind the row")
    leq_dbfs: float = Field(description="energy mean of Leq over the bucket (dBFS)")
    laeq_dbfs: float = Field(description="energy mean of LAeq (A-weighted, dBFS)")
    leq_dbspl: float | None = Field(description="Leq in dB SPL (calibrated devices)")
    laeq_dbspl: float | None
    speech_ratio: float | None = Field(description="time-weighted share of speech, 0..1")
    events: dict[str, int] = Field(description="sound events per class, summed")


class AudioAnswer(BaseModel):
    rows: list[AudioRow]


@router.get(
    "/audio",
    responses={200: {"model": AudioAnswer}},
    summary="Sound level (Leq, LAeq), speech share and sound events per bucket and source",
)
def audio(
    ctx: Annotated[FleetContext, Depends(context)],
    f: Annotated[Filters, Depends(sensor_filters)],
    source: IdQuery = None,
    format: ExportFormat = "json",
) -> Response:
    """Levels are energy means (the mean of 10^(L/10), weighted by each bucket's duration,
    back in dB), not means of decibels; buckets are UTC. CSV and Parquet carry ``events``
    as a JSON object."""
    with heavy_query(ctx):
        table = sensors.audio(ctx.store, f, source=source, max_rows=ctx.max_rows)
        return sensor_response(table, format, "audio")
