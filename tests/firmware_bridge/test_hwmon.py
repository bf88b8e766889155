"""INA2xx and INA3221 through hwmon, against a simulated sysfs tree; and the real default."""

from __future__ import annotations

from pathlib import Path

import pytest
from edgetally.firmware_bridge import hwmon
from edgetally.firmware_bridge.errors import BridgeError
from edgetally.firmware_bridge.hwmon import Ina2xxMeter, Ina3221Meter, open_hwmon
from edgetally.firmware_bridge.sysfs_sim import HwmonSim


def test_ina2xx_power1_input_is_microwatts(tmp_path: Path) -> None:
    sim = HwmonSim(tmp_path)
    sim.add_other()
    dev = sim.add_ina2xx(4.25, name="ina219")
    meter = open_hwmon(tmp_path)
    assert isinstance(meter, Ina2xxMeter)
    assert meter.read().watts == pytest.approx(4.25)
    sim.set_ina2xx(dev, 7.5)
    assert meter.read().watts == pytest.approx(7.5)


def test_ina3221_chosen_rail_is_volts_times_amps(tmp_path: Path) -> None:
    sim = HwmonSim(tmp_path)
    dev = sim.add_ina3221(
        {"VDD_IN": (5.08, 1.2), "VDD_CPU_GPU_CV": (5.0, 0.4), "VDD_SOC": (5.0, 0.3)}
    )
    meter = open_hwmon(tmp_path)
    assert isinstance(meter, Ina3221Meter) and meter.channel.label == "VDD_IN"
    assert meter.read().watts == pytest.approx(5.08 * 1.2)
    soc = open_hwmon(tmp_path, rail="vdd_soc")
    assert soc.read().watts == pytest.approx(1.5)
    by_number = open_hwmon(tmp_path, rail="2")
    assert by_number.read().watts == pytest.approx(2.0)
    sim.set_ina3221(dev, 1, 5.0, 2.0)
    assert meter.read().watts == pytest.approx(10.0)


def test_unknown_rail_lists_the_rails(tmp_path: Path) -> None:
    HwmonSim(tmp_path).add_ina3221({"VDD_IN": (5.0, 1.0)})
    with pytest.raises(BridgeError, match=r"no INA3221 rail 'VDD_GPU'.*1=VDD_IN"):
        open_hwmon(tmp_path, rail="VDD_GPU")


def test_no_power_monitor_names_what_was_seen(tmp_path: Path) -> None:
    HwmonSim(tmp_path).add_other("nvme")
    with pytest.raises(BridgeError, match="hwmon devices: nvme"):
        open_hwmon(tmp_path)


def test_garbage_in_a_sysfs_file_is_an_error_not_a_crash(tmp_path: Path) -> None:
    dev = HwmonSim(tmp_path).add_ina2xx(1.0)
    (dev / "power1_input").write_text("not a number\n")
    with pytest.raises(BridgeError, match="cannot read a number"):
        open_hwmon(tmp_path).read()


def test_real_adapter_reads_the_real_hwmon_by_default() -> None:
    assert Path("/sys/class/hwmon") == hwmon.DEFAULT_ROOT
    try:
        meter = open_hwmon()
    except BridgeError as exc:
        assert "/sys/class/hwmon" in str(exc) or "INA3221" in str(exc)
        return
    assert meter.read().watts >= 0
