"""What every HTTP router of the fleet may use: the store, ingest's counters, and the limits
on what answering may cost.

Routers live in the modules of this package, each exposing ``router`` (a FastAPI
``APIRouter``), listed in :func:`edgetally.fleet.http.app.routers`. A router gets the
context with ``Depends(context)``, and runs a query that returns rows inside
:func:`heavy_query` (a slot among the few that may run at once, and the time limit), or a
small read inside :func:`read_limit` (the time limit only)::

    def traffic(ctx: Ctx, f: Flt) -> Response:
        with heavy_query(ctx):
            return table_response(queries.traffic(ctx.store, f), "json", "traffic")

Both are entered in the endpoint's own body: FastAPI runs a sync endpoint in a worker
thread, and the time limit belongs to the thread's context.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Annotated, Any, Protocol

from edgetally.fleet.errors import FleetError
from edgetally.fleet.http.export import MEDIA_TYPES, ExportFormat, to_csv, to_json, to_parquet
from edgetally.fleet.store.base import Store, query_time_limit
from edgetally.fleet.store.queries import DEFAULT_MAX_ROWS, DEFAULT_OFFLINE_AFTER_S
from edgetally.fleet.store.records import Filters, Interval, Table
from edgetally.models.topics import ID_PATTERN
from fastapi import Query, Request, Response
from pydantic import AfterValidator

DEFAULT_QUERY_TIMEOUT_S = 30.0
DEFAULT_MAX_HEAVY_QUERIES = 3
WAITING_PER_SLOT = 4  # how many heavy queries may wait for a slot, per slot
RETRY_AFTER_S = 5


class Busy(FleetError):
    """Every slot for heavy queries is taken and the line of those waiting is full."""


class HeavyQueries:
    """At most ``limit`` heavy queries run at once. Past that, up to ``max_waiting`` more
    wait for a slot (at most ``wait_s`` seconds each), and the rest are refused at once
    with :class:`Busy`: memory stays bounded by a few answers, and nothing queues without
    end."""

    def __init__(
        self,
        limit: int = DEFAULT_MAX_HEAVY_QUERIES,
        *,
        max_waiting: int | None = None,
        wait_s: float = DEFAULT_QUERY_TIMEOUT_S,
    ) -> None:
        if limit < 1:
            raise FleetError(f"at least one heavy query must be allowed (got {limit})")
        self.limit = limit
        self.max_waiting = WAITING_PER_SLOT * limit if max_waiting is None else max_waiting
        self.wait_s = wait_s
        self._cond = threading.Condition()
        self._running = 0
        self._waiting = 0

    @property
    def running(self) -> int:
        return self._running

    @property
    def waiting(self) -> int:
        return self._waiting

    def _busy(self) -> Busy:
        return Busy(
            f"the fleet is answering {self.limit} heavy queries already and "
            f"{self._waiting} more wait: try again in a few seconds"
        )

    @contextmanager
    def slot(self) -> Iterator[None]:
        with self._cond:
            if self._running >= self.limit:
                if self._waiting >= self.max_waiting:
                    raise self._busy()
                self._waiting += 1
                try:
                    free = self._cond.wait_for(lambda: self._running < self.limit, self.wait_s)
                finally:
                    self._waiting -= 1
                if not free:
                    raise self._busy()
            self._running += 1
        try:
            yield
        finally:
            with self._cond:
                self._running -= 1
                self._cond.notify()


class IngestStatus(Protocol):
    """What the API reads of ingest's counters (the HTTP wing never imports ingest)."""

    @property
    def running(self) -> bool: ...

    def as_dict(self) -> dict[str, Any]: ...


@dataclass(frozen=True, slots=True)
class FleetContext:
    """Shared by the routers of one app. ``store``: where the analyst reads go;
    ``primary``: the store ingest writes, when the reads go to a read replica (None: they
    are one); ``query_timeout_s``: reads are cancelled after it (None: never); ``heavy``:
    the slots of the queries that return rows."""

    store: Store
    primary: Store | None = None
    counters: Callable[[], IngestStatus] | None = None
    offline_after_s: float = DEFAULT_OFFLINE_AFTER_S
    max_rows: int = DEFAULT_MAX_ROWS
    query_timeout_s: float | None = DEFAULT_QUERY_TIMEOUT_S
    heavy: HeavyQueries = field(default_factory=HeavyQueries)


@contextmanager
def read_limit(ctx: FleetContext) -> Iterator[None]:
    """The reads made inside are cancelled after the context's time limit."""
    with query_time_limit(ctx.query_timeout_s):
        yield


@contextmanager
def heavy_query(ctx: FleetContext) -> Iterator[None]:
    """A query that returns rows (and its answer, built inside): one of the few slots
    (:class:`Busy` when none frees up), and the time limit on its reads."""
    with ctx.heavy.slot(), read_limit(ctx):
        yield


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
