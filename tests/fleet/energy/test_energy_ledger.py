"""The ledger: device-days, the measured/estimated rule (property-tested), ratios."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from edgetally.fleet.energy.assumptions import EnergyAssumptions, GridTable
from edgetally.fleet.energy.baseline import CameraSpec
from edgetally.fleet.energy.ledger import (
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
    (day,) = edge_days([rec(0, 120, True)])
    line = ledger_day(day, setup, EnergyAssumptions(), GridTable())
    assert line.embodied_gco2e == pytest.approx(34, rel=0.01)  # "~34 g/day over 5 years"
    assert any(a.name == "embodied_kg_co2e" for a in line.assumptions)


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
