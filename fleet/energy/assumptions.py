"""Every assumed figure of the energy ledger, with its source; and the grid intensities.

Central values and sources come from the project's energy notes (ENERGY.md). They can be
overridden from a YAML/JSON config (:func:`load_config`, unknown keys are errors), and
every result lists the assumptions it used (:class:`Assumption`: name, value, unit,
source), overridden ones marked as such.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Annotated, Any

import yaml
from edgetally.fleet.errors import FleetError
from pydantic import BaseModel, ConfigDict, Field, ValidationError


class EnergyError(FleetError):
    """An energy assumption, region or ledger input is wrong."""


@dataclass(frozen=True, slots=True)
class Assumption:
    name: str
    value: float | str
    unit: str
    source: str

    def as_json(self) -> dict[str, object]:
        return {"name": self.name, "value": self.value, "unit": self.unit, "source": self.source}


class _Config(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


Positive = Annotated[float, Field(gt=0)]
NonNegative = Annotated[float, Field(ge=0)]


class GridRegion(_Config):
    code: str
    name: str
    gco2e_per_kwh: NonNegative
    low: NonNegative | None = None
    high: NonNegative | None = None
    source: str
    year: int
    aliases: tuple[str, ...] = ()


class GridFile(_Config):
    unit: str
    basis: str
    regions: tuple[GridRegion, ...]


SOURCES = {
    "network_kwh_per_gb": (
        "EU ICT study 2020 (0.03); range 0.0065 Carbon Trust 2021 to 0.06 Aslan et al. 2018"
    ),
    "network_w_per_mbps": "Malmodin 2020; Mytton, Lunden & Malmodin 2024 (0.03-0.05 W per Mb/s)",
    "network_store_share": (
        "network energy charged half at the store's grid, half at the data center's"
    ),
    "cloud_j_per_frame": (
        "YOLO-class detector on a T4/A16 shared by 40-60 cameras incl. host share (0.1-0.5)"
    ),
    "pue": "hyperscale PUE: AWS 1.15 (2023), Google ~1.10, Microsoft 1.12-1.18",
    "audio_mbps": "microphone stream 32 kb/s (Opus wideband 16-20, G.711/AAC 64)",
    "storage_wh_per_tb_hour": "Cloud Carbon Footprint methodology, HDD 0.65 (SSD 1.2)",
    "storage_replication": "Cloud Carbon Footprint methodology, x3 replication",
    "storage_retention_days": "no cloud storage unless configured",
    "embodied_kg_co2e": "not counted unless configured (small box 62-102 kg, Dell Wyse / Boavizta)",
    "device_life_years": "amortisation period of the edge device",
}


class EnergyAssumptions(_Config):
    """The central values; override any of them in the config file under ``assumptions``."""

    network_kwh_per_gb: NonNegative = 0.03
    network_w_per_mbps: NonNegative = 0.05
    network_store_share: Annotated[float, Field(ge=0, le=1)] = 0.5
    cloud_j_per_frame: NonNegative = 0.24
    pue: Annotated[float, Field(ge=1, le=5)] = 1.15
    audio_mbps: NonNegative = 0.032
    storage_wh_per_tb_hour: NonNegative = 0.65
    storage_replication: Positive = 3.0
    storage_retention_days: NonNegative = 0.0
    embodied_kg_co2e: NonNegative = 0.0
    device_life_years: Positive = 5.0
    sources: dict[str, str] = Field(default_factory=dict)  # override a source text

    def assumption(self, name: str, unit: str) -> Assumption:
        value = getattr(self, name)
        default = type(self).model_fields[name].default
        source = self.sources.get(name) or SOURCES[name]
        if value != default and name not in self.sources:
            source = f"configured (central {default}: {SOURCES[name]})"
        return Assumption(name, value, unit, source)


class GridOverride(_Config):
    gco2e_per_kwh: NonNegative
    source: str = "configured"
    year: int | None = None
    name: str | None = None


class CameraConfig(_Config):
    bitrate_mbps: Annotated[float, Field(gt=0, le=1000)] = 3.0
    fps: Annotated[float, Field(gt=0, le=240)] = 15.0
    audio: bool = True


class DeviceEnergyConfig(_Config):
    cameras: tuple[CameraConfig, ...] = (CameraConfig(),)
    hours: Annotated[float, Field(gt=0, le=24)] = 12.0
    store_region: str = "WORLD"
    cloud_region: str = "WORLD"
    embodied_kg_co2e: NonNegative | None = None


class EnergyConfig(_Config):
    """The ``energy`` config: assumptions, grid overrides, and what each device replaces."""

    assumptions: EnergyAssumptions = EnergyAssumptions()
    grid: dict[str, GridOverride] = Field(default_factory=dict)
    defaults: DeviceEnergyConfig = DeviceEnergyConfig()
    devices: dict[str, DeviceEnergyConfig] = Field(default_factory=dict)

    def device(self, device_id: str) -> DeviceEnergyConfig:
        return self.devices.get(device_id, self.defaults)


def _where(exc: ValidationError) -> str:
    err = exc.errors()[0]
    loc = ".".join(str(p) for p in err["loc"]) or "(top level)"
    return f"{loc}: {err['msg']}"


def load_config(path: Path | None) -> EnergyConfig:
    """The energy config from a YAML or JSON file (None: the central defaults)."""
    if path is None:
        return EnergyConfig()
    try:
        data: Any = yaml.safe_load(path.read_text())
    except OSError as exc:
        raise EnergyError(f"cannot read energy config {path}: {exc.strerror or exc}") from exc
    except yaml.YAMLError as exc:
        raise EnergyError(f"energy config {path} is not valid YAML: {exc}") from exc
    if isinstance(data, dict) and set(data) == {"energy"}:
        data = data["energy"]
    try:
        return EnergyConfig.model_validate(data or {})
    except ValidationError as exc:
        raise EnergyError(f"energy config {path}: {_where(exc)}") from exc


@dataclass(frozen=True, slots=True)
class Intensity:
    code: str
    gco2e_per_kwh: float
    source: str
    year: int | None

    def assumption(self, role: str) -> Assumption:
        year = f", {self.year}" if self.year else ""
        return Assumption(
            f"grid_{role}", self.gco2e_per_kwh, "gCO2e/kWh", f"{self.code}: {self.source}{year}"
        )


class GridTable:
    """Bundled intensities by region, with config overrides on top."""

    def __init__(self, overrides: dict[str, GridOverride] | None = None) -> None:
        raw = resources.files("edgetally.fleet.energy").joinpath("grid.json").read_text()
        self.file = GridFile.model_validate(json.loads(raw))
        self._by_key: dict[str, Intensity] = {}
        for r in self.file.regions:
            value = Intensity(r.code, r.gco2e_per_kwh, r.source, r.year)
            for key in (r.code, r.name, *r.aliases):
                self._by_key[key.lower()] = value
        for code, o in (overrides or {}).items():
            self._by_key[code.lower()] = Intensity(code.upper(), o.gco2e_per_kwh, o.source, o.year)

    @property
    def codes(self) -> list[str]:
        return sorted({v.code for v in self._by_key.values()})

    def get(self, region: str) -> Intensity:
        found = self._by_key.get(region.strip().lower())
        if found is None:
            raise EnergyError(
                f"unknown grid region {region!r} (known: {', '.join(self.codes)}; "
                "add it under grid: in the energy config)"
            )
        return found
