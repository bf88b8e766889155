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
from pydantic import AfterValidator


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


# The times a query may name: wide enough for any data a fleet holds (ingest refuses
# messages from before 2000), narrow enough that every database and Python can hold them.
EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)
LATEST = datetime(2200, 1, 1, tzinfo=UTC)
_WINDOW = f"{EARLIEST.date()} and {LATEST.date()} (UTC)"


def utc_in_window(value: datetime) -> datetime:
    """``value`` in UTC (naive means UTC), or ValueError when outside EARLIEST..LATEST."""
    try:
        when = value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    except (OverflowError, ValueError):  # year 1 at +01:00, year 9999 at -05:00
        raise ValueError(f"the time must lie between {_WINDOW}") from None
    if not EARLIEST <= when <= LATEST:
        raise ValueError(f"the time must lie between {_WINDOW}")
    return when


def _utc(value: datetime | None) -> datetime | None:
    return None if value is None else utc_in_window(value)


_TIME_HELP = f"ISO 8601 between {_WINDOW}, {{}} (UTC when no offset is given)"
FromQuery = Annotated[
    datetime | None,
    AfterValidator(_utc),
    Query(alias="from", description=_TIME_HELP.format("inclusive")),
]
ToQuery = Annotated[
    datetime | None, AfterValidator(_utc), Query(description=_TIME_HELP.format("exclusive"))
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
    return Filters(site=site, device=device, line=line, start=from_, end=to, interval=interval)


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
