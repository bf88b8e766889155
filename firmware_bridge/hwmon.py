"""Power monitors exposed through Linux hwmon: INA2xx and INA3221.

- INA219/226/230/231/238/260 (driver ``ina2xx`` or ``ina238``): ``power1_input`` in
  microwatts.
- INA3221 (Jetson boards and many others): three channels, ``inN_input`` bus voltage in
  mV and ``currN_input`` in mA, ``inN_label`` naming the rail; a chosen rail (Jetson's
  total is ``VDD_IN``) gives volts x amps. Other boards name their input otherwise (an
  i.MX board's ``VDD_5V_IN``): asked for the default rail, a board without ``VDD_IN`` gives
  the one rail whose label ends in ``IN`` or ``VIN`` (the board's input), never a sum of
  rails that may feed each other.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from edgetally.firmware_bridge.errors import BridgeError
from edgetally.firmware_bridge.power import PowerReading, utcnow

DEFAULT_ROOT = Path("/sys/class/hwmon")
INA2XX_NAMES = frozenset({"ina209", "ina219", "ina226", "ina230", "ina231", "ina238", "ina260"})
INA3221_NAMES = frozenset({"ina3221"})
DEFAULT_RAIL = "VDD_IN"


def _read_number(path: Path) -> float:
    try:
        return float(path.read_text().strip())
    except PermissionError as exc:
        raise BridgeError(f"no permission to read {path}") from exc
    except (OSError, ValueError) as exc:
        raise BridgeError(f"cannot read a number from {path}: {exc}") from exc


def _devices(root: Path) -> list[tuple[Path, str]]:
    if not root.is_dir():
        raise BridgeError(f"no hwmon tree at {root}")
    found = []
    for entry in sorted(root.iterdir()):
        name_file = entry / "name"
        if name_file.exists():
            found.append((entry, name_file.read_text().strip()))
    return found


class Ina2xxMeter:
    """``power1_input`` (microwatts) of one INA2xx chip."""

    source = "hwmon"
    measured = True

    def __init__(self, device: Path) -> None:
        self.device = device
        self.path = device / "power1_input"
        if not self.path.exists():
            raise BridgeError(f"{device} has no power1_input")

    def read(self) -> PowerReading:
        return PowerReading(utcnow(), _read_number(self.path) / 1e6)

    def close(self) -> None:
        return None


@dataclass(frozen=True, slots=True)
class Ina3221Channel:
    index: int
    label: str


def ina3221_channels(device: Path) -> list[Ina3221Channel]:
    channels = []
    for n in (1, 2, 3):
        if not (device / f"in{n}_input").exists() or not (device / f"curr{n}_input").exists():
            continue
        label_file = device / f"in{n}_label"
        label = label_file.read_text().strip() if label_file.exists() else f"channel{n}"
        channels.append(Ina3221Channel(n, label))
    return channels


def _is_input(label: str) -> bool:
    """A rail label that names the board's input: VDD_IN, VDD_5V_IN, VIN, 12V_VIN..."""
    last = label.upper().replace("-", "_").rsplit("_", 1)[-1]
    return last in ("IN", "VIN", "INPUT")


class Ina3221Meter:
    """One INA3221 rail: bus voltage (mV) x current (mA)."""

    source = "hwmon"
    measured = True

    def __init__(self, device: Path, rail: str | int = DEFAULT_RAIL) -> None:
        self.device = device
        channels = ina3221_channels(device)
        if not channels:
            raise BridgeError(f"{device} has no INA3221 channel with in*_input and curr*_input")
        chosen = [
            c
            for c in channels
            if (isinstance(rail, int) and c.index == rail)
            or (isinstance(rail, str) and (c.label.lower() == rail.lower() or str(c.index) == rail))
        ]
        if not chosen and rail == DEFAULT_RAIL:
            inputs = [c for c in channels if _is_input(c.label)]
            chosen = inputs if len(inputs) == 1 else []
        if not chosen:
            names = ", ".join(f"{c.index}={c.label}" for c in channels)
            raise BridgeError(
                f"no INA3221 rail {rail!r} on {device} (rails: {names}; choose one with --rail)"
            )
        self.channel = chosen[0]

    def read(self) -> PowerReading:
        n = self.channel.index
        millivolts = _read_number(self.device / f"in{n}_input")
        milliamps = _read_number(self.device / f"curr{n}_input")
        return PowerReading(utcnow(), max(0.0, millivolts * milliamps / 1e6))

    def close(self) -> None:
        return None


def open_hwmon(
    root: Path = DEFAULT_ROOT, rail: str | int = DEFAULT_RAIL
) -> Ina2xxMeter | Ina3221Meter:
    """The first INA2xx with ``power1_input``, else the chosen rail of an INA3221."""
    devices = _devices(root)
    for device, name in devices:
        if name in INA2XX_NAMES and (device / "power1_input").exists():
            return Ina2xxMeter(device)
    errors = []
    for device, name in devices:
        if name in INA3221_NAMES:
            try:
                return Ina3221Meter(device, rail)
            except BridgeError as exc:
                errors.append(str(exc))
    if errors:
        raise BridgeError("; ".join(errors))
    seen = ", ".join(sorted({n for _, n in devices})) or "none"
    raise BridgeError(f"no INA2xx or INA3221 power monitor under {root} (hwmon devices: {seen})")
