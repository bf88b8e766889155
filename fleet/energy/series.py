"""Watts over time: the edge devices' power per time bucket, measured and estimated apart
(``GET /api/v1/power``, the dashboard's power charts). Methodology: docs/energy.md.

Per device and power bucket one reading counts, by the ledger's rule (a measured one
when there is one, the largest of them, else the estimate). Per device and answer bucket
(minute, 15 min, hour, day): ``watts`` = Wh x 3600 / the seconds its readings covered
(the device's mean power while it reported), split into ``measured_w`` and
``estimated_w`` by the energy each kind carried, so that they add up to ``watts``. A site
or the fleet (``group``) is the sum of its devices' watts, and of their Wh.
"""

from __future__ import annotations

from typing import Literal, get_args

from edgetally.fleet.energy.assumptions import EnergyError
from edgetally.fleet.store.base import Store
from edgetally.fleet.store.queries import ALL, DEFAULT_MAX_ROWS, QueryTooLarge, where
from edgetally.fleet.store.records import Filters, Table

Group = Literal["device", "site", "fleet"]
GROUPS: tuple[str, ...] = get_args(Group)
COLUMNS: tuple[str, ...] = (
    "bucket",
    "site",
    "device",
    "watts",
    "measured_w",
    "estimated_w",
    "measured_wh",
    "estimated_wh",
    "covered_s",
    "devices",
)


def power_series(
    store: Store, f: Filters, *, group: str = "device", max_rows: int = DEFAULT_MAX_ROWS
) -> Table:
    """Rows of :data:`COLUMNS` per bucket (and site and device, or ``*`` summed over)."""
    if group not in GROUPS:
        raise EnergyError(f"unknown group {group!r}: use {', '.join(GROUPS)}")
    clause, params = where(Filters(site=f.site, device=f.device, start=f.start, end=f.end))
    bucket = store.dialect.bucket("start", f.interval)
    double = store.dialect.double
    covered = (
        f"CASE WHEN mean_w > 0 THEN LEAST(CAST(seconds AS {double}), wh * 3600 / mean_w) "
        f"ELSE CAST(seconds AS {double}) END"
    )
    per_device = (
        f"WITH p AS (SELECT site, device, start, wh, measured, {covered} AS covered, "
        "row_number() OVER (PARTITION BY site, device, start "
        f"ORDER BY measured DESC, wh DESC, source DESC) AS pick FROM power{clause}), "
        f"d AS (SELECT {bucket} AS bucket, site, device, "
        "sum(CASE WHEN measured THEN wh ELSE 0 END) AS measured_wh, "
        "sum(CASE WHEN measured THEN 0 ELSE wh END) AS estimated_wh, "
        "sum(covered) AS covered_s FROM p WHERE pick = 1 GROUP BY 1, 2, 3), "
        "w AS (SELECT bucket, site, device, measured_wh, estimated_wh, covered_s, "
        "CASE WHEN covered_s > 0 THEN measured_wh * 3600 / covered_s ELSE 0 END AS measured_w, "
        "CASE WHEN covered_s > 0 THEN estimated_wh * 3600 / covered_s ELSE 0 END "
        "AS estimated_w FROM d) "
    )
    if group == "device":
        select = (
            "SELECT bucket, site, device, measured_w + estimated_w, measured_w, estimated_w, "
            "measured_wh, estimated_wh, covered_s, 1 FROM w ORDER BY 1, 2, 3"
        )
    else:
        site = "site" if group == "site" else f"'{ALL}'"
        select = (
            f"SELECT bucket, {site}, '{ALL}', sum(measured_w + estimated_w), sum(measured_w), "
            "sum(estimated_w), sum(measured_wh), sum(estimated_wh), sum(covered_s), "
            f"count(*) FROM w GROUP BY 1, 2 ORDER BY 1, 2"
        )
    result = store.fetch(f"{per_device}{select} LIMIT {int(max_rows) + 1}", params)
    if len(result.rows) > max_rows:
        raise QueryTooLarge(
            f"the power query matches more than {max_rows} rows: narrow it or use a coarser "
            "interval (or group=site, group=fleet)"
        )
    return Table(COLUMNS, result.rows)
