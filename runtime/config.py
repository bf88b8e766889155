"""The device's configuration file (YAML): cameras, their lines and zones, and where the
aggregates go. Validated once at start, then frozen; an error names the offending key,
e.g. ``cameras[0].lines[1].points: expected 4 numbers``.

Example::

    site: shop-1
    device: entrance-box
    broker: mqtt://127.0.0.1:1883    # mqtts://HOST:8883 for TLS
    # mqtt_password_file: broker.pw  # a closed fleet's broker: user SITE/DEVICE (shop-1/...)
    # mqtt_ca: ca.crt                # the CA the mqtts:// broker's certificate is checked with
    outbox: /var/lib/edgetally/outbox.db
    bucket_seconds: 60
    power:                           # power telemetry, one message per bucket
      source: auto                   # auto|rapl|hwmon|pi5|plug|serial|estimate|none
      profile: edge-box              # for the estimate: a bundled device profile
    audio:                           # sound levels per bucket (optional; no sound leaves)
      id: ceiling-mic
      source: mic                    # mic, mic:DEVICE, or a WAV/FLAC file
      spl_offset_db: 94.0            # calibration: the dB SPL that reads 0 dBFS (optional)
      vad: true                      # speech share with silero-vad
      classifier: yamnet.tflite      # optional, with its class map (YAMNet's CSV format)
      class_map: yamnet_class_map.csv
      # classifier_backend: auto     # auto|onnxruntime|openvino|litert, as for the detector;
      # classifier_accelerator: NPU  # its device, provider or delegate (vad_backend and
      #                              # vad_accelerator likewise for the VAD)
    cameras:
      - id: door
        source: /dev/video0          # or a file, an image folder, rtsp://...
        lines:
          - id: entrance
            points: [380, 100, 380, 576]   # x1, y1, x2, y2 in pixels
        zones:
          - id: till
            polygon: [[10, 10], [200, 10], [200, 200], [10, 200]]
        # roi: [200, 60, 560, 576]     # optional: the detector sees only this region
        shelf:                       # optional: shelf regions and facings this camera sees
          regions:
            - id: top
              polygon: [[10, 10], [390, 10], [390, 110], [10, 110]]
              facings:
                - id: cola
                  polygon: [[20, 20], [110, 20], [110, 105], [20, 105]]
          # scorer: detector           # default classical; a gap or product detector:
          # model: gaps.onnx           # a zoo name or a file (family: when a file needs it)
          # gap_class: 0               # or products: true; min_score: 0.3

Relative paths (outbox, audio files and models, a shelf's reference photo and model file,
the broker's password file and CA) are relative to the config file.
"""

from __future__ import annotations

import difflib
import math
import re
import typing
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

import yaml
from edgetally.models.redact import redact_url
from edgetally.models.topics import ID_PATTERN
from edgetally.models.wire import MAX_BUCKET_SECONDS
from edgetally.models.zoo import DEFAULT_DETECTOR
from edgetally.runtime.audio.config import AudioConfig
from edgetally.runtime.errors import ConfigError, deepest_errors
from edgetally.runtime.shelf.config import ShelfConfig
from edgetally.runtime.shelf.config import parse_config as parse_shelf
from edgetally.runtime.shelf.errors import ShelfError
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

if TYPE_CHECKING:
    from edgetally.runtime.uplink.broker import BrokerLogin

_ID_RE = re.compile(ID_PATTERN)
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
    # The detector sees only this region [x1, y1, x2, y2] (top-left, bottom-right): people
    # far from the camera come out larger.
    roi: tuple[float, float, float, float] | None = None
    realtime: bool = False  # play a file at its own frame rate, as a camera would deliver it
    # Shelf regions and facings (edgetally.runtime.shelf.config), validated here once.
    shelf: ShelfConfig | None = None

    @field_validator("shelf", mode="before")
    @classmethod
    def _parse_shelf(cls, value: Any) -> Any:
        """The shelf block through the shelf's own parser, so its errors read as they do
        for a shelf config file: ``cameras[0].shelf: model: ...``."""
        if value is None or isinstance(value, ShelfConfig):
            return value
        try:
            return parse_shelf(value)
        except ShelfError as exc:
            raise ValueError(str(exc)) from None

    @field_validator("shelf")
    @classmethod
    def _wire_ids(cls, value: ShelfConfig | None) -> ShelfConfig | None:
        for f in value.facings if value is not None else ():  # the ids travel on the wire
            for what, name in (("region", f.region_id), ("facing", f.facing_id)):
                if not _ID_RE.fullmatch(name):
                    raise ValueError(
                        f"{what} id {name[:80]!r}: use 1-64 letters, digits, '_', '.', ':' or '-'"
                    )
        return value

    @field_validator("roi", mode="before")
    @classmethod
    def _region(cls, value: Any) -> Any:
        if value is None:
            return None
        values = _numbers(value, "4 numbers [x1, y1, x2, y2]")
        if len(values) != 4:
            raise ValueError(f"expected 4 numbers [x1, y1, x2, y2], got {len(values)}")
        if values[2] - values[0] < 32 or values[3] - values[1] < 32:
            raise ValueError("give the top-left then the bottom-right corner, at least 32 px apart")
        return tuple(values)

    @model_validator(mode="after")
    def _counters(self) -> CameraConfig:
        if not self.lines and not self.zones and self.shelf is None:
            raise ValueError("a camera needs at least one line, zone or shelf")
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

    def __repr_args__(self) -> Any:  # a password in the plug's broker URL stays out
        for key, value in super().__repr_args__():
            yield key, redact_url(value) if key == "plug_broker" and value else value


class UpdatesConfig(_Strict):
    """Signed model updates from the fleet (``device run`` with an update agent)."""

    models_dir: Path  # slots, current/previous links, the trial marker
    fleet_pubkey: Path  # the fleet's Ed25519 public key, pinned
    device_class: str = Field(min_length=1, max_length=64, pattern=r"^[a-z0-9_.-]+$")
    fleet_url: str | None = Field(default=None, max_length=1024)  # how to reach the fleet
    fleet_token: str | None = Field(default=None, max_length=512, repr=False)  # downloads
    fleet_token_file: Path | None = None  # or the token in this file's first line
    # The broker password (user: site/device); the device's mqtt_password is used first.
    mqtt_password: str | None = Field(default=None, max_length=512, repr=False)
    confirm_frames: int = Field(default=300, ge=1, le=1_000_000)
    precision: Literal["fp32", "fp16", "int8"] | None = None  # default: the running model's
    # The health check's count step: the old and the new model count this clip on these
    # lines (x1,y1,x2,y2) and must agree within the bundle's max_count_delta.
    reference_clip: Path | None = None
    reference_lines: tuple[str, ...] = Field(default=(), max_length=16)
    reference_frames: int = Field(default=300, ge=1, le=100_000)
    # A bundle announced (or streamed) larger than this is not downloaded.
    max_bundle_mb: int = Field(default=512, ge=1, le=1_000_000)
    # A fleet command issued longer ago than this (by the device's clock) is refused.
    max_command_age_s: float = Field(default=600.0, gt=0.0, le=7 * 86_400.0)

    def __repr_args__(self) -> Any:  # a password in the fleet URL stays out
        for key, value in super().__repr_args__():
            yield key, redact_url(value) if key == "fleet_url" and value else value

    @model_validator(mode="after")
    def _one_token(self) -> UpdatesConfig:
        if self.fleet_token is not None and self.fleet_token_file is not None:
            raise ValueError("give the fleet token once: fleet_token or fleet_token_file")
        return self

    def token(self) -> str | None:
        """The device token for bundle downloads: ``fleet_token``, or the first line of
        ``fleet_token_file`` (read here), or None."""
        if self.fleet_token_file is None:
            return self.fleet_token
        from edgetally.models.broker_url import BrokerUrlError, read_password_file

        try:
            return read_password_file(self.fleet_token_file, max_bytes=512, what="token")
        except BrokerUrlError as exc:
            raise ConfigError(f"updates.fleet_token_file: {exc}") from None


class DeviceConfig(_Strict):
    site: Id
    device: Id
    broker: str = "mqtt://127.0.0.1:1883"
    # The broker login (user site/device) and the CA of an mqtts:// broker's certificate.
    mqtt_password: str | None = Field(default=None, max_length=512, repr=False)
    mqtt_password_file: Path | None = None
    mqtt_ca: Path | None = None
    outbox: Path = Path("edgetally-outbox.db")
    outbox_max: int = Field(default=100_000, ge=1, le=100_000_000)
    bucket_seconds: int = Field(default=60, ge=1, le=MAX_BUCKET_SECONDS)
    drain_timeout_s: float = Field(default=30.0, ge=0.0, le=86_400.0)
    model: str = DEFAULT_DETECTOR
    backend: str = "auto"
    accelerator: str | None = None  # OpenVINO device, onnxruntime provider or LiteRT delegate
    power: PowerConfig = PowerConfig()
    updates: UpdatesConfig | None = None
    audio: AudioConfig | None = None
    cameras: tuple[CameraConfig, ...] = ()

    @field_validator("broker")
    @classmethod
    def _broker(cls, value: str) -> str:
        from edgetally.runtime.uplink.publisher import parse_broker_url

        try:
            parse_broker_url(value)
        except ConfigError as exc:
            raise ValueError(str(exc)) from None
        return value

    def broker_login(self) -> BrokerLogin:
        """The broker's address and this device's login, shared by the publisher and the
        update agent (the password file is read here)."""
        from edgetally.runtime.uplink.broker import broker_login

        password = self.mqtt_password
        if password is None and self.mqtt_password_file is None and self.updates is not None:
            password = self.updates.mqtt_password
        return broker_login(
            self.broker,
            site=self.site,
            device=self.device,
            password=password,
            password_file=self.mqtt_password_file,
            ca_file=self.mqtt_ca,
        )

    def __repr_args__(self) -> Any:  # a password in the broker URLs stays out
        for key, value in super().__repr_args__():
            yield key, redact_url(value) if key == "broker" and value else value

    @model_validator(mode="after")
    def _unique_cameras(self) -> DeviceConfig:
        if not self.cameras and self.audio is None:
            raise ValueError("a device needs at least one camera (cameras) or an audio source")
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


def describe_error(exc: ValidationError, model: type[BaseModel] | None = None) -> str:
    """Every problem as ``key.path: what is wrong``, joined by ``; `` on one line. An unknown
    key close to one ``model`` has at that place gets ``(did you mean KEY?)``; a required key
    then missing is not reported twice."""
    errors = deepest_errors(exc.errors(include_url=False, include_input=False))
    unknown: dict[tuple[int | str, ...], str] = {}  # parent location -> the suggested key
    for e in errors:
        if e["type"] == "extra_forbidden" and model is not None:
            loc = _clean(e["loc"])
            fields = _fields_at(model, loc[:-1])
            close = difflib.get_close_matches(str(loc[-1]), fields, n=1, cutoff=0.6)
            if close:
                unknown[loc] = close[0]
    suggested = {(*loc[:-1], key) for loc, key in unknown.items()}
    out = []
    for e in errors:
        loc = _clean(e["loc"])
        if e["type"] == "missing" and loc in suggested:
            continue  # said with the misspelt key
        out.append(f"{error_location(loc) or '(top level)'}: {_problem(e, unknown.get(loc))}")
    return "; ".join(out)


def _clean(loc: tuple[int | str, ...]) -> tuple[int | str, ...]:
    """Errors of a union/tuple element are reported per branch: keep the path to the key."""
    return tuple(p for p in loc if not (isinstance(p, str) and "[" in p))


def _problem(error: Any, suggestion: str | None) -> str:
    kind, msg = error["type"], str(error["msg"])
    if kind == "extra_forbidden":
        return "unknown key" + (f" (did you mean {suggestion}?)" if suggestion else "")
    if kind == "missing":
        return "missing required key"
    if kind == "string_pattern_mismatch":
        return "invalid id: use 1-64 letters, digits, '_', '.', ':' or '-' (no spaces or '/')"
    return msg[len("Value error, ") :] if msg.startswith("Value error, ") else msg


def _fields_at(model: type[BaseModel], loc: tuple[int | str, ...]) -> list[str]:
    """The keys the model nested at ``loc`` (under ``model``) takes; [] when not a model."""
    current: Any = model
    for part in loc:
        if isinstance(part, int):
            continue  # an item of a tuple or list: its model is found below
        fields = getattr(current, "model_fields", None)
        if not fields or part not in fields:
            return []
        current = _model_in(fields[part].annotation)
        if current is None:
            return []
    return list(getattr(current, "model_fields", {}))


def _model_in(annotation: Any) -> Any:
    """The pydantic model an annotation holds (``X``, ``X | None``, ``tuple[X, ...]``)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in typing.get_args(annotation):
        found = _model_in(arg)
        if found is not None:
            return found
    return None


def parse_config(data: Any, *, origin: str = "config") -> DeviceConfig:
    if not isinstance(data, dict):
        raise ConfigError(f"{origin}: expected a mapping of keys (site, device, cameras, ...)")
    try:
        return DeviceConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(f"{origin}: {describe_error(exc, DeviceConfig)}") from None


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
    # Relative paths in a file are relative to the file, not to where it was run from.
    if not config.outbox.is_absolute():
        config = config.model_copy(update={"outbox": path.parent / config.outbox})
    for key in ("mqtt_password_file", "mqtt_ca"):
        value = getattr(config, key)
        if value is not None and not value.is_absolute():
            config = config.model_copy(update={key: path.parent / value})
    if config.audio is not None:
        config = config.model_copy(update={"audio": config.audio.relative_to(path.parent)})
    cameras = tuple(
        c if c.shelf is None else c.model_copy(update={"shelf": c.shelf.relative_to(path.parent)})
        for c in config.cameras
    )
    return config.model_copy(update={"cameras": cameras})
