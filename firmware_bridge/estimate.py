"""When nothing can be measured: power estimated from CPU utilisation and a device profile.

watts = idle_w + (max_w - idle_w) x utilisation, utilisation from /proc/stat between two
reads. Always ``measured=False`` and source ``estimate``: the figure is never shown as a
measurement.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from edgetally.firmware_bridge.errors import BridgeError
from edgetally.firmware_bridge.power import PowerReading, utcnow

DEFAULT_PROC_STAT = Path("/proc/stat")


@dataclass(frozen=True, slots=True)
class DeviceProfile:
    name: str
    idle_w: float
    max_w: float
    source: str

    def __post_init__(self) -> None:
        if not (0 <= self.idle_w <= self.max_w):
            raise BridgeError(
                f"device profile {self.name!r}: need 0 <= idle_w <= max_w, "
                f"got idle {self.idle_w} W, max {self.max_w} W"
            )


PROFILES: dict[str, DeviceProfile] = {
    p.name: p
    for p in (
        DeviceProfile(
            "rpi4", 2.6, 5.7, "chipwired.com measurements: 2.2-3.0 W idle, 5.1-6.3 W load"
        ),
        DeviceProfile(
            "rpi4-coral", 2.6, 7.7, "rpi4 + Coral USB accelerator 2 W (coral.ai datasheet)"
        ),
        DeviceProfile(
            "n100", 6.0, 25.0, "Intel N100 mini PC: ~6 W idle, 25 W package limit (reviews)"
        ),
        DeviceProfile(
            "edge-box", 6.0, 12.0, "generic traffic-counting edge box, ~10 W (seed document)"
        ),
    )
}
DEFAULT_PROFILE = "edge-box"


def profile(
    name: str | None = None, idle_w: float | None = None, max_w: float | None = None
) -> DeviceProfile:
    """A bundled profile by name, or a custom one from idle and max watts."""
    if idle_w is not None or max_w is not None:
        if idle_w is None or max_w is None:
            raise BridgeError("a custom device profile needs both --idle-w and --max-w")
        return DeviceProfile(name or "custom", idle_w, max_w, "given on the command line")
    key = name or DEFAULT_PROFILE
    if key not in PROFILES:
        raise BridgeError(f"unknown device profile {key!r} (known: {', '.join(sorted(PROFILES))})")
    return PROFILES[key]


def read_cpu_times(path: Path) -> tuple[int, int]:
    """(busy, total) jiffies from the aggregate ``cpu`` line of /proc/stat."""
    try:
        lines = path.read_text().splitlines()
    except OSError as exc:
        raise BridgeError(f"cannot read {path}: {exc}") from exc
    for line in lines:
        parts = line.split()
        if parts and parts[0] == "cpu":
            try:
                values = [int(v) for v in parts[1:]]
            except ValueError as exc:
                raise BridgeError(f"malformed cpu line in {path}: {line!r}") from exc
            if len(values) < 4:
                raise BridgeError(f"malformed cpu line in {path}: {line!r}")
            # user nice system idle iowait irq softirq steal [guest guest_nice]
            # guest time is already counted in user/nice: leave it out of the total.
            fields = values[:8]
            idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
            total = sum(fields)
            return total - idle, total
    raise BridgeError(f"no aggregate cpu line in {path}")


class CpuEstimateMeter:
    source = "estimate"
    measured = False

    def __init__(
        self,
        device: DeviceProfile,
        proc_stat: Path = DEFAULT_PROC_STAT,
        sleep: Callable[[float], None] = time.sleep,
        prime_seconds: float = 0.2,
    ) -> None:
        self.profile = device
        self.proc_stat = proc_stat
        self._sleep = sleep
        self._prime = prime_seconds
        self._last: tuple[int, int] | None = None
        self.utilisation = 0.0

    def read(self) -> PowerReading:
        if self._last is None:
            self._last = read_cpu_times(self.proc_stat)
            self._sleep(self._prime)
        busy, total = read_cpu_times(self.proc_stat)
        d_busy, d_total = busy - self._last[0], total - self._last[1]
        self._last = (busy, total)
        if d_total > 0:
            self.utilisation = min(1.0, max(0.0, d_busy / d_total))
        p = self.profile
        return PowerReading(utcnow(), p.idle_w + (p.max_w - p.idle_w) * self.utilisation)

    def close(self) -> None:
        return None
