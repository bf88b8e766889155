"""RAPL through powercap, against a simulated sysfs tree; and the real default path."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from edgetally.firmware_bridge import rapl
from edgetally.firmware_bridge.errors import BridgeError
from edgetally.firmware_bridge.rapl import RaplMeter, counter_delta
from edgetally.firmware_bridge.sysfs_sim import RaplSim


class Clock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


def meter_for(sim: RaplSim, clock: Clock) -> RaplMeter:
    def sleep(s: float) -> None:
        clock.t += s
        sim.consume(1.0 * s)  # 1 W during the priming interval

    return RaplMeter(sim.root, clock=clock, sleep=sleep)


def test_watts_from_counter_deltas_summed_over_packages(tmp_path: Path) -> None:
    sim = RaplSim(tmp_path, packages=2)
    clock = Clock()
    meter = meter_for(sim, clock)
    first = meter.read()
    assert first.energy_j is None and first.watts == pytest.approx(1.0)
    clock.t += 2.0
    sim.consume(20.0, package=0)
    sim.consume(10.0, package=1)
    r = meter.read()
    assert r.energy_j == pytest.approx(30.0)
    assert r.watts == pytest.approx(15.0)  # sub-zones (core) are not added


def test_counter_wrap_around_uses_max_energy_range(tmp_path: Path) -> None:
    sim = RaplSim(tmp_path, max_range_uj=1_000_000_000)  # wraps every 1000 J
    sim.set_counter(0, 999_000_000)
    clock = Clock()
    meter = meter_for(sim, clock)
    meter.read()
    clock.t += 1.0
    sim.consume(12.0)  # 999.2 J + 12 J -> wraps to 11.2 J
    assert sim.energy_uj[0] < 999_000_000
    r = meter.read()
    assert r.energy_j == pytest.approx(12.0)
    assert meter.wraps == 1


def test_counter_delta() -> None:
    assert counter_delta(10, 25, 100) == 15
    assert counter_delta(90, 5, 100) == 15


def test_unreadable_counter_is_a_clear_error(tmp_path: Path) -> None:
    if os.geteuid() == 0:
        pytest.skip("root reads files regardless of their mode")
    sim = RaplSim(tmp_path)
    (sim.root / "intel-rapl:0" / "energy_uj").chmod(0)
    with pytest.raises(BridgeError, match="no permission"):
        RaplMeter(sim.root, sleep=lambda s: None).read()


def test_missing_tree_and_empty_tree(tmp_path: Path) -> None:
    with pytest.raises(BridgeError, match="no powercap tree"):
        RaplMeter(tmp_path / "absent")
    with pytest.raises(BridgeError, match="no intel-rapl package zone"):
        RaplMeter(tmp_path)


def test_real_adapter_reads_the_real_powercap_by_default() -> None:
    assert Path("/sys/class/powercap") == rapl.DEFAULT_ROOT
    real = Path("/sys/class/powercap")
    try:
        meter = RaplMeter()
    except BridgeError as exc:
        # Either no RAPL here, or it is root-only: the message names the real path.
        assert str(real) in str(exc)
        return
    assert meter.root == real
    try:
        assert meter.read().watts >= 0
    except BridgeError as exc:
        assert "permission" in str(exc)
