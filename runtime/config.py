"""The device's configuration file (YAML): cameras, their lines and zones, and where the
aggregates go. Validated once at start, then frozen; an error names the offending key,
e.g. ``cameras[0].lines[1].points: expected 4 numbers``.

Example::

    site: shop-1
    device: entrance-box
    broker: mqtt://127.0.0.1:1883
    outbox: /var/lib/edgetally/outbox.db
    bucket_seconds: 60
    power:                           # power telemetry, one message per bucket
      source: auto                   # auto|rapl|hwmon|pi5|plug|serial|estimate|none
      profile: edge-box              # for the estimate: a bundled device profile
    cameras:
      - id: door
        source: /dev/video0          # or a file, an image folder, rtsp://...
        lines:
          - id: entrance
            points: [380, 100, 380, 576]   # x1, y1, x2, y2 in pixels
        zones:
          - id: till
            polygon: [[10, 10], [200, 10], [200, 200], [10, 200]]
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from edgetally.models.topics import ID_PATTERN
from edgetally.models.wire import MAX_BUCKET_SECONDS
from edgetally.runtime.errors import ConfigError
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

Id = Annotated[str, Field(pattern=ID_PATTERN, max_length=64)]
MAX_CONFIG_BYTES = 1 << 20


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _numbers(value: Any, what: str) -> list[float]:
    if not isinstance(value, list | tuple) or not all(
        isinstance(v, int | float) and not isinstance(v, bool) for v in value
    ):
        raise ValueError(f"expected {what}")
    if not all(math.isfinite(float(v)) for v in value):
        raise ValueError("numbers must be finite")
    return [float(v) for v in value]


class LineConfig(_Strict):
    """A directed counting line: ``in`` is toward the side (y2-y1, x1-x2) points to."""

    id: Id
    points: tuple[float, float, float, float]
    band: float = Field(default=8.0, ge=0.0, le=200.0)

    @field_validator("points", mode="before")
    @classmethod
    def _four(cls, value: Any) -> Any:
        values = _numbers(value, "4 numbers [x1, y1, x2, y2]")
        if len(values) != 4:
            raise ValueError(f"expected 4 numbers [x1, y1, x2, y2], got {len(values)}")
        if math.hypot(values[2] - values[0], values[3] - values[1]) < 1:
            raise ValueError("the two points of the line are the same")
        return tuple(values)


class ZoneConfig(_Strict):
    id: Id
    polygon: tuple[tuple[float, float], ...]

    @field_validator("polygon", mode="before")
    @classmethod
    def _points(cls, value: Any) -> Any:
        if not isinstance(value, list | tuple) or len(value) < 3:
            raise ValueError("expected at least 3 points [[x, y], ...]")
        points = []
        for i, point in enumerate(value):
            xy = _numbers(point, f"point {i} as [x, y]")
            if len(xy) != 2:
                raise ValueError(f"expected point {i} as [x, y]")
            points.append((xy[0], xy[1]))
        return tuple(points)


class CameraConfig(_Strict):
    id: Id
    source: str = Field(min_length=1, max_length=1024)
    lines: tuple[LineConfig, ...] = ()
    zones: tuple[ZoneConfig, ...] = ()
    stride: int = Field(default=1, ge=1, le=1000)
    max_frames: int | None = Field(default=None, ge=1)
    realtime: bool = False  # play a file at its own frame rate, as a camera would deliver it

    @model_validator(mode="after")
    def _counters(self) -> CameraConfig:
        if not self.lines and not self.zones:
            raise ValueError("a camera needs at least one line or zone")
        ids = [c.id for c in self.lines] + [z.id for z in self.zones]
        dupes = sorted({i for i in ids if ids.count(i) > 1})
        if dupes:
            raise ValueError(f"line and zone ids must be unique; repeated: {', '.join(dupes)}")
        return self


PowerSourceName = Literal["auto", "rapl", "hwmon", "pi5", "plug", "serial", "estimate", "none"]


class PowerConfig(_Strict):
    """Power telemetry: which meter, how often it is read, and the estimate's profile."""

    source: PowerSourceName = "none"
    interval_s: float = Field(default=1.0, gt=0.0, le=60.0)
    profile: str | None = Field(default=None, max_length=64)
    idle_w: float | None = Field(default=None, ge=0.0, le=10_000.0)
    max_w: float | None = Field(default=None, ge=0.0, le=10_000.0)
    rail: str | None = Field(default=None, max_length=64)
    plug_broker: str | None = Field(default=None, max_length=1024)  # default: the device's
    plug_topic: str | None = Field(default=None, max_length=256)
    serial_port: str | None = Field(default=None, max_length=1024)
    serial_baud: int = Field(default=115200, ge=300, le=4_000_000)


class DeviceConfig(_Strict):
    site: Id
    device: Id
    broker: str = "mqtt://127.0.0.1:1883"
    outbox: Path = Path("edgetally-outbox.db")
    outbox_max: int = Field(default=100_000, ge=1, le=100_000_000)
    bucket_seconds: int = Field(default=60, ge=1, le=MAX_BUCKET_SECONDS)
    drain_timeout_s: float = Field(default=30.0, ge=0.0, le=86_400.0)
    model: str = "pedestrian-ssdlite"
    backend: str = "auto"
    accelerator: str | None = None  # OpenVINO device, onnxruntime provider or LiteRT delegate
    power: PowerConfig = PowerConfig()
    cameras: tuple[CameraConfig, ...] = Field(min_length=1)

    @field_validator("broker")
    @classmethod
    def _broker(cls, value: str) -> str:
        from edgetally.runtime.publisher import parse_broker_url

        try:
            parse_broker_url(value)
        except ConfigError as exc:
            raise ValueError(str(exc)) from None
        return value

    @model_validator(mode="after")
    def _unique_cameras(self) -> DeviceConfig:
        ids = [c.id for c in self.cameras]
        dupes = sorted({i for i in ids if ids.count(i) > 1})
        if dupes:
            raise ValueError(f"camera ids must be unique; repeated: {', '.join(dupes)}")
        return self


def error_location(loc: tuple[int | str, ...]) -> str:
    """``("cameras", 0, "lines", 1, "points")`` -> ``cameras[0].lines[1].points``."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + part
    return out


def describe_error(exc: ValidationError) -> str:
    """The first problem as ``key.path: what is wrong`` (and how many more there are)."""
    errors = exc.errors(include_url=False, include_input=False)
    # A bad item makes its container short too ("cameras: at least 1 item"): a follow-on.
    locs = [e["loc"] for e in errors]
    errors = [
        e for e in errors
        if not any(len(o) > len(e["loc"]) and o[: len(e["loc"])] == e["loc"] for o in locs)
    ] or errors
    first = errors[0]
    # Errors of a union/tuple element are reported per branch: keep the path to the key.
    loc = tuple(p for p in first["loc"] if not (isinstance(p, str) and "[" in p))
    where = error_location(loc) or "(top level)"
    kind, msg = first["type"], str(first["msg"])
    if kind == "extra_forbidden":
        msg = "unknown key"
    elif kind == "missing":
        msg = "missing required key"
    elif kind == "string_pattern_mismatch":
        msg = "invalid id: use 1-64 letters, digits, '_', '.', ':' or '-' (no spaces or '/')"
    elif msg.startswith("Value error, "):
        msg = msg[len("Value error, ") :]
    more = f" (and {len(errors) - 1} more problems)" if len(errors) > 1 else ""
    return f"{where}: {msg}{more}"


def parse_config(data: Any, *, origin: str = "config") -> DeviceConfig:
    if not isinstance(data, dict):
        raise ConfigError(f"{origin}: expected a mapping of keys (site, device, cameras, ...)")
    try:
        return DeviceConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(f"{origin}: {describe_error(exc)}") from None


def load_config(path: Path) -> DeviceConfig:
    """Read and validate a device config file, or raise :class:`ConfigError` saying where."""
    try:
        if path.stat().st_size > MAX_CONFIG_BYTES:
            raise ConfigError(f"{path}: larger than {MAX_CONFIG_BYTES} bytes; not a config file")
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read config {path}: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not UTF-8 text") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or "not valid YAML"
        raise ConfigError(f"{path}:{where}: {problem}") from None
    config = parse_config(data, origin=str(path))
    if not config.outbox.is_absolute():
        # Relative paths in a file are relative to the file, not to where it was run from.
        config = config.model_copy(update={"outbox": path.parent / config.outbox})
    return config
