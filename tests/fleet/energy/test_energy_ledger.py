"""The ledger: device-days, the measured/estimated rule (property-tested), ratios, and the
camera time compared (property-tested against a second-by-second count)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from edgetally.fleet.energy.assumptions import EnergyAssumptions, GridTable
from edgetally.fleet.energy.baseline import CameraSpec, camera_hours
from edgetally.fleet.energy.ledger import (
    CameraSpan,
    Coverage,
    DeviceSetup,
    PowerRecord,
    edge_days,
    ledger_day,
    summarise,
)
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.json_support import obj, objs

DAY = datetime(2025, 3, 3, tzinfo=UTC)
EXAMPLE_SETUP = DeviceSetup((CameraSpec(3.0, 15),), 12, "FR", "US-Virginia")


def rec(
    minute: int, wh: float, measured: bool, device: str = "d1", source: str | None = None
) -> PowerRecord:
    return PowerRecord(
        device,
        "s1",
        DAY + timedelta(minutes=minute),
        60,
        wh,
        measured,
        source or ("rapl" if measured else "estimate"),
    )


def test_worked_example_edge_side() -> None:
    # 10 W for 12 h = 120 Wh, all measured, one camera, France store.
    records = [rec(m, 10 / 60, True) for m in range(12 * 60)]
    (day,) = edge_days(records)
    assert day.wh == pytest.approx(120) and day.measured and day.label == "measured"
    line = ledger_day(day, EXAMPLE_SETUP, EnergyAssumptions(), GridTable())
    out = line.as_json()
    edge, ratio = obj(out["edge"]), obj(out["ratio"])
    assert edge["gco2e"] == pytest.approx(3.96)  # "~4 g"
    assert ratio["energy_attributional"] == pytest.approx(4.5, rel=0.01)
    assert ratio["energy_marginal"] < 1  # the edge uses more energy, marginally
    assert ratio["gco2e_marginal"] == pytest.approx(18.75 / 3.96, rel=0.02)  # ~19 g vs ~4 g
    assert {a["name"] for a in objs(out["assumptions"])} >= {"pue", "grid_store", "grid_cloud"}


def test_embodied_carbon_of_a_one_camera_box() -> None:
    setup = DeviceSetup((CameraSpec(3.0),), 12, "FR", "US-VA", embodied_kg_co2e=62)
    (day,) = edge_days([rec(m, 10 / 60, True) for m in range(24 * 60)])  # on all day
    line = ledger_day(day, setup, EnergyAssumptions(), GridTable())
    assert line.embodied_gco2e == pytest.approx(34, rel=0.01)  # "~34 g/day over 5 years"
    assert any(a.name == "embodied_kg_co2e" for a in line.assumptions)
    # charged for the hours the device's readings covered: a minute carries a minute of it
    (minute,) = edge_days([rec(0, 10 / 60, True)])
    short = ledger_day(minute, setup, EnergyAssumptions(), GridTable())
    assert short.embodied_gco2e == pytest.approx(line.embodied_gco2e / (24 * 60))


def test_several_cameras_add_their_baselines() -> None:
    (day,) = edge_days([rec(0, 120, True)])
    one = ledger_day(day, EXAMPLE_SETUP, EnergyAssumptions(), GridTable())
    four = ledger_day(
        day,
        DeviceSetup((CameraSpec(3.0),) * 4, 12, "FR", "US-VA"),
        EnergyAssumptions(),
        GridTable(),
    )
    assert four.cloud.cloud_wh_attributional == pytest.approx(4 * one.cloud.cloud_wh_attributional)


def test_measurement_wins_over_an_estimate_of_the_same_bucket() -> None:
    (day,) = edge_days([rec(0, 0.2, True), rec(0, 5.0, False), rec(1, 0.1, False)])
    assert day.measured_wh == pytest.approx(0.2) and day.estimated_wh == pytest.approx(0.1)
    assert day.label == "partial" and day.measured is False


def test_days_split_on_utc_dates_and_devices() -> None:
    days = edge_days([rec(0, 1, True), rec(24 * 60, 2, False), rec(0, 3, True, device="d2")])
    assert [(d.device, d.day.isoformat(), d.label) for d in days] == [
        ("d1", "2025-03-03", "measured"),
        ("d1", "2025-03-04", "estimated"),
        ("d2", "2025-03-03", "measured"),
    ]
    ledger = [ledger_day(d, EXAMPLE_SETUP, EnergyAssumptions(), GridTable()) for d in days]
    (site,) = summarise(ledger, "site")
    edge = obj(site["edge"])
    assert edge["label"] == "partial" and edge["measured"] is False
    assert edge["wh"] == pytest.approx(6)


buckets = st.lists(
    st.tuples(
        st.integers(0, 3 * 24 * 60 - 1),  # minute over three days
        st.floats(0, 50, allow_nan=False),
        st.booleans(),
        st.sampled_from(["d1", "d2"]),
    ),
    min_size=1,
    max_size=60,
)


@settings(max_examples=300, deadline=None)
@given(buckets)
def test_an_estimate_is_never_reported_as_measured(
    rows: list[tuple[int, float, bool, str]],
) -> None:
    records = [rec(m, wh, measured, device) for m, wh, measured, device in rows]
    days = edge_days(records)
    for day in days:
        mine = [r for r in records if r.device == day.device and r.start.date() == day.day]
        buckets_measured: dict[datetime, bool] = {}
        for r in mine:
            buckets_measured[r.start] = buckets_measured.get(r.start, False) or r.measured
        # measured only if every bucket that day was measured
        assert day.measured == all(buckets_measured.values())
        if day.label == "estimated":
            assert not any(buckets_measured.values()) and day.measured_wh == 0
        if day.label == "partial":
            assert any(buckets_measured.values()) and not all(buckets_measured.values())
        # measured energy comes only from measured records
        assert day.measured_wh <= sum(r.wh for r in mine if r.measured) + 1e-9
    ledger = [ledger_day(d, EXAMPLE_SETUP, EnergyAssumptions(), GridTable()) for d in days]
    for scope in ("site", "device"):
        for row in summarise(ledger, scope):
            edge = obj(row["edge"])
            group = [
                d
                for d in ledger
                if (d.edge.site if scope == "site" else d.edge.device) == row[scope]
            ]
            assert edge["measured"] == all(d.edge.measured for d in group)
    # the whole ledger is flagged measured only if every input bucket was measured
    all_measured = all(
        any(r.measured for r in records if (r.device, r.start) == key)
        for key in {(r.device, r.start) for r in records}
    )
    assert all(d.measured for d in days) == all_measured


# ------------------------------------------------------------------ the camera time compared


def span(second: float, seconds: float, source: str = "door", device: str = "d1") -> CameraSpan:
    return CameraSpan("s1", device, source, DAY + timedelta(seconds=second), seconds)


def bucket(second: int, seconds: float, covered: float, wh: float = 0.02) -> PowerRecord:
    return PowerRecord(
        "d1", "s1", DAY + timedelta(seconds=second), seconds, wh, False, "estimate", covered
    )


def day_of(records: list[PowerRecord], spans: list[CameraSpan], setup: DeviceSetup) -> Any:
    (day,) = edge_days(records)
    return ledger_day(day, setup, EnergyAssumptions(), GridTable(), Coverage(spans).of("s1", "d1"))


ONE_CAMERA = DeviceSetup((CameraSpec(3.0, 15),))


def test_a_twenty_second_run_gets_a_twenty_second_baseline() -> None:
    # As `device run --realtime` on a 20 s clip sent them: three 10 s power buckets whose
    # readings covered 5.94 + 10 + 4.02 s (wh x 3600 / mean_w), and three 10 s aggregates.
    records = [bucket(30, 10, 5.94, 0.0194), bucket(40, 10, 10.0, 0.0306), bucket(50, 10, 4.02)]
    spans = [span(30, 10), span(40, 10), span(50, 10)]
    line = day_of(records, spans, ONE_CAMERA)
    assert line.basis == "aggregates"
    assert line.camera_hours * 3600 == pytest.approx(19.96)
    assert line.edge.covered_hours * 3600 == pytest.approx(19.96)
    grid = GridTable()
    want = camera_hours(
        CameraSpec(3.0, 15), 19.96 / 3600, grid.get("WORLD"), grid.get("WORLD"), EnergyAssumptions()
    )
    assert line.cloud.cloud_wh_attributional == pytest.approx(want.cloud_wh_attributional)
    assert line.cloud.cloud_wh_attributional == pytest.approx(0.25, rel=0.01)  # not 541 Wh
    (compared,) = obj(line.as_json())["compared"]
    assert compared["camera"] == "door" and compared["hours"] == pytest.approx(19.96 / 3600)
    assert compared["from"] == "2025-03-03T00:00:30Z" and compared["to"] == "2025-03-03T00:01:00Z"


def test_only_the_time_both_the_camera_and_the_power_cover_is_compared() -> None:
    hourly = [bucket(h * 3600, 3600, 3600, 8.0) for h in range(4)]  # 4 h of power
    # the camera counted during hours 1 and 2 only, and half of hour 3
    line = day_of(hourly, [span(3600, 7200), span(3 * 3600, 1800)], ONE_CAMERA)
    assert line.camera_hours == pytest.approx(2.5)
    # it counted outside the power readings: nothing to compare there
    later = day_of(hourly, [span(10 * 3600, 3600)], ONE_CAMERA)
    assert later.basis == "aggregates" and later.camera_hours == 0
    assert later.cloud.cloud_wh_attributional == 0
    assert later.as_json()["ratio"] == {
        "energy_attributional": 0.0,
        "energy_marginal": 0.0,
        "gco2e_attributional": 0.0,
        "gco2e_marginal": 0.0,
    }
    # no aggregates that day at all: the power readings' time, for each configured camera
    two = DeviceSetup((CameraSpec(3.0), CameraSpec(2.0)))
    alone = day_of(hourly, [], two)
    assert alone.basis == "power" and alone.camera_hours == pytest.approx(8)
    assert [c["camera"] for c in objs(alone.as_json()["compared"])] == ["camera 1", "camera 2"]


def test_hours_per_day_caps_each_camera() -> None:
    day = [bucket(h * 3600, 3600, 3600, 8.0) for h in range(24)]
    spans = [span(0, 86400, "door"), span(0, 86400, "aisle")]
    capped = day_of(day, spans, DeviceSetup((CameraSpec(3.0),), hours_per_day=12))
    assert capped.camera_hours == pytest.approx(24)  # two cameras, 12 h each
    for c in objs(capped.as_json()["compared"]):
        assert c["hours"] == pytest.approx(12) and c["counted_hours"] == pytest.approx(24)
    assert day_of(day, spans, ONE_CAMERA).camera_hours == pytest.approx(48)


def test_each_source_streams_like_its_configured_camera() -> None:
    records = [bucket(0, 3600, 3600, 8.0)]
    spans = [span(0, 3600, "door"), span(0, 3600, "aisle"), span(0, 3600, "till")]
    setup = DeviceSetup((CameraSpec(4.0, id="door"), CameraSpec(2.0, fps=5)))
    compared = {c["camera"]: c for c in objs(day_of(records, spans, setup).as_json()["compared"])}
    assert compared["door"]["bitrate_mbps"] == 4.0
    assert compared["aisle"]["bitrate_mbps"] == compared["till"]["bitrate_mbps"] == 2.0
    assert compared["till"]["fps"] == 5


def test_a_device_is_its_site_and_its_name() -> None:
    a = PowerRecord("cam1", "shopA", DAY, 60, 1.0, True, "rapl")
    b = PowerRecord("cam1", "shopB", DAY, 60, 2.0, False, "estimate")
    days = edge_days([a, b])
    assert [(d.site, d.device, d.wh) for d in days] == [
        ("shopA", "cam1", 1.0),
        ("shopB", "cam1", 2.0),
    ]
    ledger = [ledger_day(d, ONE_CAMERA, EnergyAssumptions(), GridTable()) for d in days]
    assert [(r["device"], r["site"]) for r in summarise(ledger, "device")] == [
        ("cam1", "shopA"),
        ("cam1", "shopB"),
    ]


TEN = 10  # seconds: the buckets of the property test


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.tuples(st.integers(0, 40), st.integers(0, TEN)),
        min_size=1,
        max_size=30,
        unique_by=lambda t: t[0],
    ),
    st.lists(
        st.tuples(st.integers(0, 400), st.integers(1, 60), st.sampled_from(["a", "b"])), max_size=12
    ),
    st.floats(0.01, 24),
)
def test_compared_time_is_the_overlap_second_by_second(
    power: list[tuple[int, int]], spans: list[tuple[int, int, str]], cap: float
) -> None:
    records = [bucket(i * TEN, TEN, covered) for i, covered in power]
    camera = [span(s, n, source) for s, n, source in spans]
    line = day_of(records, camera, DeviceSetup((CameraSpec(3.0),), hours_per_day=cap))
    if not camera:
        assert line.basis == "power"
        assert line.camera_hours * 3600 == pytest.approx(min(sum(c for _, c in power), cap * 3600))
        return
    for source in sorted({s for _, _, s in spans}):
        seconds = {t for s, n, src in spans if src == source for t in range(s, s + n)}
        want = sum(
            min(covered, len(seconds & set(range(i * TEN, i * TEN + TEN)))) for i, covered in power
        )
        (got,) = [c for c in objs(line.as_json()["compared"]) if c["camera"] == source]
        assert got["counted_hours"] * 3600 == pytest.approx(want)
        assert got["hours"] * 3600 == pytest.approx(min(want, cap * 3600))
