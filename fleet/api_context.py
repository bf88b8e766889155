"""What every HTTP router of the fleet may use: the store and ingest's counters.

Routers live in modules of ``edgetally.fleet`` whose names end in ``_api`` and expose
``router`` (a FastAPI ``APIRouter``); :func:`edgetally.fleet.api.create_app` includes them
all. A router gets the context with ``Depends(context)``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated

from edgetally.fleet.export import MEDIA_TYPES, ExportFormat, to_csv, to_json, to_parquet
from edgetally.fleet.ingest import IngestCounters
from edgetally.fleet.queries import DEFAULT_MAX_ROWS, DEFAULT_OFFLINE_AFTER_S
from edgetally.fleet.records import Filters, Interval, Table
from edgetally.fleet.store import Store
from edgetally.models.topics import ID_PATTERN
from fastapi import Query, Request, Response


@dataclass(frozen=True, slots=True)
class FleetContext:
    """Shared by the routers of one app."""

    store: Store
    counters: Callable[[], IngestCounters] | None = None
    offline_after_s: float = DEFAULT_OFFLINE_AFTER_S
    max_rows: int = DEFAULT_MAX_ROWS


def context(request: Request) -> FleetContext:
    ctx: FleetContext = request.app.state.fleet
    return ctx


IdQuery = Annotated[str | None, Query(pattern=ID_PATTERN, max_length=64)]


def _utc(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


FromQuery = Annotated[
    datetime | None,
    Query(alias="from", description="ISO 8601, inclusive (UTC when no offset is given)"),
]
ToQuery = Annotated[
    datetime | None, Query(description="ISO 8601, exclusive (UTC when no offset is given)")
]


def filters(
    site: IdQuery = None,
    device: IdQuery = None,
    line: IdQuery = None,
    from_: FromQuery = None,
    to: ToQuery = None,
    interval: Interval = "hour",
) -> Filters:
    """The query parameters every analyst endpoint takes; omitted means all."""
    return Filters(
        site=site, device=device, line=line, start=_utc(from_), end=_utc(to), interval=interval
    )


def sensor_filters(
    site: IdQuery = None,
    device: IdQuery = None,
    from_: FromQuery = None,
    to: ToQuery = None,
    interval: Interval = "hour",
) -> Filters:
    """The analyst filters without ``line``: for microphones and shelves, which have none."""
    return filters(site, device, None, from_, to, interval)


def table_response(table: Table, fmt: ExportFormat, stem: str) -> Response:
    """``{"rows": [...]}`` as JSON, or the same rows as a CSV or Parquet download."""
    if fmt == "json":
        return Response(to_json(table), media_type=MEDIA_TYPES["json"])
    body = to_csv(table) if fmt == "csv" else to_parquet(table)
    return Response(
        body,
        media_type=MEDIA_TYPES[fmt],
        headers={"Content-Disposition": f'attachment; filename="{stem}.{fmt}"'},
    )
