"""The wire schema: every message between a device and the fleet, versioned.

Seven messages travel over MQTT (topics in :mod:`edgetally.models.topics`):

- :class:`Aggregate` (``.../agg``): one time bucket of one line or zone of one source;
- :class:`DeviceStatus` (``.../status``): online/offline, model, backend, fps, uptime, errors;
- :class:`PowerReading` (``.../power``): energy of one bucket from one power meter;
- :class:`AudioLevels` (``.../audio``): sound level, speech share and sound-event counts of
  one bucket of one microphone or sound file (numbers only: no samples, no spectra);
- :class:`ShelfState` (``.../shelf``): shelf events per facing of one bucket of one camera;
- :class:`Command` (``.../cmd``): fleet to device, signed (:mod:`edgetally.models.commands`);
- :class:`UpdateReport` (``.../update``): a device's report on one rollout step (read by the
  fleet's rollouts, not stored by ingest).

No field can carry pixels or audio: there are no bytes fields, every string is short and
pattern-bound, every dict is small and maps short names to counts. Unknown fields are an
error (``extra="forbid"``), types are strict (``"5"`` is not a number), times are UTC-aware.

Use :func:`parse` on what arrives (topic + payload bytes -> message, or :class:`WireError`
with a one-line reason) and :func:`to_json` / :func:`from_json` to (de)serialize.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Annotated, Final, Literal, NewType, TypeVar

from edgetally.models.errors import WireError
from edgetally.models.topics import (
    ID_PATTERN,
    TOPIC_VERSION,
    DeviceId,
    SiteId,
    TopicKind,
    parse_topic,
)
from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    model_validator,
)

SCHEMA_VERSION: Final = 1
if f"v{SCHEMA_VERSION}" != TOPIC_VERSION:  # pragma: no cover - a guard for whoever bumps one
    raise RuntimeError("topics.TOPIC_VERSION and wire.SCHEMA_VERSION disagree")

MAX_PAYLOAD_BYTES: Final = 8 * 1024
MAX_EVENT_KINDS: Final = 32
MAX_COUNT: Final = 10_000_000
MAX_BUCKET_SECONDS: Final = 86_400
MAX_SEQ: Final = 2**63 - 1
MAX_FACINGS: Final = 64  # facings in one shelf message (a device splits larger shelves)
MIN_DBFS: Final = -200.0  # digital silence reads this (never -inf)
MAX_DBFS: Final = 20.0  # a full-scale square wave reads +3 dBFS; clipped input no more

SourceId = NewType("SourceId", str)
CounterId = NewType("CounterId", str)  # a counting line or an occupancy zone
CommandId = NewType("CommandId", str)
Seq = NewType("Seq", int)
# A device's outbox makes a random epoch when it is created; its sequence numbers count
# within the epoch, so a re-imaged device (a new outbox, seq from 0 again) is a new stream.
Epoch = NewType("Epoch", str)
EPOCH_PATTERN: Final = r"^[0-9a-f]{8,32}$"


def _to_utc(value: datetime) -> datetime:
    try:
        return value.astimezone(UTC)
    except (OverflowError, ValueError):  # year 1 at +14:00, year 9999 at -05:00
        raise ValueError("time is out of range") from None


@dataclass(frozen=True, slots=True)
class TimeWindow:
    """The times a received message may carry: not before ``earliest``, and not more than
    ``max_ahead_s`` ahead of the receiving clock (a device with a broken clock, or a hostile
    one, cannot file counts under year 9999 or 1970)."""

    earliest: datetime = datetime(2000, 1, 1, tzinfo=UTC)
    max_ahead_s: float = 86_400.0

    def check(self, message: WireModel, now: datetime | None = None) -> None:
        """Raise :class:`WireError` if one of the message's times is outside the window."""
        at = message.stamp()
        if at is None:
            return
        latest = (now or datetime.now(UTC)) + timedelta(seconds=self.max_ahead_s)
        if at < self.earliest:
            raise WireError(
                f"{message.time_field()} {at.isoformat()} is before {self.earliest.date()} "
                "(the receiving fleet's window)"
            )
        if at > latest:
            raise WireError(
                f"{message.time_field()} {at.isoformat()} is more than "
                f"{self.max_ahead_s:g} s ahead of the receiving clock"
            )


DEFAULT_WINDOW: Final = TimeWindow()


_Id = StringConstraints(pattern=ID_PATTERN, max_length=64)
SiteField = Annotated[SiteId, _Id]
DeviceField = Annotated[DeviceId, _Id]
SourceField = Annotated[SourceId, _Id]
CounterField = Annotated[CounterId, _Id]
CommandIdField = Annotated[CommandId, _Id]
EventName = Annotated[str, _Id]
# Model, backend and meter names: a little wider than ids (``yolox_nano@int8``, ``openvino/NPU``).
Name = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:@+/-]{0,63}$")]
# Free text (an error message): short, one line, printable.
ShortText = Annotated[str, StringConstraints(pattern=r"^[^\x00-\x1f\x7f]{0,200}$")]
ParamValue = Annotated[str, StringConstraints(pattern=r"^[^\x00-\x1f\x7f]{0,1024}$")]

UtcDatetime = Annotated[AwareDatetime, AfterValidator(_to_utc)]
EpochField = Annotated[Epoch, StringConstraints(pattern=EPOCH_PATTERN)]
Count = Annotated[int, Field(ge=0, le=MAX_COUNT)]
SeqField = Annotated[Seq, Field(ge=0, le=MAX_SEQ)]
BucketSeconds = Annotated[int, Field(ge=1, le=MAX_BUCKET_SECONDS)]
DurationS = Annotated[float, Field(ge=0.0, le=7 * 86_400.0)]
EventCounts = Annotated[dict[EventName, Count], Field(max_length=MAX_EVENT_KINDS)]
Dbfs = Annotated[float, Field(ge=MIN_DBFS, le=MAX_DBFS)]
# dB SPL is dBFS plus a calibration offset (the SPL that reads 0 dBFS, about 90 to 130).
Dbspl = Annotated[float, Field(ge=MIN_DBFS, le=300.0)]
Ratio = Annotated[float, Field(ge=0.0, le=1.0)]


class WireModel(BaseModel):
    """Base of every wire message and of its parts: frozen, strict, no unknown fields."""

    model_config = ConfigDict(
        extra="forbid",
        frozen=True,
        strict=True,
        allow_inf_nan=False,
        str_max_length=1024,
    )

    def time_field(self) -> str:
        """The name of the message's own time (``start`` of a bucket, ``at`` of an event)."""
        return "start" if "start" in type(self).model_fields else "at"

    def stamp(self) -> datetime | None:
        """The message's own time (see :meth:`time_field`), None for a part of a message."""
        value = getattr(self, self.time_field(), None)
        return value if isinstance(value, datetime) else None


class DwellStats(WireModel):
    """Visits that ended in the bucket: how many and how long (seconds)."""

    count: Annotated[int, Field(ge=1, le=MAX_COUNT)]
    median_s: DurationS
    p90_s: DurationS

    @model_validator(mode="after")
    def _ordered(self) -> DwellStats:
        if self.median_s > self.p90_s:
            raise ValueError("dwell median_s is larger than p90_s")
        return self


class Aggregate(WireModel):
    """One bucket of one line or zone: the only thing about people that leaves a device.

    ``seq`` increases by at least one with every message a device sends (any kind) within
    the ``epoch`` of its outbox; the fleet keeps one aggregate per (site, device, epoch,
    seq), so a redelivered message never counts twice and a re-imaged device (new epoch)
    is never taken for a redelivery. ``epoch`` is None only from devices that predate it.
    """

    v: Literal[1] = SCHEMA_VERSION
    kind: Literal["agg"] = "agg"
    site: SiteField
    device: DeviceField
    source: SourceField
    line: CounterField
    epoch: EpochField | None = None
    seq: SeqField
    start: UtcDatetime
    seconds: BucketSeconds
    in_count: Count = 0
    out_count: Count = 0
    occupancy_mean: Annotated[float, Field(ge=0.0, le=float(MAX_COUNT))] | None = None
    occupancy_peak: Count | None = None
    dwell: DwellStats | None = None
    shelf_events: EventCounts = Field(default_factory=dict)
    audio_events: EventCounts = Field(default_factory=dict)

    @model_validator(mode="after")
    def _consistent(self) -> Aggregate:
        if (
            self.occupancy_mean is not None
            and self.occupancy_peak is not None
            and self.occupancy_mean > self.occupancy_peak + 1e-9
        ):
            raise ValueError("occupancy_mean is larger than occupancy_peak")
        return self


class DeviceStatus(WireModel):
    """What a device says about itself; ``state="offline"`` is also its MQTT last will."""

    v: Literal[1] = SCHEMA_VERSION
    kind: Literal["status"] = "status"
    site: SiteField
    device: DeviceField
    at: UtcDatetime
    state: Literal["online", "offline"]
    model: Name | None = None
    backend: Name | None = None
    fps: Annotated[float, Field(ge=0.0, le=1000.0)] | None = None
    uptime_s: Annotated[float, Field(ge=0.0, le=10 * 365 * 86_400.0)] = 0.0
    errors: Count = 0
    last_error: ShortText | None = None


class PowerReading(WireModel):
    """Energy one meter saw over one bucket; ``measured=False`` when it is a model estimate."""

    v: Literal[1] = SCHEMA_VERSION
    kind: Literal["power"] = "power"
    site: SiteField
    device: DeviceField
    epoch: EpochField | None = None
    seq: SeqField
    source: Name  # the meter: rapl, ina219, pi-pmic, plug, estimate, ...
    start: UtcDatetime
    seconds: BucketSeconds
    wh: Annotated[float, Field(ge=0.0, le=1e6)]
    mean_w: Annotated[float, Field(ge=0.0, le=1e5)]
    measured: bool


class _SourceBucket(WireModel):
    """What the audio and shelf messages share: one bucket of one source of one device.

    ``seq`` comes from the device's one sequence, shared with its aggregates, so the fleet's
    (site, device, epoch, seq) identifies a message whatever its kind.
    """

    v: Literal[1] = SCHEMA_VERSION
    site: SiteField
    device: DeviceField
    source: SourceField
    epoch: EpochField | None = None
    seq: SeqField
    start: UtcDatetime
    seconds: BucketSeconds


class AudioLevels(_SourceBucket):
    """One bucket of one sound source: levels, speech share and event counts, never sound.

    ``duration_s`` is how much sound the bucket holds (shorter than ``seconds`` only for the
    last bucket of a file). Levels are AES17 dBFS (a full-scale sine reads 0), energy
    averages over the bucket; ``*_dbspl`` are set together, when the device is calibrated.
    ``speech_ratio`` is the share of the bucket with speech (None: no speech detector).
    """

    kind: Literal["audio"] = "audio"
    duration_s: Annotated[float, Field(gt=0.0, le=float(MAX_BUCKET_SECONDS))]
    leq_dbfs: Dbfs
    laeq_dbfs: Dbfs
    leq_dbspl: Dbspl | None = None
    laeq_dbspl: Dbspl | None = None
    speech_ratio: Ratio | None = None
    events: EventCounts = Field(default_factory=dict)

    @model_validator(mode="after")
    def _consistent(self) -> AudioLevels:
        if self.duration_s > self.seconds + 1e-6:
            raise ValueError("duration_s is longer than the bucket")
        if (self.leq_dbspl is None) != (self.laeq_dbspl is None):
            raise ValueError("leq_dbspl and laeq_dbspl go together")
        return self


class FacingCounts(WireModel):
    """Shelf events of one facing over the bucket, and whether it was empty at its end."""

    region: CounterField
    facing: CounterField
    facing_empty: Count = 0
    restocked: Count = 0
    product_taken: Count = 0
    empty_at_end: bool


class ShelfState(_SourceBucket):
    """One bucket of the shelves one camera watches: counts per facing (no pixels).

    A camera with more facings than fit in one message sends several per bucket, each with
    its own ``seq``.
    """

    kind: Literal["shelf"] = "shelf"
    facings: Annotated[tuple[FacingCounts, ...], Field(min_length=1, max_length=MAX_FACINGS)]

    @model_validator(mode="after")
    def _unique(self) -> ShelfState:
        keys = {(f.region, f.facing) for f in self.facings}
        if len(keys) != len(self.facings):
            raise ValueError("a facing (region, facing) appears twice")
        return self


SHA256_PATTERN: Final = r"^[0-9a-f]{64}$"
COMMAND_VERSION: Final = 2  # v1 commands carried no signature; a device refuses them
COMMAND_ID_PATTERN: Final = r"^[0-9a-f]{32}$"  # 128 random bits, never reused
UPDATE_ACTION: Final = "update"  # Command.action: fetch, verify, install, check, switch
ROLLBACK_ACTION: Final = "rollback"  # Command.action: go back to the previous slot
CommandAction = Literal["update", "rollback"]
BundleVersion = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_.+-]{1,64}$")]
Sha256 = Annotated[str, StringConstraints(pattern=SHA256_PATTERN)]


class Command(WireModel):
    """Fleet to device: one step of a rollout, signed with the fleet's bundle key.

    Says whom it is for (``site``/``device``), what to do (``action`` with the rollout and
    its bundle), when the fleet issued it (``at``) and a unique ``command_id``. ``sig`` is
    an Ed25519 signature over every other field (:mod:`edgetally.models.commands` makes and
    checks it): a broker password lets one publish on a device's ``cmd`` topic, never sign.

    - ``update``: fetch the bundle at ``url`` (``size`` bytes), verify it, check it, switch
      to it; ``rollback`` asks to take an older version the bundle is signed to roll back.
    - ``rollback``: go back to the previous model, if ``bundle_sha256`` is the one in use.
    """

    v: Literal[2] = COMMAND_VERSION
    kind: Literal["cmd"] = "cmd"
    site: SiteField
    device: DeviceField
    command_id: Annotated[CommandId, StringConstraints(pattern=COMMAND_ID_PATTERN)]
    at: UtcDatetime
    action: CommandAction
    rollout: CommandIdField
    bundle_sha256: Sha256
    version: BundleVersion
    url: ParamValue | None = None
    size: Annotated[int, Field(ge=1, le=2**53)] | None = None
    rollback: bool = False
    key_id: Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{16}$")]
    sig: Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{128}$")]

    @model_validator(mode="after")
    def _fields_of_action(self) -> Command:
        if self.action == UPDATE_ACTION and (self.url is None or self.size is None):
            raise ValueError("an update command needs url and size")
        if self.action == ROLLBACK_ACTION and (
            self.url is not None or self.size is not None or self.rollback
        ):
            raise ValueError("a rollback command takes no url, size or rollback flag")
        return self


UpdateOutcome = Literal["healthy", "failed", "rolled_back"]


class UpdateReport(WireModel):
    """What a device says about one rollout step: the new model runs healthily, it failed
    (and the old model is kept) with a reason, or it rolled back on the fleet's command."""

    v: Literal[1] = SCHEMA_VERSION
    kind: Literal["update"] = "update"
    site: SiteField
    device: DeviceField
    rollout_id: CommandIdField
    bundle_sha256: Sha256
    at: UtcDatetime
    outcome: UpdateOutcome
    reason: Annotated[str, StringConstraints(pattern=r"^[^\x00-\x1f\x7f]{0,300}$")] | None = None
    active_version: Annotated[str, StringConstraints(max_length=64)] | None = None


Message = (
    Aggregate | DeviceStatus | PowerReading | AudioLevels | ShelfState | Command | UpdateReport
)
M = TypeVar("M", bound=WireModel)

MESSAGE_TYPES: Final[dict[TopicKind, type[Message]]] = {
    "agg": Aggregate,
    "status": DeviceStatus,
    "power": PowerReading,
    "audio": AudioLevels,
    "shelf": ShelfState,
    "cmd": Command,
    "update": UpdateReport,
}


def to_json(message: WireModel) -> bytes:
    """The payload bytes of a message (compact JSON, UTF-8)."""
    return message.model_dump_json().encode()


def from_json(cls: type[M], data: bytes | str) -> M:
    """Parse and validate one message of a known type, or raise :class:`WireError`."""
    if len(data) > MAX_PAYLOAD_BYTES:
        raise WireError(f"payload too large ({len(data)} bytes, at most {MAX_PAYLOAD_BYTES})")
    try:
        return cls.model_validate_json(data)
    except ValidationError as exc:
        raise WireError(_reason(cls.__name__, exc)) from None


def parse(
    topic: str,
    payload: bytes,
    *,
    window: TimeWindow | None = DEFAULT_WINDOW,
    now: datetime | None = None,
) -> Message:
    """Topic + payload as received -> a validated message, or :class:`WireError` saying why.

    The topic decides which message is expected, and its site and device must match the
    payload's: a device cannot speak for another one through its own topic. The message's
    time must lie in ``window`` (None: any time the schema allows) as seen at ``now``.
    """
    where = parse_topic(topic)
    message = from_json(MESSAGE_TYPES[where.kind], payload)
    if message.site != where.site or message.device != where.device:
        raise WireError(
            f"payload is for {message.site}/{message.device} but came on the topic of "
            f"{where.site}/{where.device}"
        )
    if window is not None:
        window.check(message, now)
    return message


def _reason(name: str, exc: ValidationError) -> str:
    """One short line from a pydantic error; never echoes the (possibly huge) input."""
    errors = exc.errors(include_url=False, include_input=False, include_context=False)
    if not errors:  # pragma: no cover - pydantic always reports at least one
        return f"invalid {name} payload"
    first = errors[0]
    loc = ".".join(str(part) for part in first["loc"])[:80] or "payload"
    if first["type"] == "literal_error" and first["loc"] == ("v",):
        msg = f"unsupported schema version (this fleet speaks v{SCHEMA_VERSION})"
    else:
        msg = first["msg"][:160]
    more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    return f"invalid {name} payload: {loc}: {msg}{more}"
