"""Readings to watt-hours: trapezoid, energy counters, bucket splitting, sampling."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from edgetally.firmware_bridge.errors import BridgeError
from edgetally.firmware_bridge.power import EnergyIntegrator, PowerReading, sample

T0 = datetime(2025, 3, 1, 9, 0, 0, tzinfo=UTC)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def test_constant_power_for_an_hour_is_its_watts_in_wh() -> None:
    integ = EnergyIntegrator("hwmon", True, bucket_seconds=60)
    closed = []
    for s in range(3601):
        closed += integ.add(PowerReading(at(s), 10.0))
    assert integ.wh == pytest.approx(10.0)
    assert len(closed) == 60
    assert all(b.wh == pytest.approx(10.0 / 60) for b in closed)
    assert all(b.watts == pytest.approx(10.0) for b in closed)
    assert closed[0].start == T0 and closed[1].start == at(60)


def test_trapezoid_between_instantaneous_readings() -> None:
    integ = EnergyIntegrator("plug", True)
    integ.add(PowerReading(at(0), 0.0))
    integ.add(PowerReading(at(10), 36.0))
    assert integ.total_j == pytest.approx(180.0)


def test_energy_counter_wins_over_watts() -> None:
    integ = EnergyIntegrator("rapl", True)
    integ.add(PowerReading(at(0), 5.0, None))
    integ.add(PowerReading(at(1), 5.0, 7.0))
    assert integ.total_j == pytest.approx(7.0)


def test_interval_across_a_boundary_is_split_by_time() -> None:
    integ = EnergyIntegrator("serial", True, bucket_seconds=60)
    integ.add(PowerReading(at(50), 6.0))
    closed = integ.add(PowerReading(at(80), 6.0))
    assert len(closed) == 1
    assert closed[0].wh == pytest.approx(6.0 * 10 / 3600)
    assert closed[0].covered_seconds == pytest.approx(10)
    rest = integ.flush()
    assert rest is not None and rest.start == at(60)
    assert rest.wh == pytest.approx(6.0 * 20 / 3600)


def test_out_of_order_readings_are_counted_and_ignored() -> None:
    integ = EnergyIntegrator("plug", True)
    integ.add(PowerReading(at(10), 1.0))
    assert integ.add(PowerReading(at(5), 100.0)) == []
    assert integ.out_of_order == 1 and integ.total_j == 0


def test_reading_rejects_naive_time_and_negative_power() -> None:
    with pytest.raises(ValueError):
        PowerReading(datetime(2025, 1, 1), 1.0)
    with pytest.raises(ValueError):
        PowerReading(T0, -1.0)


class ScriptedMeter:
    source = "hwmon"
    measured = True

    def __init__(self, watts: list[float]) -> None:
        self.watts = watts
        self.t = 0

    def read(self) -> PowerReading:
        r = PowerReading(at(self.t), self.watts[min(self.t, len(self.watts) - 1)])
        self.t += 1
        return r

    def close(self) -> None:
        pass


def test_sample_integrates_about_one_read_per_second() -> None:
    result = sample(ScriptedMeter([4.0, 4.0, 8.0, 8.0]), seconds=3, sleep=lambda s: None)
    assert result.samples == 4
    assert result.wh == pytest.approx((4 + 6 + 8) / 3600)
    assert result.watts == pytest.approx(6.0)
    assert result.as_json() == {
        "source": "hwmon",
        "measured": True,
        "watts": 6.0,
        "wh": round(18 / 3600, 6),
    }


def test_sample_rejects_non_positive_seconds() -> None:
    with pytest.raises(BridgeError, match="--seconds"):
        sample(ScriptedMeter([1.0]), seconds=0, sleep=lambda s: None)
