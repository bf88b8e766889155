"""Raspberry Pi 5 PMIC through `vcgencmd pmic_read_adc` output in its printed format."""

from __future__ import annotations

import os
import stat
from collections.abc import Sequence
from pathlib import Path

import pytest
from edgetally.firmware_bridge import pi5
from edgetally.firmware_bridge.errors import BridgeError
from edgetally.firmware_bridge.pi5 import Pi5PmicMeter, parse_pmic_adc

OUTPUT = (Path(__file__).parent / "pmic_read_adc.txt").read_text()


def test_parse_sums_rails_with_current_and_voltage() -> None:
    rails = parse_pmic_adc(OUTPUT)
    assert "EXT5V" not in rails and "BATT" not in rails  # voltage only
    assert rails["VDD_CORE"] == pytest.approx(0.6697 * 0.8794)
    assert sum(rails.values()) == pytest.approx(1.7333, abs=1e-3)


def test_meter_runs_the_command_through_its_runner() -> None:
    seen: list[Sequence[str]] = []

    def runner(cmd: Sequence[str]) -> str:
        seen.append(cmd)
        return OUTPUT

    r = Pi5PmicMeter(runner=runner).read()
    assert seen == [("vcgencmd", "pmic_read_adc")]
    assert r.watts == pytest.approx(1.7333, abs=1e-3)


def test_real_subprocess_path_with_a_recorded_vcgencmd(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    exe = tmp_path / "vcgencmd"
    (tmp_path / "out.txt").write_text(OUTPUT)
    exe.write_text(
        f"#!/bin/sh\n[ \"$1\" = pmic_read_adc ] || exit 3\ncat '{tmp_path / 'out.txt'}'\n"
    )
    exe.chmod(exe.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")
    assert Pi5PmicMeter().read().watts == pytest.approx(1.7333, abs=1e-3)


def test_failures_are_one_line_errors(tmp_path: Path) -> None:
    with pytest.raises(BridgeError, match="not found"):
        Pi5PmicMeter(command=(str(tmp_path / "nope"), "pmic_read_adc")).read()
    with pytest.raises(BridgeError, match="no rail"):
        Pi5PmicMeter(runner=lambda cmd: 'error=1 error_msg="Command not registered"\n').read()
    with pytest.raises(BridgeError, match="failed"):
        Pi5PmicMeter(command=("sh", "-c", "echo boom >&2; exit 2")).read()


def test_default_is_the_real_vcgencmd() -> None:
    assert pi5.DEFAULT_COMMAND == ("vcgencmd", "pmic_read_adc")
    assert Pi5PmicMeter().command == ("vcgencmd", "pmic_read_adc")
