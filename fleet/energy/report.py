"""The energy report over the fleet store: power rows and the aggregates' camera time ->
device-days -> ledger (methodology: docs/energy.md).

Used by ``GET /api/v1/energy`` (:mod:`edgetally.fleet.http.energy`), by ``edgetally energy
report`` and ``fleet query energy`` and by the demo, all with the same
:class:`~edgetally.fleet.energy.assumptions.EnergyConfig`, so the same database and config
give the same answer everywhere.
"""

from __future__ import annotations

from datetime import UTC, datetime

from edgetally.fleet.energy.assumptions import METHODOLOGY, EnergyConfig, GridTable
from edgetally.fleet.energy.baseline import CameraSpec
from edgetally.fleet.energy.ledger import (
    CameraSpan,
    Coverage,
    DeviceSetup,
    PowerRecord,
    combine_labels,
    edge_days,
    ledger_day,
    summarise,
)
from edgetally.fleet.store.base import Store
from edgetally.fleet.store.queries import DEFAULT_MAX_ROWS, QueryTooLarge, where
from edgetally.fleet.store.records import Filters

NOTE = (
    "ratio = cloud / edge (above 1: the edge uses less). The cloud baseline covers the "
    "camera hours each device counted (its aggregates) while its power was read, never more "
    "than hours_per_day a day; a day is measured only if every power bucket of it was "
    f"measured; partial days mix measured and estimated. Methodology: {METHODOLOGY}."
)


def _utc(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _no_line(f: Filters) -> Filters:
    return Filters(site=f.site, device=f.device, start=f.start, end=f.end)


def power_records(
    store: Store, f: Filters, *, max_rows: int = DEFAULT_MAX_ROWS
) -> list[PowerRecord]:
    """The stored power buckets matching the filters (line is ignored: power has none)."""
    clause, params = where(_no_line(f))
    table = store.fetch(
        "SELECT device, site, start, seconds, wh, measured, source, mean_w FROM power"
        f"{clause} ORDER BY site, device, start LIMIT {max_rows + 1}",
        params,
    )
    if len(table.rows) > max_rows:
        raise QueryTooLarge(f"more than {max_rows} power rows match: narrow --from/--to")
    return [
        PowerRecord(
            device=str(d),
            site=str(s),
            start=_utc(start),
            seconds=float(sec),
            wh=float(wh),
            measured=bool(m),
            source=str(src),
            # the wire's mean_w is the mean over the covered part: wh x 3600 / covered
            covered_seconds=float(wh) * 3600 / float(w) if w and float(w) > 0 else None,
        )
        for d, s, start, sec, wh, m, src, w in table.rows
    ]


def camera_spans(store: Store, f: Filters, *, max_rows: int = DEFAULT_MAX_ROWS) -> list[CameraSpan]:
    """When each camera (the aggregates' ``source``) of each device counted: runs of
    consecutive aggregate buckets, merged in the database (a device that counts without a
    break is one row)."""
    clause, params = where(_no_line(f))
    part = "PARTITION BY site, device, source ORDER BY start, stop"
    table = store.fetch(
        "WITH a AS (SELECT DISTINCT site, device, source, start, "
        f"start + seconds * INTERVAL '1 second' AS stop FROM aggregates{clause}), "
        f"b AS (SELECT *, CASE WHEN start <= max(stop) OVER ({part} ROWS BETWEEN UNBOUNDED "
        "PRECEDING AND 1 PRECEDING) THEN 0 ELSE 1 END AS fresh FROM a), "
        f"c AS (SELECT *, sum(fresh) OVER ({part} ROWS UNBOUNDED PRECEDING) AS run FROM b) "
        "SELECT site, device, source, min(start), max(stop) FROM c "
        f"GROUP BY site, device, source, run ORDER BY 1, 2, 3, 4 LIMIT {max_rows + 1}",
        params,
    )
    if len(table.rows) > max_rows:
        raise QueryTooLarge(f"more than {max_rows} runs of aggregates match: narrow from/to")
    return [
        CameraSpan(str(s), str(d), str(src), _utc(a), (_utc(b) - _utc(a)).total_seconds())
        for s, d, src, a, b in table.rows
    ]


def setup_for(config: EnergyConfig, device: str, site: str | None = None) -> DeviceSetup:
    d = config.device(device, site)
    return DeviceSetup(
        cameras=tuple(CameraSpec(c.bitrate_mbps, c.fps, c.audio, c.id) for c in d.cameras),
        hours_per_day=d.hours_per_day,
        store_region=d.store_region,
        cloud_region=d.cloud_region,
        embodied_kg_co2e=d.embodied_kg_co2e or 0.0,
    )


def energy_report(
    records: list[PowerRecord], config: EnergyConfig, spans: list[CameraSpan] | None = None
) -> dict[str, object]:
    """Per device-day ledger lines, per device and per site totals, and an overall label;
    ``spans``: when the cameras counted (None: the power readings' time stands for it)."""
    grid = GridTable(config.grid)
    coverage = Coverage(spans or ())
    days = [
        ledger_day(
            day,
            setup_for(config, day.device, day.site),
            config.assumptions,
            grid,
            coverage.of(day.site, day.device),
        )
        for day in edge_days(records)
    ]
    label = combine_labels(d.edge.label for d in days) if days else None
    firsts = [c.first for d in days for c in d.compared if c.first is not None]
    lasts = [c.last for d in days for c in d.compared if c.last is not None]
    return {
        "measured": label == "measured",
        "label": label,
        "accounting": config.accounting,
        "camera_hours": sum(d.camera_hours for d in days),
        "compared_from": _iso(min(firsts)) if firsts else None,
        "compared_to": _iso(max(lasts)) if lasts else None,
        "sites": summarise(days, "site"),
        "devices": summarise(days, "device"),
        "days": [d.as_json() for d in days],
        "config": config.model_dump(mode="json"),
        "note": NOTE,
    }


def _iso(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).isoformat().replace("+00:00", "Z")


def report_from_store(
    store: Store, f: Filters, config: EnergyConfig, *, max_rows: int = DEFAULT_MAX_ROWS
) -> dict[str, object]:
    records = power_records(store, f, max_rows=max_rows)
    spans = camera_spans(store, f, max_rows=max_rows) if records else []
    return energy_report(records, config, spans)
