"""Measured watts on ARM boards without RAPL: the INA219 (ina2xx driver) of the recorded
i.MX 8M Plus tree and the INA3221 of the recorded i.MX 93 tree, read through hwmon's
links as the kernel lays them out, by ``auto`` and by ``edgetally power read``."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
from edgetally.firmware_bridge.errors import BridgeError
from edgetally.firmware_bridge.hwmon import Ina2xxMeter, Ina3221Meter, open_hwmon
from edgetally.firmware_bridge.sources import SourceOptions, open_source
from edgetally.firmware_bridge.sysfs_sim import HwmonSim

from tests.runtime import fake_trees
from tests.runtime.uplink.test_publisher import wait_until


def board_options(root: Path) -> SourceOptions:
    """The board's own sysfs, and no vcgencmd (not a Raspberry Pi)."""
    return SourceOptions(
        powercap_root=root / "sys/class/powercap",
        hwmon_root=root / "sys/class/hwmon",
        vcgencmd=(str(root / "no-vcgencmd"),),
    )


def test_auto_on_the_imx8mp_measures_its_ina219(tmp_path: Path) -> None:
    root = fake_trees.imx8mp(tmp_path)
    meter = open_source("auto", board_options(root))
    assert isinstance(meter, Ina2xxMeter) and meter.measured and meter.source == "hwmon"
    assert meter.device.name == "hwmon1"  # past the SoC's thermal sensor
    assert meter.read().watts == pytest.approx(3.584)


def test_auto_on_the_imx93_measures_the_input_rail_of_its_ina3221(tmp_path: Path) -> None:
    root = fake_trees.imx93(tmp_path)
    meter = open_source("auto", board_options(root))
    assert isinstance(meter, Ina3221Meter) and meter.measured
    assert meter.channel.label == "VDD_5V_IN"  # no VDD_IN on this board: its input rail
    assert meter.read().watts == pytest.approx(5.040 * 0.520)
    soc = open_hwmon(root / "sys/class/hwmon", rail="VDD_SOC")
    assert isinstance(soc, Ina3221Meter)
    assert soc.read().watts == pytest.approx(0.9 * 0.61)


def test_two_input_rails_are_not_guessed_between(tmp_path: Path) -> None:
    sim = HwmonSim(tmp_path)
    sim.add_ina3221({"VDD_5V_IN": (5.0, 1.0), "VDD_12V_IN": (12.0, 0.5), "VDD_SOC": (0.9, 1.0)})
    with pytest.raises(
        BridgeError,
        match=r"no INA3221 rail 'VDD_IN'.*1=VDD_5V_IN, "
        r"2=VDD_12V_IN, 3=VDD_SOC; choose one with --rail",
    ):
        open_hwmon(tmp_path)


def test_power_read_on_the_imx8mp_tree_is_measured(tmp_path: Path) -> None:
    root = fake_trees.imx8mp(tmp_path)
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "edgetally",
            "power",
            "read",
            "--json",
            "--seconds",
            "1",
            "--interval",
            "0.5",
            "--source",
            "hwmon",
            "--hwmon-root",
            str(root / "sys/class/hwmon"),
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    data = json.loads(done.stdout)
    assert data["source"] == "hwmon" and data["measured"] is True
    assert data["watts"] == pytest.approx(3.584)


def test_the_imx8mp_ina219_reaches_the_outbox_as_measured_hwmon_power(tmp_path: Path) -> None:
    from edgetally.runtime.power import PowerSampler
    from edgetally.runtime.uplink.outbox import Outbox

    root = fake_trees.imx8mp(tmp_path / "board")
    meter = open_source("auto", board_options(root))
    with Outbox(tmp_path / "o.db") as box:
        sampler = PowerSampler(
            meter, box, site="s", device="imx8mp", bucket_seconds=3600, interval=0.01
        )
        started = time.monotonic()
        sampler.start()
        assert wait_until(
            lambda: time.monotonic() - started > 0.1 and sampler.mean_watts(started) is not None
        )
        summary = sampler.stop()
        assert sampler.mean_watts(started) == pytest.approx(3.584)
        assert summary.source == "hwmon" and summary.measured and summary.buckets == 1
        payload = json.loads(box.pending()[0].payload)
    assert payload["source"] == "hwmon" and payload["measured"] is True
    assert payload["wh"] > 0
