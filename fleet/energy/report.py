"""The energy report over the fleet store: power rows -> device-days -> ledger.

Used by ``GET /api/v1/energy`` (:mod:`edgetally.fleet.http.energy`) and by
``edgetally energy report``, so both give the same answer.
"""

from __future__ import annotations

from datetime import UTC, datetime

from edgetally.fleet.energy.assumptions import EnergyConfig, GridTable
from edgetally.fleet.energy.baseline import CameraSpec
from edgetally.fleet.energy.ledger import (
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


def _utc(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def power_records(
    store: Store, f: Filters, *, max_rows: int = DEFAULT_MAX_ROWS
) -> list[PowerRecord]:
    """The stored power buckets matching the filters (line is ignored: power has none)."""
    clause, params = where(Filters(site=f.site, device=f.device, start=f.start, end=f.end))
    table = store.fetch(
        "SELECT device, site, start, seconds, wh, measured, source FROM power"
        f"{clause} ORDER BY device, start LIMIT {max_rows + 1}",
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
        )
        for d, s, start, sec, wh, m, src in table.rows
    ]


def setup_for(config: EnergyConfig, device: str) -> DeviceSetup:
    d = config.device(device)
    return DeviceSetup(
        cameras=tuple(CameraSpec(c.bitrate_mbps, c.fps, c.audio) for c in d.cameras),
        hours=d.hours,
        store_region=d.store_region,
        cloud_region=d.cloud_region,
        embodied_kg_co2e=d.embodied_kg_co2e or 0.0,
    )


def energy_report(records: list[PowerRecord], config: EnergyConfig) -> dict[str, object]:
    """Per device-day ledger lines, per device and per site totals, and an overall label."""
    grid = GridTable(config.grid)
    days = [
        ledger_day(day, setup_for(config, day.device), config.assumptions, grid)
        for day in edge_days(records)
    ]
    label = combine_labels(d.edge.label for d in days) if days else None
    return {
        "measured": label == "measured",
        "label": label,
        "sites": summarise(days, "site"),
        "devices": summarise(days, "device"),
        "days": [d.as_json() for d in days],
        "note": (
            "ratio = cloud / edge (above 1: the edge uses less). A day is measured only if "
            "every power bucket of it was measured; partial days mix measured and estimated."
        ),
    }


def report_from_store(
    store: Store, f: Filters, config: EnergyConfig, *, max_rows: int = DEFAULT_MAX_ROWS
) -> dict[str, object]:
    return energy_report(power_records(store, f, max_rows=max_rows), config)
