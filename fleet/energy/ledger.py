"""The energy ledger: per device and day, edge energy beside the cloud baseline.

Pure functions over simple records; :mod:`edgetally.fleet.energy.report` feeds them from
the fleet store.

Measured versus estimated, the rule that never lets an estimate pass for a measurement:

- per (device, bucket start) one record counts: a measured one when there is one (the
  largest if several meters measured), else the estimate; an estimate never adds to a
  bucket a measurement covers;
- a day is ``measured`` only if every bucket that counted was measured, ``estimated`` if
  none was, ``partial`` otherwise (with ``measured_wh`` and ``estimated_wh`` apart). Only
  ``measured`` days have ``measured: true``; a site or a total is measured only if all its
  days are.

Days are UTC days of the bucket start.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Literal

from edgetally.fleet.energy.assumptions import (
    Assumption,
    EnergyAssumptions,
    EnergyError,
    GridTable,
)
from edgetally.fleet.energy.baseline import (
    ZERO,
    Baseline,
    CameraSpec,
    baseline_assumptions,
    camera_day,
)

Label = Literal["measured", "estimated", "partial"]


@dataclass(frozen=True, slots=True)
class PowerRecord:
    """One power bucket as the store keeps it."""

    device: str
    site: str
    start: datetime  # UTC-aware
    seconds: float
    wh: float
    measured: bool
    source: str

    def __post_init__(self) -> None:
        if self.start.tzinfo is None:
            raise EnergyError("power record start must be timezone-aware (UTC)")
        if self.wh < 0:
            raise EnergyError(f"power record with negative energy {self.wh} Wh")


def combine_labels(labels: Iterable[Label]) -> Label:
    seen = set(labels)
    if not seen:
        raise EnergyError("no days to label")
    if seen == {"measured"}:
        return "measured"
    if seen == {"estimated"}:
        return "estimated"
    return "partial"


@dataclass(frozen=True, slots=True)
class EdgeDay:
    device: str
    site: str
    day: date
    measured_wh: float
    estimated_wh: float
    measured_buckets: int
    estimated_buckets: int
    covered_hours: float
    sources: tuple[str, ...]

    @property
    def wh(self) -> float:
        return self.measured_wh + self.estimated_wh

    @property
    def label(self) -> Label:
        if self.estimated_buckets == 0:
            return "measured"
        if self.measured_buckets == 0:
            return "estimated"
        return "partial"

    @property
    def measured(self) -> bool:
        return self.label == "measured"


def _pick(records: Sequence[PowerRecord]) -> PowerRecord:
    measured = [r for r in records if r.measured]
    pool = measured or list(records)
    return max(pool, key=lambda r: (r.wh, r.source))


def edge_days(records: Iterable[PowerRecord]) -> list[EdgeDay]:
    """Group power records into device-days, measured and estimated kept apart."""
    per_bucket: dict[tuple[str, datetime], list[PowerRecord]] = defaultdict(list)
    for r in records:
        per_bucket[(r.device, r.start)].append(r)
    per_day: dict[tuple[str, date], list[PowerRecord]] = defaultdict(list)
    for (device, start), group in per_bucket.items():
        per_day[(device, start.date())].append(_pick(group))
    days = []
    for (device, day), chosen in sorted(per_day.items()):
        m = [r for r in chosen if r.measured]
        e = [r for r in chosen if not r.measured]
        days.append(
            EdgeDay(
                device=device,
                site=chosen[0].site,
                day=day,
                measured_wh=sum(r.wh for r in m),
                estimated_wh=sum(r.wh for r in e),
                measured_buckets=len(m),
                estimated_buckets=len(e),
                covered_hours=sum(r.seconds for r in chosen) / 3600,
                sources=tuple(sorted({r.source for r in chosen})),
            )
        )
    return days


@dataclass(frozen=True, slots=True)
class DeviceSetup:
    """What the device replaces and where: from the energy config."""

    cameras: tuple[CameraSpec, ...]
    hours: float
    store_region: str
    cloud_region: str
    embodied_kg_co2e: float = 0.0


def _ratio(cloud: float, edge: float) -> float | None:
    return cloud / edge if edge > 0 else None


@dataclass(frozen=True, slots=True)
class DeviceDayLedger:
    edge: EdgeDay
    setup: DeviceSetup
    cloud: Baseline
    edge_gco2e: float  # operational, at the store's grid
    embodied_gco2e: float  # the device's embodied carbon amortised over one day
    assumptions: tuple[Assumption, ...]

    @property
    def edge_gco2e_total(self) -> float:
        return self.edge_gco2e + self.embodied_gco2e

    def as_json(self) -> dict[str, object]:
        return {
            "device": self.edge.device,
            "site": self.edge.site,
            "day": self.edge.day.isoformat(),
            "cameras": len(self.setup.cameras),
            "bitrates_mbps": [c.bitrate_mbps for c in self.setup.cameras],
            "hours": self.setup.hours,
            "store_region": self.setup.store_region,
            "cloud_region": self.setup.cloud_region,
            "edge": edge_json(self.edge, self.edge_gco2e, self.embodied_gco2e),
            "cloud": self.cloud.as_json(),
            "ratio": ratios(self.cloud, self.edge.wh, self.edge_gco2e_total),
            "assumptions": [a.as_json() for a in self.assumptions],
        }


def edge_json(edge: EdgeDay, gco2e: float, embodied: float) -> dict[str, object]:
    return {
        "wh": edge.wh,
        "measured": edge.measured,
        "label": edge.label,
        "measured_wh": edge.measured_wh,
        "estimated_wh": edge.estimated_wh,
        "covered_hours": edge.covered_hours,
        "sources": list(edge.sources),
        "gco2e": gco2e + embodied,
        "gco2e_operational": gco2e,
        "gco2e_embodied": embodied,
    }


def ratios(cloud: Baseline, edge_wh: float, edge_gco2e: float) -> dict[str, float | None]:
    """Cloud over edge (above 1: the edge saves; None when the edge figure is zero)."""
    return {
        "energy_attributional": _ratio(cloud.cloud_wh_attributional, edge_wh),
        "energy_marginal": _ratio(cloud.cloud_wh_marginal, edge_wh),
        "gco2e_attributional": _ratio(cloud.cloud_gco2e_attributional, edge_gco2e),
        "gco2e_marginal": _ratio(cloud.cloud_gco2e_marginal, edge_gco2e),
    }


def ledger_day(
    edge: EdgeDay, setup: DeviceSetup, a: EnergyAssumptions, grid: GridTable
) -> DeviceDayLedger:
    store, cloud = grid.get(setup.store_region), grid.get(setup.cloud_region)
    total = ZERO
    for camera in setup.cameras:
        total = total + camera_day(camera, setup.hours, store, cloud, a)
    embodied_kg = setup.embodied_kg_co2e or a.embodied_kg_co2e
    embodied_g = embodied_kg * 1000 / (a.device_life_years * 365)
    used = [*baseline_assumptions(a, store, cloud)]
    if embodied_kg:
        used += [
            Assumption("embodied_kg_co2e", embodied_kg, "kg CO2e per device", "configured"),
            a.assumption("device_life_years", "years"),
        ]
    return DeviceDayLedger(
        edge=edge,
        setup=DeviceSetup(setup.cameras, setup.hours, store.code, cloud.code, embodied_kg),
        cloud=total,
        edge_gco2e=edge.wh * store.gco2e_per_kwh / 1000,
        embodied_gco2e=embodied_g,
        assumptions=tuple(used),
    )


def summarise(days: Sequence[DeviceDayLedger], key: str) -> list[dict[str, object]]:
    """Totals per ``key`` ("site" or "device"): sums, the ratio, and the combined label."""
    groups: dict[str, list[DeviceDayLedger]] = defaultdict(list)
    for d in days:
        groups[d.edge.site if key == "site" else d.edge.device].append(d)
    out = []
    for name, group in sorted(groups.items()):
        cloud = ZERO
        for d in group:
            cloud = cloud + d.cloud
        edge_wh = sum(d.edge.wh for d in group)
        edge_g = sum(d.edge_gco2e_total for d in group)
        label = combine_labels(d.edge.label for d in group)
        out.append(
            {
                key: name,
                "days": len(group),
                "edge": {
                    "wh": edge_wh,
                    "gco2e": edge_g,
                    "measured": label == "measured",
                    "label": label,
                    "measured_wh": sum(d.edge.measured_wh for d in group),
                    "estimated_wh": sum(d.edge.estimated_wh for d in group),
                },
                "cloud": cloud.as_json(),
                "ratio": ratios(cloud, edge_wh, edge_g),
            }
        )
    return out
