"""Simulated sysfs trees (powercap RAPL, hwmon INA2xx/INA3221) for tests and demos.

Each simulator writes the files the kernel would expose, with the same names and units,
under a directory of your choice; point the real adapters at it (``root=``).
"""

from __future__ import annotations

from pathlib import Path


class RaplSim:
    """``intel-rapl:N`` package zones with energy counters that wrap like the kernel's."""

    def __init__(self, root: Path, packages: int = 1, max_range_uj: int = 262_143_328_850) -> None:
        self.root = root
        self.max_range_uj = max_range_uj
        self.energy_uj = [0] * packages
        for n in range(packages):
            zone = root / f"intel-rapl:{n}"
            zone.mkdir(parents=True, exist_ok=True)
            (zone / "name").write_text(f"package-{n}\n")
            (zone / "max_energy_range_uj").write_text(f"{max_range_uj}\n")
            core = root / f"intel-rapl:{n}:0"  # a sub-zone: part of the package, not added
            core.mkdir(exist_ok=True)
            (core / "name").write_text("core\n")
            (core / "energy_uj").write_text("0\n")
            (core / "max_energy_range_uj").write_text(f"{max_range_uj}\n")
        self._write()

    def _write(self) -> None:
        for n, value in enumerate(self.energy_uj):
            (self.root / f"intel-rapl:{n}" / "energy_uj").write_text(f"{value}\n")
            (self.root / f"intel-rapl:{n}:0" / "energy_uj").write_text(f"{value // 2}\n")

    def set_counter(self, package: int, value_uj: int) -> None:
        self.energy_uj[package] = value_uj % self.max_range_uj
        self._write()

    def consume(self, joules: float, package: int = 0) -> None:
        """Advance a package's counter by ``joules``, wrapping at max_energy_range_uj."""
        self.set_counter(package, self.energy_uj[package] + round(joules * 1e6))


class HwmonSim:
    """A /sys/class/hwmon tree with INA2xx and INA3221 devices."""

    def __init__(self, root: Path) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)
        self._next = 0

    def _device(self, name: str) -> Path:
        device = self.root / f"hwmon{self._next}"
        self._next += 1
        device.mkdir()
        (device / "name").write_text(f"{name}\n")
        return device

    def add_other(self, name: str = "coretemp") -> Path:
        device = self._device(name)
        (device / "temp1_input").write_text("45000\n")
        return device

    def add_ina2xx(self, watts: float, name: str = "ina226") -> Path:
        device = self._device(name)
        self.set_ina2xx(device, watts)
        return device

    @staticmethod
    def set_ina2xx(device: Path, watts: float) -> None:
        (device / "power1_input").write_text(f"{round(watts * 1e6)}\n")

    def add_ina3221(self, rails: dict[str, tuple[float, float]]) -> Path:
        """rails: label -> (volts, amps), on channels 1, 2, 3 in order."""
        device = self._device("ina3221")
        for n, (label, (volts, amps)) in enumerate(rails.items(), start=1):
            (device / f"in{n}_label").write_text(f"{label}\n")
            self.set_ina3221(device, n, volts, amps)
        return device

    @staticmethod
    def set_ina3221(device: Path, channel: int, volts: float, amps: float) -> None:
        (device / f"in{channel}_input").write_text(f"{round(volts * 1000)}\n")
        (device / f"curr{channel}_input").write_text(f"{round(amps * 1000)}\n")
