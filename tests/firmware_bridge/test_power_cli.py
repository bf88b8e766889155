"""`edgetally power read` end to end, as a user runs it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from edgetally.firmware_bridge.serial_sim import SerialSimulator
from edgetally.firmware_bridge.sysfs_sim import HwmonSim, RaplSim


def edgetally(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "edgetally", *args], capture_output=True, text=True, check=False
    )


def test_estimate_prints_exactly_the_four_keys() -> None:
    done = edgetally(
        "power",
        "read",
        "--source",
        "estimate",
        "--seconds",
        "1",
        "--interval",
        "0.5",
        "--json",
        "--profile",
        "rpi4",
    )
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    assert set(out) == {"source", "measured", "watts", "wh"}
    assert out["source"] == "estimate" and out["measured"] is False
    assert 2.6 <= out["watts"] <= 5.7
    assert out["wh"] > 0


def test_hwmon_from_a_simulated_tree(tmp_path: Path) -> None:
    HwmonSim(tmp_path).add_ina2xx(7.2)
    done = edgetally(
        "power",
        "read",
        "--source",
        "hwmon",
        "--hwmon-root",
        str(tmp_path),
        "--seconds",
        "1",
        "--interval",
        "0.5",
        "--json",
    )
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    assert out["source"] == "hwmon" and out["measured"] is True
    assert out["watts"] == pytest.approx(7.2)
    assert out["wh"] == pytest.approx(7.2 / 3600, rel=0.3)


def test_auto_picks_the_first_that_works_and_says_so(tmp_path: Path) -> None:
    RaplSim(tmp_path / "powercap")
    HwmonSim(tmp_path / "hwmon").add_ina2xx(3.0)
    done = edgetally(
        "power",
        "read",
        "--powercap-root",
        str(tmp_path / "none"),
        "--hwmon-root",
        str(tmp_path / "hwmon"),
        "--seconds",
        "1",
        "--interval",
        "0.5",
        "--json",
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["source"] == "hwmon"
    assert "auto: using hwmon" in done.stderr
    fallback = edgetally(
        "power",
        "read",
        "--powercap-root",
        str(tmp_path / "none"),
        "--hwmon-root",
        str(tmp_path / "none"),
        "--seconds",
        "1",
        "--interval",
        "0.5",
        "--json",
    )
    assert json.loads(fallback.stdout)["measured"] is False
    assert "using the CPU-based estimate" in fallback.stderr


def test_serial_through_the_simulator() -> None:
    with SerialSimulator(watts=4.5) as sim:
        sim.start(0.2)
        done = edgetally(
            "power",
            "read",
            "--source",
            "serial",
            "--serial-port",
            sim.port,
            "--seconds",
            "1",
            "--interval",
            "0.25",
            "--json",
        )
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    assert out["source"] == "serial" and out["measured"] is True
    assert out["watts"] == pytest.approx(4.5, rel=0.01)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--source", "rapl", "--powercap-root", "/nonexistent/powercap"], "no powercap tree"),
        (["--source", "plug"], "needs --plug-broker and --plug-topic"),
        (["--source", "serial", "--serial-port", "/nonexistent/tty"], "cannot open serial port"),
        (["--source", "lightning"], "unknown --source"),
        (["--source", "estimate", "--seconds", "-1"], "--seconds must be positive"),
        (["--source", "estimate", "--profile", "toaster"], "unknown device profile"),
    ],
)
def test_bad_input_is_one_line_without_traceback(args: list[str], message: str) -> None:
    done = edgetally("power", "read", *args)
    assert done.returncode == 1
    assert message in done.stderr
    assert "Traceback" not in done.stderr
    assert done.stderr.startswith("edgetally: error: ")
