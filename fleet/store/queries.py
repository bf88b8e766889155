"""The analyst queries, written once for both stores.

Each query is a function ``(store, filters, ...) -> Table``; the API routers, the command
line and the exports all go through these, so they give the same answers. To add one,
write a function like :func:`traffic` (``store.dialect.bucket`` for time buckets and
:func:`where` for the common filters).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any, Literal, get_args

from edgetally.fleet.errors import FleetError
from edgetally.fleet.store import sql
from edgetally.fleet.store.base import Store
from edgetally.fleet.store.columns import naive_utc
from edgetally.fleet.store.records import Filters, Table

DEFAULT_MAX_ROWS = 500_000
DEFAULT_OFFLINE_AFTER_S = 300.0

Group = Literal["device", "site", "fleet"]
GROUPS: tuple[str, ...] = get_args(Group)
# The key columns each grouping keeps; the others read "*" (all of them, summed).
_KEYS: dict[str, tuple[str, ...]] = {
    "device": ("site", "device", "line"),
    "site": ("site",),
    "fleet": (),
}
ALL = "*"


class QueryTooLarge(FleetError):
    """A query matches more rows than one answer may carry."""


def where(
    f: Filters, *, line_column: str = "line", time_column: str = "start"
) -> tuple[str, list[Any]]:
    """A WHERE clause (with its parameters) for the common filters."""
    clauses: list[str] = []
    params: list[Any] = []
    for column, value in (("site", f.site), ("device", f.device), (line_column, f.line)):
        if value is not None:
            clauses.append(f"{column} = ?")
            params.append(value)
    if f.start is not None:
        clauses.append(f"{time_column} >= ?")
        params.append(naive_utc(f.start))
    if f.end is not None:
        clauses.append(f"{time_column} < ?")
        params.append(naive_utc(f.end))
    return (" WHERE " + " AND ".join(clauses) if clauses else ""), params


def _keys(by: Group) -> tuple[str, int]:
    """The site, device and line columns of a ``by`` answer (``'*'`` for the ones summed
    over), and how many leading columns (bucket included) it groups by."""
    if by not in _KEYS:
        raise FleetError(f"unknown group {by!r}: use {', '.join(GROUPS)}")
    kept = _KEYS[by]
    cols = ", ".join(c if c in kept else f"'{ALL}' AS {c}" for c in ("site", "device", "line"))
    return cols, 1 + len(kept)


def _positions(n: int) -> str:
    return ", ".join(str(i) for i in range(1, n + 1))


def _grouped(
    store: Store,
    f: Filters,
    select: str,
    extra_where: str,
    max_rows: int,
    what: str,
    table: str = "aggregates",
    time_column: str = "start",
    group: bool = True,
    by: Group = "device",
    outer: str | None = None,
) -> Table:
    """``select`` per bucket, site, device and line of ``table``; ``group=False`` when the
    table already holds one row per such group (a rollup of the asked interval).

    ``by`` site or fleet groups the rows by bucket and site, or by bucket alone (``'*'``
    for the columns summed over). With ``outer`` (a select over the per-device rows, e.g.
    ``sum(occupancy_mean) AS occupancy_mean``) the per-device answer is computed first and
    ``outer`` groups it; without, ``select`` groups the table's rows directly.
    """
    bucket = store.dialect.bucket(time_column, f.interval) if group else time_column
    clause, params = where(f, time_column=time_column)
    if extra_where:
        clause = f"{clause} AND {extra_where}" if clause else f" WHERE {extra_where}"
    keys, n = _keys("device" if outer else by)
    group = group or n < 4
    text = (
        f"SELECT {bucket} AS bucket, {keys}, {select} FROM {table}{clause}"
        f"{f' GROUP BY {_positions(n)}' if group else ''}"
    )
    if outer is not None:
        keys, n = _keys(by)
        inner = text
        text = f"SELECT bucket, {keys}, {outer} FROM ({inner}) AS per_device"
        text += f" GROUP BY {_positions(n)}"
    text += f" ORDER BY {_positions(n)} LIMIT {int(max_rows) + 1}"
    result = store.fetch_arrow(text, params)
    if len(result) > max_rows:
        raise QueryTooLarge(
            f"the {what} query matches more than {max_rows} rows: narrow it (site, device, "
            "from/to) or use a coarser interval"
        )
    return result


_SECONDS: dict[str, int] = {"minute": 60, "15min": 900, "hour": 3600, "day": 86400}
_EPOCH = datetime(1970, 1, 1)


def _aligned(value: datetime | None, seconds: int) -> bool:
    if value is None:
        return True
    return (naive_utc(value) - _EPOCH) % timedelta(seconds=seconds) == timedelta(0)


def traffic_source(store: Store, f: Filters) -> str:
    """The coarsest table that answers ``f`` exactly: a rollup when the interval is a
    multiple of its unit and ``from``/``to`` fall on its bucket edges, else ``aggregates``.
    Traffic, occupancy and dwell all read from it."""
    if store.has_rollups:
        width = _SECONDS[f.interval]
        for table, unit in reversed(sql.ROLLUPS):
            unit_s = _SECONDS[unit]
            if width % unit_s == 0 and _aligned(f.start, unit_s) and _aligned(f.end, unit_s):
                return table
    return "aggregates"


Agg = Callable[[str, str], str]


def _grouping(fn: str, column: str) -> str:
    return f"{fn}({column})"


def _one_row(fn: str, column: str) -> str:
    return column  # one rollup row per group: its sum or max is itself


def _from_rollup(
    store: Store,
    f: Filters,
    rollups: bool,
    max_rows: int,
    what: str,
    raw: tuple[str, str],
    rolled: tuple[Callable[[Agg], str], str],
    by: Group = "device",
    outer: str | None = None,
) -> Table:
    """Run ``raw`` (select, where) on ``aggregates``, or ``rolled`` on the rollup that fits:
    without grouping when the rollup's unit is the interval and the answer is per device
    (its rows are the answer's)."""
    table = traffic_source(store, f) if rollups else "aggregates"
    if table == "aggregates":
        return _grouped(store, f, raw[0], raw[1], max_rows, what, by=by, outer=outer)
    group = dict(sql.ROLLUPS)[table] != f.interval or (by != "device" and outer is None)
    select = rolled[0](_grouping if group else _one_row)
    return _grouped(store, f, select, rolled[1], max_rows, what, table, "bucket", group, by, outer)


def _traffic_select(agg: Agg) -> str:
    return (
        f'CAST({agg("sum", "in_count")} AS BIGINT) AS "in", '
        f'CAST({agg("sum", "out_count")} AS BIGINT) AS "out"'
    )


def traffic(
    store: Store,
    f: Filters,
    *,
    max_rows: int = DEFAULT_MAX_ROWS,
    rollups: bool = True,
    group: Group = "device",
) -> Table:
    """People in and out per bucket, site, device and line (from a rollup when one fits;
    ``rollups=False`` always reads the stored aggregates). ``group`` site sums the devices
    and lines of each site, fleet everything, per bucket (``device``/``line`` read
    ``'*'``): exact sums of the same rows."""
    raw = (_traffic_select(_grouping), "")
    return _from_rollup(store, f, rollups, max_rows, "traffic", raw, (_traffic_select, ""), group)


def _occupancy_select(agg: Agg) -> str:
    mean = f"{agg('sum', 'occupancy_sum')} / {agg('sum', 'occupancy_s')}"
    return f"{mean} AS occupancy_mean, {agg('max', 'occupancy_peak')} AS occupancy_peak"


# Zones of several devices: the sum of their time-weighted means (the people present in
# all of them, on average); a peak of the sum is not known from the zones' own peaks.
_OCCUPANCY_ACROSS = "sum(occupancy_mean) AS occupancy_mean, CAST(NULL AS INTEGER) AS occupancy_peak"


def occupancy(
    store: Store,
    f: Filters,
    *,
    max_rows: int = DEFAULT_MAX_ROWS,
    rollups: bool = True,
    group: Group = "device",
) -> Table:
    """Zone occupancy per bucket: time-weighted mean and peak (exact from a rollup too: it
    keeps occupancy x seconds, the seconds and the peak). ``group`` site or fleet: the sum
    of the zones' means (people present across them, on average) and no peak (null)."""
    raw = (
        "sum(occupancy_mean * seconds) / sum(seconds) AS occupancy_mean, "
        "max(occupancy_peak) AS occupancy_peak"
    )
    return _from_rollup(
        store,
        f,
        rollups,
        max_rows,
        "occupancy",
        (raw, "occupancy_mean IS NOT NULL"),
        (_occupancy_select, "occupancy_s IS NOT NULL"),
        group,
        None if group == "device" else _OCCUPANCY_ACROSS,
    )


def _dwell_select(agg: Agg) -> str:
    visits = agg("sum", "dwell_count")
    return (
        f"CAST({visits} AS BIGINT) AS visits, "
        f"{agg('sum', 'dwell_median_sum')} / {visits} AS median_s, "
        f"{agg('sum', 'dwell_p90_sum')} / {visits} AS p90_s"
    )


def dwell(
    store: Store,
    f: Filters,
    *,
    max_rows: int = DEFAULT_MAX_ROWS,
    rollups: bool = True,
    group: Group = "device",
) -> Table:
    """Visits that ended per bucket, and their visit-weighted mean median and p90 (seconds).

    ``visits`` is exact. ``median_s`` and ``p90_s`` are exact when the interval equals the
    device's bucket length; over longer intervals they are the visit-weighted means of the
    buckets' own median and p90, an approximation (a median cannot be merged from medians),
    and the same whether read from the aggregates or from a rollup. ``group`` site or
    fleet: visits summed, the same visit-weighted means over all the zones' buckets.
    """
    raw = (
        "CAST(sum(dwell_count) AS BIGINT) AS visits, "
        "sum(dwell_median_s * dwell_count) / sum(dwell_count) AS median_s, "
        "sum(dwell_p90_s * dwell_count) / sum(dwell_count) AS p90_s"
    )
    where = "dwell_count IS NOT NULL"
    return _from_rollup(
        store, f, rollups, max_rows, "dwell", (raw, where), (_dwell_select, where), group
    )


def events(store: Store, f: Filters, *, max_rows: int = DEFAULT_MAX_ROWS) -> Table:
    """Shelf and audio event counts per bucket, site, device, family and kind (summed)."""
    bucket = store.dialect.bucket("start", f.interval)
    clause, params = where(f)
    result = store.fetch(
        f'SELECT {bucket} AS bucket, site, device, family, event, sum(count) AS "count" '
        f"FROM events{clause} GROUP BY 1, 2, 3, 4, 5 ORDER BY 1, 2, 3, 4, 5 "
        f"LIMIT {int(max_rows) + 1}",
        params,
    )
    if len(result.rows) > max_rows:
        raise QueryTooLarge(
            f"the events query matches more than {max_rows} rows: narrow it or use a coarser "
            "interval"
        )
    return result


DEVICE_COLUMNS: tuple[str, ...] = (
    "device",
    "site",
    "online",
    "state",
    "last_seen",
    "first_seen",
    "messages",
    "model",
    "backend",
    "fps",
    "uptime_s",
    "errors",
    "last_error",
    "conflicts",  # messages that reused a stored (epoch, seq) with other content
)


def devices(
    store: Store,
    *,
    site: str | None = None,
    now: datetime | None = None,
    offline_after_s: float = DEFAULT_OFFLINE_AFTER_S,
) -> Table:
    """Known devices; ``online`` when not reported offline and heard from recently."""
    cols = [c for c in DEVICE_COLUMNS if c != "online"]
    text = f"SELECT {', '.join(cols)} FROM devices"
    params: list[Any] = []
    if site is not None:
        text += " WHERE site = ?"
        params.append(site)
    result = store.fetch(text + " ORDER BY site, device", params)
    cutoff = naive_utc(now or datetime.now(UTC)) - timedelta(seconds=offline_after_s)
    rows: list[tuple[Any, ...]] = []
    for row in result.rows:
        rec = dict(zip(cols, row, strict=True))
        rec["online"] = rec["state"] != "offline" and rec["last_seen"] >= cutoff
        rows.append(tuple(rec[c] for c in DEVICE_COLUMNS))
    return Table(DEVICE_COLUMNS, rows)


def dead_letters(store: Store, *, limit: int = 100) -> Table:
    """The most recent messages that did not validate, newest first."""
    return store.fetch(
        "SELECT received_at, topic, reason, payload_size, payload_head FROM dead_letters "
        f"ORDER BY received_at DESC LIMIT {max(0, int(limit))}"
    )


def counts(store: Store) -> dict[str, int]:
    """Rows per table (for health checks and benchmarks)."""
    out: dict[str, int] = {}
    for table in ("aggregates", "events", "power", "audio", "shelf", "devices", "dead_letters"):
        rows = store.fetch(f"SELECT count(*) FROM {table}").rows
        out[table] = int(rows[0][0])
    return out


QUERIES: dict[str, Any] = {"traffic": traffic, "occupancy": occupancy, "dwell": dwell}


def run_named(
    store: Store,
    name: str,
    f: Filters,
    *,
    max_rows: int = DEFAULT_MAX_ROWS,
    group: Group = "device",
) -> Table:
    """Run one of :data:`QUERIES` by name (``group``: per device, site or the fleet)."""
    fn = QUERIES.get(name)
    if fn is None:
        raise FleetError(f"unknown query {name!r}: use one of {', '.join(QUERIES)}")
    if group not in GROUPS:
        raise FleetError(f"unknown group {group!r}: use {', '.join(GROUPS)}")
    result: Table = fn(store, f, max_rows=max_rows, group=group)
    return result
