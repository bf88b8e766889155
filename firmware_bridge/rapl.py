"""Intel/AMD RAPL energy counters through Linux powercap.

Each top-level zone ``intel-rapl:N`` (one per CPU package; AMD Zen exposes the same
``intel-rapl`` zones) has a monotonically increasing ``energy_uj`` that wraps at
``max_energy_range_uj``. Sub-zones (``intel-rapl:N:M``: core, uncore, dram) are parts of
the package and are not added, except ``dram`` which is outside the package domain on
servers; it is added when ``include_dram`` is set. Reading needs permission on
``energy_uj`` (root-only on recent kernels).
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from edgetally.firmware_bridge.errors import BridgeError
from edgetally.firmware_bridge.power import PowerReading, utcnow

DEFAULT_ROOT = Path("/sys/class/powercap")
_PACKAGE = re.compile(r"^intel-rapl:\d+$")
_SUBZONE = re.compile(r"^intel-rapl:\d+:\d+$")


@dataclass(frozen=True, slots=True)
class RaplZone:
    path: Path
    name: str
    max_range_uj: int


def _read_int(path: Path) -> int:
    try:
        return int(path.read_text().strip())
    except PermissionError as exc:
        raise BridgeError(
            f"no permission to read {path} (RAPL counters are root-only on recent kernels; "
            "run as root or grant read access)"
        ) from exc
    except (OSError, ValueError) as exc:
        raise BridgeError(f"cannot read an integer from {path}: {exc}") from exc


def counter_delta(before: int, after: int, max_range: int) -> int:
    """Energy between two counter values, taking one wrap-around into account."""
    if after >= before:
        return after - before
    return max_range - before + after


def find_zones(root: Path, include_dram: bool = False) -> list[RaplZone]:
    if not root.is_dir():
        raise BridgeError(f"no powercap tree at {root} (no RAPL on this machine)")
    zones: list[RaplZone] = []
    for entry in sorted(root.iterdir()):
        name_file = entry / "name"
        if _PACKAGE.match(entry.name):
            pass
        elif include_dram and _SUBZONE.match(entry.name) and name_file.exists():
            if name_file.read_text().strip() != "dram":
                continue
        else:
            continue
        if not (entry / "energy_uj").exists():
            continue
        name = name_file.read_text().strip() if name_file.exists() else entry.name
        zones.append(RaplZone(entry, name, _read_int(entry / "max_energy_range_uj")))
    if not zones:
        raise BridgeError(f"no intel-rapl package zone with energy_uj under {root}")
    return zones


class RaplMeter:
    """Sum of the package zones' energy counters; watts are averaged since the last read."""

    source = "rapl"
    measured = True

    def __init__(
        self,
        root: Path = DEFAULT_ROOT,
        include_dram: bool = False,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        prime_seconds: float = 0.2,
    ) -> None:
        self.root = root
        self.zones = find_zones(root, include_dram)
        self._clock = clock
        self._sleep = sleep
        self._prime = prime_seconds
        self._last: list[int] | None = None
        self._last_t = 0.0
        self.wraps = 0

    def _counters(self) -> list[int]:
        return [_read_int(z.path / "energy_uj") for z in self.zones]

    def read(self) -> PowerReading:
        if self._last is None:
            self._last, self._last_t = self._counters(), self._clock()
            self._sleep(self._prime)
            first = True
        else:
            first = False
        now_counters, now_t = self._counters(), self._clock()
        micro_j = 0
        for zone, before, after in zip(self.zones, self._last, now_counters, strict=True):
            if after < before:
                self.wraps += 1
            micro_j += counter_delta(before, after, zone.max_range_uj)
        dt = now_t - self._last_t
        self._last, self._last_t = now_counters, now_t
        joules = micro_j / 1e6
        watts = joules / dt if dt > 0 else 0.0
        # The priming interval is not part of the caller's sampling: no energy reported.
        return PowerReading(utcnow(), watts, None if first else joules)

    def close(self) -> None:
        return None
