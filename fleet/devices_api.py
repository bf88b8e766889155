"""``/api/v1/devices``, ``/api/v1/dead-letters`` and ``/api/v1/health``."""

from __future__ import annotations

from typing import Annotated, Any

from edgetally.fleet import queries
from edgetally.fleet.api_context import FleetContext, IdQuery, context, table_response
from edgetally.fleet.export import ExportFormat
from fastapi import APIRouter, Depends, Query, Response

router = APIRouter(prefix="/api/v1", tags=["fleet"])

Ctx = Annotated[FleetContext, Depends(context)]


@router.get("/devices", summary="Known devices: last seen, online, model, backend, fps, errors")
def devices(ctx: Ctx, site: IdQuery = None, format: ExportFormat = "json") -> Response:
    table = queries.devices(ctx.store, site=site, offline_after_s=ctx.offline_after_s)
    return table_response(table, format, "devices")


@router.get("/dead-letters", summary="The latest messages that did not validate, and why")
def dead_letters(
    ctx: Ctx,
    limit: Annotated[int, Query(ge=1, le=10_000)] = 100,
    format: ExportFormat = "json",
) -> Response:
    return table_response(queries.dead_letters(ctx.store, limit=limit), format, "dead-letters")


@router.get("/health", summary="Ingest counters and rows per table")
def health(ctx: Ctx) -> dict[str, Any]:
    ingest = ctx.counters().as_dict() if ctx.counters is not None else None
    return {"store": ctx.store.description, "tables": queries.counts(ctx.store), "ingest": ingest}
