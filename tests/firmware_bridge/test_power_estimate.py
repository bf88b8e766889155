"""The CPU-based estimate: /proc/stat utilisation x device profile, never 'measured'."""

from __future__ import annotations

from pathlib import Path

import pytest
from edgetally.firmware_bridge.errors import BridgeError
from edgetally.firmware_bridge.estimate import (
    CpuEstimateMeter,
    DeviceProfile,
    profile,
    read_cpu_times,
)


def write_stat(path: Path, user: int, idle: int) -> None:
    path.write_text(
        f"cpu  {user} 0 0 {idle} 0 0 0 0 0 0\ncpu0 {user} 0 0 {idle} 0 0 0 0 0 0\nintr 1 2\n"
    )


def test_estimate_interpolates_between_idle_and_max(tmp_path: Path) -> None:
    stat = tmp_path / "stat"
    write_stat(stat, 100, 100)
    dev = DeviceProfile("box", 4.0, 12.0, "test")

    def sleep(_: float) -> None:
        write_stat(stat, 150, 150)  # 50 % busy during priming

    meter = CpuEstimateMeter(dev, stat, sleep=sleep)
    assert meter.measured is False and meter.source == "estimate"
    assert meter.read().watts == pytest.approx(8.0)
    write_stat(stat, 250, 150)  # 100 % busy
    assert meter.read().watts == pytest.approx(12.0)
    write_stat(stat, 250, 350)  # idle
    assert meter.read().watts == pytest.approx(4.0)


def test_real_proc_stat_parses() -> None:
    busy, total = read_cpu_times(Path("/proc/stat"))
    assert 0 <= busy <= total and total > 0


def test_profiles_and_bad_input(tmp_path: Path) -> None:
    assert profile("rpi4").idle_w < profile("rpi4").max_w
    assert profile(None, 3, 9).max_w == 9
    with pytest.raises(BridgeError, match="unknown device profile"):
        profile("toaster")
    with pytest.raises(BridgeError, match="both"):
        profile(None, 3, None)
    with pytest.raises(BridgeError, match="idle_w <= max_w"):
        profile(None, 9, 3)
    (tmp_path / "stat").write_text("intr 1\n")
    with pytest.raises(BridgeError, match="no aggregate cpu line"):
        read_cpu_times(tmp_path / "stat")
