"""Raspberry Pi 5: the PMIC's rail voltages and currents from ``vcgencmd pmic_read_adc``.

The command prints lines such as ``VDD_CORE_A current(7)=0.66970000A`` and
``VDD_CORE_V volt(15)=0.87940000V``. Power is the sum over rails that have both a current
and a voltage. It misses the PMIC's own conversion losses and the 5 V input (USB, fan,
HATs), so it reads low against a wall meter; it is still a measurement of the SoC rails.
"""

from __future__ import annotations

import re
import subprocess
from collections.abc import Callable, Sequence

from edgetally.firmware_bridge.errors import BridgeError
from edgetally.firmware_bridge.power import PowerReading, utcnow

DEFAULT_COMMAND = ("vcgencmd", "pmic_read_adc")
_LINE = re.compile(
    r"^\s*(?P<rail>[A-Za-z0-9_]+)_(?P<kind>[AV])\s+(?:current|volt)\(\d+\)=(?P<value>[-+0-9.eE]+)[AV]\s*$"
)

Runner = Callable[[Sequence[str]], str]


def run_command(command: Sequence[str]) -> str:
    try:
        done = subprocess.run(list(command), capture_output=True, text=True, timeout=5, check=False)
    except FileNotFoundError as exc:
        raise BridgeError(
            f"{command[0]} not found (not a Raspberry Pi, or firmware tools missing)"
        ) from exc
    except subprocess.TimeoutExpired as exc:
        raise BridgeError(f"{' '.join(command)} did not answer within 5 s") from exc
    if done.returncode != 0:
        msg = (done.stderr or done.stdout).strip().splitlines()
        raise BridgeError(f"{' '.join(command)} failed: {msg[0] if msg else done.returncode}")
    return done.stdout


def parse_pmic_adc(text: str) -> dict[str, float]:
    """Watts per rail, from the text ``vcgencmd pmic_read_adc`` prints."""
    amps: dict[str, float] = {}
    volts: dict[str, float] = {}
    for line in text.splitlines():
        m = _LINE.match(line)
        if not m:
            continue
        target = amps if m["kind"] == "A" else volts
        target[m["rail"]] = float(m["value"])
    rails = {rail: amps[rail] * volts[rail] for rail in amps if rail in volts}
    if not rails:
        raise BridgeError("vcgencmd pmic_read_adc printed no rail with both current and voltage")
    return rails


class Pi5PmicMeter:
    source = "pi5"
    measured = True

    def __init__(
        self, command: Sequence[str] = DEFAULT_COMMAND, runner: Runner = run_command
    ) -> None:
        self.command = tuple(command)
        self._runner = runner

    def read(self) -> PowerReading:
        rails = parse_pmic_adc(self._runner(self.command))
        return PowerReading(utcnow(), max(0.0, sum(rails.values())))

    def close(self) -> None:
        return None
