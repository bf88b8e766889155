"""Every assumed figure of the energy ledger, with its source; the grid intensities; and
the one energy config that ``fleet serve``, ``energy report`` and the demo all take.

The formulas, every central value and its source, and both accountings are written up in
docs/energy.md (the project's methodology page); the source texts below are its short
form. Any figure can be overridden from a YAML/JSON config (:func:`load_config`, unknown
keys are errors) and the common ones from command-line flags (:func:`with_flags`); every
result lists the assumptions it used (:class:`Assumption`: name, value, unit, source),
overridden ones marked as such.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Annotated, Any, Literal, get_args

import yaml
from edgetally.fleet.errors import FleetError
from pydantic import AliasChoices, BaseModel, ConfigDict, Field, ValidationError

METHODOLOGY = "docs/energy.md"


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
Accounting = Literal["both", "attributional", "marginal"]
ACCOUNTINGS: tuple[str, ...] = get_args(Accounting)


class GridRegion(_Config):
    code: str
    name: str
    gco2e_per_kwh: NonNegative  # the yearly average (location-based): the attributional figure
    low: NonNegative | None = None
    high: NonNegative | None = None
    source: str
    year: int
    # The intensity of the generation that follows a change in demand, where a source
    # gives one; None: the average stands in for it, and the answer says so.
    marginal_gco2e_per_kwh: NonNegative | None = None
    marginal_source: str | None = None
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
    marginal_gco2e_per_kwh: NonNegative | None = None
    marginal_source: str | None = None


Bitrate = Annotated[float, Field(gt=0, le=1000)]
HoursPerDay = Annotated[float, Field(gt=0, le=24)]


class CameraConfig(_Config):
    """One camera the device counts on, as a stream to the cloud would carry it. ``id``: the
    camera's id in the device config (the ``source`` of its aggregates); a camera without
    one stands for every camera of the device that no other entry names."""

    id: str | None = None
    bitrate_mbps: Bitrate = 3.0
    fps: Annotated[float, Field(gt=0, le=240)] = 15.0
    audio: bool = True


class DeviceEnergyConfig(_Config):
    """What a device (or every device of a site, or every device) replaces, and where.

    ``hours_per_day``: the most hours a day its cameras would stream to the cloud (a
    store's opening hours, say). The ledger compares the hours the device's cameras
    actually counted, never more than this a day; 24 (the default) caps nothing."""

    cameras: tuple[CameraConfig, ...] = Field(default=(CameraConfig(),), min_length=1)
    hours_per_day: HoursPerDay = Field(
        default=24.0, validation_alias=AliasChoices("hours_per_day", "hours")
    )
    store_region: str = "WORLD"
    cloud_region: str = "WORLD"
    embodied_kg_co2e: NonNegative | None = None

    def over(self, base: DeviceEnergyConfig) -> DeviceEnergyConfig:
        """``base`` with the fields this entry sets (the others come from ``base``)."""
        return base.model_copy(update={k: getattr(self, k) for k in self.model_fields_set})


class EnergyConfig(_Config):
    """The ``energy`` config: the accounting shown, assumptions, grid overrides, and what
    the devices replace: ``defaults``, then ``sites`` (by site id), then ``devices`` (by
    ``DEVICE`` or ``SITE/DEVICE``), each entry setting only the fields it names."""

    accounting: Accounting = "both"
    assumptions: EnergyAssumptions = EnergyAssumptions()
    grid: dict[str, GridOverride] = Field(default_factory=dict)
    defaults: DeviceEnergyConfig = DeviceEnergyConfig()
    sites: dict[str, DeviceEnergyConfig] = Field(default_factory=dict)
    devices: dict[str, DeviceEnergyConfig] = Field(default_factory=dict)

    def device(self, device_id: str, site: str | None = None) -> DeviceEnergyConfig:
        out = self.defaults
        keys = [(self.sites, site), (self.devices, device_id)]
        if site is not None:
            keys.append((self.devices, f"{site}/{device_id}"))
        for table, key in keys:
            if key is not None and key in table:
                out = table[key].over(out)
        return out

    def entries(self) -> list[tuple[str, DeviceEnergyConfig]]:
        """Every device entry with where it stands in the config (for error messages)."""
        out = [("defaults", self.defaults)]
        out += [(f"sites.{k}", v) for k, v in self.sites.items()]
        out += [(f"devices.{k}", v) for k, v in self.devices.items()]
        return out


def _where(exc: ValidationError) -> str:
    err = exc.errors()[0]
    loc = ".".join(str(p) for p in err["loc"]) or "(top level)"
    return f"{loc}: {err['msg']}"


def load_config(path: Path | None) -> EnergyConfig:
    """The energy config from a YAML or JSON file (None: the central defaults); every grid
    region it names must be known (bundled or under ``grid:``)."""
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
        config = EnergyConfig.model_validate(data or {})
    except ValidationError as exc:
        raise EnergyError(f"energy config {path}: {_where(exc)}") from exc
    check_regions(config, f"energy config {path}")
    return config


def with_flags(
    config: EnergyConfig,
    *,
    hours_per_day: float | None = None,
    bitrate_mbps: float | None = None,
    store_region: str | None = None,
    cloud_region: str | None = None,
    accounting: str | None = None,
) -> EnergyConfig:
    """``config`` with the command line's flags: they set the defaults (every device that
    no ``sites``/``devices`` entry of the file sets otherwise) and the accounting shown."""
    update: dict[str, Any] = {}
    if hours_per_day is not None:
        if not 0 < hours_per_day <= 24:
            raise EnergyError(f"--hours-per-day must be in (0, 24], got {hours_per_day:g}")
        update["hours_per_day"] = hours_per_day
    if bitrate_mbps is not None:
        if not 0 < bitrate_mbps <= 1000:
            raise EnergyError(f"--bitrate-mbps must be in (0, 1000], got {bitrate_mbps:g}")
        update["cameras"] = tuple(
            c.model_copy(update={"bitrate_mbps": bitrate_mbps}) for c in config.defaults.cameras
        )
    grid = GridTable(config.grid)
    for flag, key, value in (
        ("--store-region", "store_region", store_region),
        ("--cloud-region", "cloud_region", cloud_region),
    ):
        if value is not None:
            update[key] = grid.get(value, where=flag).code
    top: dict[str, Any] = {}
    if update:
        top["defaults"] = config.defaults.model_copy(update=update)
    if accounting is not None:
        if accounting not in ACCOUNTINGS:
            raise EnergyError(f"--accounting {accounting!r}: use {', '.join(ACCOUNTINGS)}")
        top["accounting"] = accounting
    return config.model_copy(update=top) if top else config


def check_regions(config: EnergyConfig, what: str = "energy config") -> None:
    """Every region the config names is known (an error naming the key otherwise)."""
    grid = GridTable(config.grid)
    for where, entry in config.entries():
        for key in ("store_region", "cloud_region"):
            if key in entry.model_fields_set or where == "defaults":
                grid.get(getattr(entry, key), where=f"{what}: {where}.{key}")


def dump_config(config: EnergyConfig) -> str:
    """The config as YAML that :func:`load_config` reads back to the same config."""
    data = config.model_dump(mode="json", exclude_unset=True)
    return yaml.safe_dump(data, sort_keys=False) if data else "{}\n"


@dataclass(frozen=True, slots=True)
class Intensity:
    code: str
    gco2e_per_kwh: float
    source: str
    year: int | None
    marginal_gco2e_per_kwh: float | None = None
    marginal_source: str | None = None

    @property
    def marginal(self) -> float:
        """The marginal intensity, or the average where no source gives one."""
        m = self.marginal_gco2e_per_kwh
        return self.gco2e_per_kwh if m is None else m

    def assumption(self, role: str) -> Assumption:
        year = f", {self.year}" if self.year else ""
        return Assumption(
            f"grid_{role}",
            self.gco2e_per_kwh,
            "gCO2e/kWh (average)",
            f"{self.code}: {self.source}{year}",
        )

    def marginal_assumption(self, role: str) -> Assumption:
        if self.marginal_gco2e_per_kwh is None:
            source = (
                f"{self.code}: no sourced marginal figure, the yearly average stands in for "
                f"it (an assumption; {METHODOLOGY})"
            )
        else:
            source = f"{self.code}: {self.marginal_source or 'configured'}"
        return Assumption(f"grid_{role}_marginal", self.marginal, "gCO2e/kWh (marginal)", source)


class GridTable:
    """Bundled intensities by region, with config overrides on top."""

    def __init__(self, overrides: dict[str, GridOverride] | None = None) -> None:
        raw = resources.files("edgetally.fleet.energy").joinpath("grid.json").read_text()
        self.file = GridFile.model_validate(json.loads(raw))
        self._by_key: dict[str, Intensity] = {}
        for r in self.file.regions:
            value = Intensity(
                r.code,
                r.gco2e_per_kwh,
                r.source,
                r.year,
                r.marginal_gco2e_per_kwh,
                r.marginal_source,
            )
            for key in (r.code, r.name, *r.aliases):
                self._by_key[key.lower()] = value
        for code, o in (overrides or {}).items():
            self._by_key[code.lower()] = Intensity(
                code.upper(),
                o.gco2e_per_kwh,
                o.source,
                o.year,
                o.marginal_gco2e_per_kwh,
                o.marginal_source,
            )

    @property
    def codes(self) -> list[str]:
        return sorted({v.code for v in self._by_key.values()})

    def get(self, region: str, *, where: str | None = None) -> Intensity:
        found = self._by_key.get(region.strip().lower())
        if found is None:
            at = f"{where}: " if where else ""
            raise EnergyError(
                f"{at}unknown grid region {region!r} (known: {', '.join(self.codes)}; "
                "add it under grid: in the energy config)"
            )
        return found
