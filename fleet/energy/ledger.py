"""The energy ledger: per device and day, edge energy beside the cloud baseline of exactly
the camera time the device covered (methodology: docs/energy.md).

Pure functions over simple records; :mod:`edgetally.fleet.energy.report` feeds them from
the fleet store.

Measured versus estimated, the rule that never lets an estimate pass for a measurement:

- per (site, device, bucket start) one power record counts: a measured one when there is
  one (the largest if several meters measured), else the estimate; an estimate never adds
  to a bucket a measurement covers;
- a day is ``measured`` only if every bucket that counted was measured, ``estimated`` if
  none was, ``partial`` otherwise (with ``measured_wh`` and ``estimated_wh`` apart). Only
  ``measured`` days have ``measured: true``; a site or a total is measured only if all its
  days are.

The cloud counterfactual, the rule that never credits a whole day for part of one: a
camera is compared for the time that both its aggregates (it counted) and the device's
power readings (the edge energy on the other side) cover, bucket by bucket:
``sum over power buckets of min(seconds the readings covered, seconds of the bucket the
camera's aggregates cover)``, at most ``hours_per_day`` a day. A device-day without any
aggregate is compared for the time its power readings covered, for each configured
camera (``basis: "power"``). Each day's line names the cameras, hours and times compared.

Days are UTC days of the bucket start.
"""

from __future__ import annotations

from bisect import bisect_right
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
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
    camera_hours,
)

Label = Literal["measured", "estimated", "partial"]
Basis = Literal["aggregates", "power"]
HOURS_PER_YEAR = 365 * 24


@dataclass(frozen=True, slots=True)
class PowerRecord:
    """One power bucket as the store keeps it. ``covered_seconds``: the part of the bucket
    the meter's readings covered (``wh x 3600 / mean_w``; None: all of it)."""

    device: str
    site: str
    start: datetime  # UTC-aware
    seconds: float
    wh: float
    measured: bool
    source: str
    covered_seconds: float | None = None

    def __post_init__(self) -> None:
        if self.start.tzinfo is None:
            raise EnergyError("power record start must be timezone-aware (UTC)")
        if self.wh < 0:
            raise EnergyError(f"power record with negative energy {self.wh} Wh")

    @property
    def covered(self) -> float:
        if self.covered_seconds is None:
            return self.seconds
        return max(0.0, min(self.seconds, self.covered_seconds))


@dataclass(frozen=True, slots=True)
class CameraSpan:
    """Time a camera counted: aggregates of ``source`` cover [start, start + seconds)."""

    site: str
    device: str
    source: str
    start: datetime  # UTC-aware
    seconds: float

    def __post_init__(self) -> None:
        if self.start.tzinfo is None:
            raise EnergyError("camera span start must be timezone-aware (UTC)")


class Runs:
    """Disjoint, sorted [start, end) runs (epoch seconds) of one camera."""

    __slots__ = ("ends", "starts")

    def __init__(self, intervals: Iterable[tuple[float, float]]) -> None:
        self.starts: list[float] = []
        self.ends: list[float] = []
        for a, b in sorted(intervals):
            if b <= a:
                continue
            if self.ends and a <= self.ends[-1]:
                self.ends[-1] = max(self.ends[-1], b)
            else:
                self.starts.append(a)
                self.ends.append(b)

    def overlap(self, a: float, b: float) -> tuple[float, float | None, float | None]:
        """Seconds of [a, b) inside the runs, and the first and last instant of them."""
        total, first, last = 0.0, None, None
        i = bisect_right(self.ends, a)
        while i < len(self.starts) and self.starts[i] < b:
            lo, hi = max(a, self.starts[i]), min(b, self.ends[i])
            if hi > lo:
                total += hi - lo
                first = lo if first is None else first
                last = hi
            i += 1
        return total, first, last


class Coverage:
    """Where each camera of each device counted: its aggregates' buckets, merged."""

    def __init__(self, spans: Iterable[CameraSpan] = ()) -> None:
        raw: dict[tuple[str, str], dict[str, list[tuple[float, float]]]] = defaultdict(
            lambda: defaultdict(list)
        )
        for s in spans:
            t = s.start.timestamp()
            raw[(s.site, s.device)][s.source].append((t, t + s.seconds))
        self._runs = {
            key: {source: Runs(v) for source, v in by_source.items()}
            for key, by_source in raw.items()
        }

    def of(self, site: str, device: str) -> dict[str, Runs]:
        return self._runs.get((site, device), {})


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
    covered_hours: float  # the time the readings of the counted buckets covered
    sources: tuple[str, ...]
    buckets: tuple[tuple[float, float, float], ...] = ()  # (epoch start, seconds, covered)

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
    per_bucket: dict[tuple[str, str, datetime], list[PowerRecord]] = defaultdict(list)
    for r in records:
        per_bucket[(r.site, r.device, r.start)].append(r)
    per_day: dict[tuple[str, str, date], list[PowerRecord]] = defaultdict(list)
    for (site, device, start), group in per_bucket.items():
        per_day[(device, site, start.astimezone(UTC).date())].append(_pick(group))
    days = []
    for (device, site, day), chosen in sorted(per_day.items()):
        chosen.sort(key=lambda r: r.start)
        m = [r for r in chosen if r.measured]
        e = [r for r in chosen if not r.measured]
        days.append(
            EdgeDay(
                device=device,
                site=site,
                day=day,
                measured_wh=sum(r.wh for r in m),
                estimated_wh=sum(r.wh for r in e),
                measured_buckets=len(m),
                estimated_buckets=len(e),
                covered_hours=sum(r.covered for r in chosen) / 3600,
                sources=tuple(sorted({r.source for r in chosen})),
                buckets=tuple((r.start.timestamp(), r.seconds, r.covered) for r in chosen),
            )
        )
    return days


@dataclass(frozen=True, slots=True)
class DeviceSetup:
    """What the device replaces and where: from the energy config."""

    cameras: tuple[CameraSpec, ...]
    hours_per_day: float = 24.0
    store_region: str = "WORLD"
    cloud_region: str = "WORLD"
    embodied_kg_co2e: float = 0.0

    def __post_init__(self) -> None:
        if not self.cameras:
            raise EnergyError("a device replaces at least one camera")
        if not 0 < self.hours_per_day <= 24:
            raise EnergyError(f"hours per day must be in (0, 24], got {self.hours_per_day}")

    def camera_for(self, source: str) -> CameraSpec:
        """The configured camera of that id, else the first without an id, else the first."""
        for c in self.cameras:
            if c.id == source:
                return c
        return next((c for c in self.cameras if c.id is None), self.cameras[0])


@dataclass(frozen=True, slots=True)
class ComparedCamera:
    """One camera's compared time on one day."""

    name: str  # the aggregates' source, or the configured camera ("camera 1", ...)
    camera: CameraSpec
    seconds: float  # compared: counted, at most hours_per_day
    counted_seconds: float
    first: float | None  # epoch seconds: the compared time lies between first and last
    last: float | None

    def as_json(self) -> dict[str, object]:
        return {
            "camera": self.name,
            "bitrate_mbps": self.camera.bitrate_mbps,
            "fps": self.camera.fps,
            "audio": self.camera.audio,
            "hours": self.seconds / 3600,
            "counted_hours": self.counted_seconds / 3600,
            "from": _iso(self.first),
            "to": _iso(self.last),
        }


def _iso(t: float | None) -> str | None:
    if t is None:
        return None
    return datetime.fromtimestamp(t, UTC).isoformat().replace("+00:00", "Z")


def compare(
    edge: EdgeDay, setup: DeviceSetup, runs: Mapping[str, Runs]
) -> tuple[Basis, list[ComparedCamera]]:
    """The camera time of one device-day to set against its edge energy (see the module)."""
    day0 = datetime(edge.day.year, edge.day.month, edge.day.day, tzinfo=UTC).timestamp()
    cap = setup.hours_per_day * 3600
    seen = {s: r for s, r in runs.items() if r.overlap(day0, day0 + 86400)[0] > 0}
    if not seen:
        total = sum(covered for _, _, covered in edge.buckets)
        first = min((s for s, _, _ in edge.buckets), default=None)
        last = max((s + n for s, n, _ in edge.buckets), default=None)
        return "power", [
            ComparedCamera(c.id or f"camera {i + 1}", c, min(total, cap), total, first, last)
            for i, c in enumerate(setup.cameras)
        ]
    out = []
    for source in sorted(seen):
        total, first, last = 0.0, None, None
        for start, seconds, covered in edge.buckets:
            counted, f, t = seen[source].overlap(start, start + seconds)
            if counted > 0 and f is not None and t is not None:
                total += min(covered, counted)
                first = f if first is None else min(first, f)
                last = t if last is None else max(last, t)
        out.append(
            ComparedCamera(source, setup.camera_for(source), min(total, cap), total, first, last)
        )
    return "aggregates", out


def _ratio(cloud: float, edge: float) -> float | None:
    return cloud / edge if edge > 0 else None


@dataclass(frozen=True, slots=True)
class DeviceDayLedger:
    edge: EdgeDay
    setup: DeviceSetup
    basis: Basis
    compared: tuple[ComparedCamera, ...]
    cloud: Baseline
    edge_gco2e: float  # operational, at the store grid's average
    edge_gco2e_marginal: float  # operational, at its marginal intensity
    embodied_gco2e: float  # the device's embodied carbon, for the hours it covered
    assumptions: tuple[Assumption, ...]

    @property
    def camera_hours(self) -> float:
        return sum(c.seconds for c in self.compared) / 3600

    @property
    def edge_gco2e_total(self) -> float:
        return self.edge_gco2e + self.embodied_gco2e

    @property
    def edge_gco2e_marginal_total(self) -> float:
        return self.edge_gco2e_marginal + self.embodied_gco2e

    def as_json(self) -> dict[str, object]:
        return {
            "device": self.edge.device,
            "site": self.edge.site,
            "day": self.edge.day.isoformat(),
            "basis": self.basis,
            "camera_hours": self.camera_hours,
            "hours_per_day": self.setup.hours_per_day,
            "cameras": len(self.compared),
            "compared": [c.as_json() for c in self.compared],
            "store_region": self.setup.store_region,
            "cloud_region": self.setup.cloud_region,
            "edge": edge_json(
                self.edge, self.edge_gco2e, self.edge_gco2e_marginal, self.embodied_gco2e
            ),
            "cloud": self.cloud.as_json(),
            "ratio": ratios(
                self.cloud, self.edge.wh, self.edge_gco2e_total, self.edge_gco2e_marginal_total
            ),
            "assumptions": [a.as_json() for a in self.assumptions],
        }


def edge_json(edge: EdgeDay, gco2e: float, marginal: float, embodied: float) -> dict[str, object]:
    return {
        "wh": edge.wh,
        "measured": edge.measured,
        "label": edge.label,
        "measured_wh": edge.measured_wh,
        "estimated_wh": edge.estimated_wh,
        "covered_hours": edge.covered_hours,
        "sources": list(edge.sources),
        "gco2e": gco2e + embodied,
        "gco2e_marginal": marginal + embodied,
        "gco2e_operational": gco2e,
        "gco2e_embodied": embodied,
    }


def ratios(
    cloud: Baseline, edge_wh: float, edge_gco2e: float, edge_gco2e_marginal: float | None = None
) -> dict[str, float | None]:
    """Cloud over edge (above 1: the edge saves; None when the edge figure is zero)."""
    marginal = edge_gco2e if edge_gco2e_marginal is None else edge_gco2e_marginal
    return {
        "energy_attributional": _ratio(cloud.cloud_wh_attributional, edge_wh),
        "energy_marginal": _ratio(cloud.cloud_wh_marginal, edge_wh),
        "gco2e_attributional": _ratio(cloud.cloud_gco2e_attributional, edge_gco2e),
        "gco2e_marginal": _ratio(cloud.cloud_gco2e_marginal, marginal),
    }


def ledger_day(
    edge: EdgeDay,
    setup: DeviceSetup,
    a: EnergyAssumptions,
    grid: GridTable,
    runs: Mapping[str, Runs] | None = None,
) -> DeviceDayLedger:
    """One device-day: its edge energy and the cloud baseline of the camera time it
    covered (``runs``: where its cameras counted, by source; none: its power readings)."""
    store, cloud = grid.get(setup.store_region), grid.get(setup.cloud_region)
    basis, compared = compare(edge, setup, runs or {})
    total = ZERO
    for c in compared:
        total = total + camera_hours(c.camera, c.seconds / 3600, store, cloud, a)
    embodied_kg = setup.embodied_kg_co2e or a.embodied_kg_co2e
    embodied_g = embodied_kg * 1000 / (a.device_life_years * HOURS_PER_YEAR) * edge.covered_hours
    used = [*baseline_assumptions(a, store, cloud)]
    if embodied_kg:
        used += [
            Assumption(
                "embodied_kg_co2e",
                embodied_kg,
                "kg CO2e per device",
                "configured; charged per hour the device's readings covered",
            ),
            a.assumption("device_life_years", "years"),
        ]
    return DeviceDayLedger(
        edge=edge,
        setup=DeviceSetup(setup.cameras, setup.hours_per_day, store.code, cloud.code, embodied_kg),
        basis=basis,
        compared=tuple(compared),
        cloud=total,
        edge_gco2e=edge.wh * store.gco2e_per_kwh / 1000,
        edge_gco2e_marginal=edge.wh * store.marginal / 1000,
        embodied_gco2e=embodied_g,
        assumptions=tuple(used),
    )


def summarise(days: Sequence[DeviceDayLedger], key: str) -> list[dict[str, object]]:
    """Totals per ``key`` ("site" or "device": a device is its site and its name): sums,
    the ratios, the camera hours compared, and the combined label."""
    groups: dict[tuple[str, str], list[DeviceDayLedger]] = defaultdict(list)
    for d in days:
        name = (d.edge.site, "") if key == "site" else (d.edge.device, d.edge.site)
        groups[name].append(d)
    out = []
    for name, group in sorted(groups.items()):
        cloud = ZERO
        for d in group:
            cloud = cloud + d.cloud
        edge_wh = sum(d.edge.wh for d in group)
        edge_g = sum(d.edge_gco2e_total for d in group)
        edge_g_marginal = sum(d.edge_gco2e_marginal_total for d in group)
        label = combine_labels(d.edge.label for d in group)
        row: dict[str, object] = {key: name[0]}
        if key == "device":
            row["site"] = name[1]
        row.update(
            {
                "days": len(group),
                "camera_hours": sum(d.camera_hours for d in group),
                "edge": {
                    "wh": edge_wh,
                    "gco2e": edge_g,
                    "gco2e_marginal": edge_g_marginal,
                    "measured": label == "measured",
                    "label": label,
                    "measured_wh": sum(d.edge.measured_wh for d in group),
                    "estimated_wh": sum(d.edge.estimated_wh for d in group),
                    "covered_hours": sum(d.edge.covered_hours for d in group),
                },
                "cloud": cloud.as_json(),
                "ratio": ratios(cloud, edge_wh, edge_g, edge_g_marginal),
            }
        )
        out.append(row)
    return out
