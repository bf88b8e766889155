"""``/api/v1/devices``, ``/api/v1/dead-letters`` and ``/api/v1/health``."""

from __future__ import annotations

from typing import Annotated, Any

from edgetally.fleet.http.context import (
    FleetContext,
    IdQuery,
    context,
    read_limit,
    table_response,
)
from edgetally.fleet.http.export import ExportFormat
from edgetally.fleet.store import queries
from edgetally.fleet.store.base import StoreError
from edgetally.fleet.store.replica import replica_state
from fastapi import APIRouter, Depends, Query, Response
from fastapi.responses import JSONResponse

router = APIRouter(prefix="/api/v1", tags=["fleet"])

Ctx = Annotated[FleetContext, Depends(context)]


@router.get("/devices", summary="Known devices: last seen, online, model, backend, fps, errors")
def devices(ctx: Ctx, site: IdQuery = None, format: ExportFormat = "json") -> Response:
    with read_limit(ctx):
        table = queries.devices(ctx.store, site=site, offline_after_s=ctx.offline_after_s)
    return table_response(table, format, "devices")


@router.get("/dead-letters", summary="The latest messages that did not validate, and why")
def dead_letters(
    ctx: Ctx,
    limit: Annotated[int, Query(ge=1, le=10_000)] = 100,
    format: ExportFormat = "json",
) -> Response:
    with read_limit(ctx):
        table = queries.dead_letters(ctx.store, limit=limit)
    return table_response(table, format, "dead-letters")


@router.get(
    "/health",
    summary="Whether the fleet is taking messages in: ingest counters and rows per table "
    "(and the read replica's lag)",
    responses={
        503: {
            "description": "the ingest loop is not running, or the store (or the read "
            "replica) cannot be read"
        }
    },
)
def health(ctx: Ctx) -> JSONResponse:
    """``ok`` is false (and the status 503) when the ingest loop is not running (messages
    are no longer taken in) or the store cannot be read. ``ingest`` holds its counters:
    ``conflicts`` are messages that reused a stored (site, device, epoch, seq) with other
    contents (the first is kept), ``loop_errors`` unexpected errors the loop survived.

    With a read replica (``fleet serve --read-url``), ``store`` and ``tables`` are the
    primary's and ``replica`` says where the analyst reads go and how far they trail
    (:func:`~edgetally.fleet.store.replica.replica_state`); a replica that cannot be read
    makes ``ok`` false. A lagging replica does not: its answers trail by ``lag_s``."""
    written = ctx.primary or ctx.store
    body: dict[str, Any] = {"ok": True, "store": written.description}
    ingest: dict[str, Any] | None = None
    if ctx.counters is not None:
        counters = ctx.counters()
        ingest = counters.as_dict()
        if not counters.running:
            body["ok"] = False
            body["reason"] = "the ingest loop is not running: no message is taken in"
    try:
        with read_limit(ctx):
            body["tables"] = queries.counts(written)
    except StoreError as exc:
        body["ok"] = False
        body["reason"] = f"the store cannot be read: {exc}"
        body["tables"] = None
    if ctx.primary is not None:
        with read_limit(ctx):
            replica = replica_state(ctx.primary, ctx.store)
        body["replica"] = replica
        if not replica["reachable"] and body["ok"]:
            body["ok"] = False
            body["reason"] = f"the read replica cannot be read: {replica['error']}"
    body["ingest"] = ingest
    return JSONResponse(body, status_code=200 if body["ok"] else 503)
