"""MQTT ingest: subscribe, validate every message, store in batches, dead-letter the rest.

The MQTT callback only puts ``(topic, payload, received_at)`` on a bounded queue; when the
queue is full it waits (the broker holds QoS 1 messages meanwhile), so nothing is dropped.
One ingest thread takes up to ``batch_max`` messages at a time, validates them with
:func:`edgetally.models.wire.parse`, and writes them in one transaction. A failed write is
retried; only when the fleet stops while the database is still failing are the messages of
that batch given up, and counted as ``lost``.

Audio and shelf messages are validated the same way and written right after the rest of
their batch (:func:`edgetally.fleet.store.sensors.write_sensors`, its own transaction), with the
same retries; like everything else they are kept once per (site, device, epoch, seq).

MQTT v5, and a message is acknowledged (PUBACK) only once its batch is committed: a fleet
that dies with messages received but not stored gets them again from the broker on its
return (its session, the same client id, persists; stored again they are duplicates).

Scaling out: with ``share_group`` the subscription is an MQTT v5 shared subscription
(``$share/<group>/edgetally/#``) and each message reaches one of the group's workers. Such a
worker's session expires ``session_expiry_s`` after it vanishes: until then the broker keeps
routing its share to it and holds it (Mosquitto 2 does not hand a member's unacknowledged
or held messages to the others), on its return within that time it gets them all; after
it, they are gone and the others get everything. So the expiry is how long a restart may
take without loss, and how long a worker that never comes back withholds its share: short
(a minute), with a supervisor that restarts a dead worker at once (``fleet serve
--workers N``). Statuses are not taken by shared workers (see ``status_only``).

No message can stop ingest: a time outside the fleet's window (:class:`TimeWindow`) is a
dead letter like any invalid payload, anything unexpected while validating one message
dead-letters that message with the reason, and a batch whose write fails unexpectedly is
written again message by message, so only the message at fault is dead-lettered. Such
events count as ``loop_errors``; :attr:`IngestCounters.running` says whether the ingest
thread is alive (the fleet's ``/api/v1/health`` reports it).
"""

from __future__ import annotations

import hashlib
import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, fields
from datetime import UTC, datetime
from typing import Any, TypeVar

import paho.mqtt.client as mqtt
from edgetally.fleet.addresses import BrokerAddress
from edgetally.fleet.errors import FleetError
from edgetally.fleet.store.base import Store, StoreError
from edgetally.fleet.store.records import DeadLetter, IngestBatch, IngestResult, Seen
from edgetally.fleet.store.sensors import SensorBatch, SensorResult, write_sensors
from edgetally.models.errors import WireError
from edgetally.models.topics import INGESTED_KINDS, TOPIC_KINDS, TOPIC_PREFIX
from edgetally.models.wire import (
    DEFAULT_WINDOW,
    Aggregate,
    AudioLevels,
    Command,
    DeviceStatus,
    PowerReading,
    ShelfState,
    TimeWindow,
    UpdateReport,
    parse,
)
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

log = logging.getLogger(__name__)
_R = TypeVar("_R")

HEAD_CHARS = 200
# Kinds others publish under edgetally/v1 that are not for ingest: commands to devices
# (the fleet's own) and rollout update reports.
DEFAULT_IGNORED_KINDS: frozenset[str] = frozenset(TOPIC_KINDS) - frozenset(INGESTED_KINDS)


@dataclass(frozen=True, slots=True)
class IngestConfig:
    """How ingest connects and batches."""

    broker: BrokerAddress
    client_id: str = "edgetally-fleet"
    subscription: str = "edgetally/#"
    ignored_kinds: frozenset[str] = DEFAULT_IGNORED_KINDS
    ca_file: str | None = None
    window: TimeWindow | None = DEFAULT_WINDOW  # times a message may carry (None: any)
    batch_max: int = 5_000
    batch_wait_s: float = 0.05
    queue_max: int = 100_000
    connect_timeout_s: float = 10.0
    share_group: str | None = None  # an MQTT v5 shared subscription of this group
    session_expiry_s: int | None = None  # None: the session outlives any absence
    status_only: bool = False  # only device statuses (the one unshared status subscriber)
    mqtt_v5: bool = True  # False: MQTT 3.1.1 from the start (a broker without v5; no sharing)

    @property
    def topic_filter(self) -> str:
        """What the client subscribes to."""
        if self.status_only:
            return f"{TOPIC_PREFIX}/+/+/status"
        if self.share_group:
            return f"$share/{self.share_group}/{self.subscription}"
        return self.subscription

    @property
    def skipped_kinds(self) -> frozenset[str]:
        """Kinds this client receives and leaves: statuses on a shared subscription (their
        order matters, and only an unshared subscriber keeps it)."""
        if self.share_group:
            return self.ignored_kinds | {"status"}
        return self.ignored_kinds


NEVER_EXPIRES = 0xFFFF_FFFF  # MQTT v5: a session expiry interval of this many s never ends
Item = tuple[str, bytes, datetime, int]  # topic, payload, received at, MQTT message id


@dataclass(frozen=True, slots=True)
class IngestCounters:
    """A snapshot of what ingest has done since it started."""

    received: int = 0
    processed: int = 0
    aggregates_new: int = 0
    aggregates_duplicate: int = 0
    power_new: int = 0
    power_duplicate: int = 0
    audio_new: int = 0
    audio_duplicate: int = 0
    shelf_new: int = 0
    shelf_duplicate: int = 0
    statuses: int = 0
    dead_letters: int = 0
    conflicts: int = 0
    ignored: int = 0
    batches: int = 0
    store_errors: int = 0
    loop_errors: int = 0
    lost: int = 0
    queue_depth: int = 0
    connected: bool = False
    running: bool = False

    def as_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


def _printable(text: str) -> str:
    return "".join(ch if ch.isprintable() else "?" for ch in text)


def dead_letter(topic: str, payload: bytes, reason: str, at: datetime) -> DeadLetter:
    head = payload[: HEAD_CHARS * 4].decode("utf-8", "replace")[:HEAD_CHARS]
    return DeadLetter(
        received_at=at,
        topic=_printable(topic[:256]),
        reason=_printable(reason[:500]),
        payload_size=len(payload),
        payload_head=_printable(head),
        payload_sha256=hashlib.sha256(payload).hexdigest(),
    )


def _unexpected(what: str, exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"unexpected error {what}: {type(exc).__name__}: {text[0] if text else ''}"[:400]


class Ingestor:
    """Subscribes to the broker and feeds the store until :meth:`stop`."""

    def __init__(self, store: Store, config: IngestConfig) -> None:
        self._store = store
        self._config = config
        self._queue: queue.Queue[Item] = queue.Queue(config.queue_max)
        self._lock = threading.Lock()
        self._counts: dict[str, int] = {
            f.name: 0
            for f in fields(IngestCounters)
            if f.name not in ("queue_depth", "connected", "running")
        }
        self._connected = threading.Event()
        self._connect_error: str | None = None
        self._stopping = threading.Event()
        self._worker: threading.Thread | None = None
        self._gone = threading.Event()  # the broker closed the connection before CONNACK
        if not config.mqtt_v5 and config.share_group:
            raise FleetError("a shared subscription needs MQTT v5: not with mqtt_v5 off")
        self._v5 = config.mqtt_v5
        self._client = self._make_client(v5=self._v5)

    def _make_client(self, *, v5: bool) -> mqtt.Client:
        config = self._config
        client = mqtt.Client(
            callback_api_version=CallbackAPIVersion.VERSION2,
            client_id=config.client_id,
            protocol=mqtt.MQTTv5 if v5 else mqtt.MQTTv311,
            # MQTT 3.1.1: a persistent session (v5 sets its expiry on CONNECT instead).
            clean_session=None if v5 else False,
            manual_ack=True,  # acknowledged once stored (:meth:`_ack`)
        )
        if config.broker.username:
            client.username_pw_set(config.broker.username, config.broker.password)
        if config.broker.tls:
            client.tls_set(ca_certs=config.ca_file)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        client.reconnect_delay_set(min_delay=1, max_delay=10)
        return client

    # -- MQTT callbacks (paho's network thread): keep them light ---------------------------

    def _on_connect(self, client: mqtt.Client, _u: Any, _f: Any, reason: Any, _p: Any) -> None:
        if reason.is_failure:
            self._connect_error = str(reason)
            log.warning("broker refused the connection: %s", reason)
            return
        client.subscribe(self._config.topic_filter, qos=1)
        self._connect_error = None
        self._connected.set()
        log.info(
            "connected to %s, subscribed to %s", self._config.broker, self._config.topic_filter
        )

    def _on_disconnect(self, _c: mqtt.Client, _u: Any, _f: Any, reason: Any, _p: Any) -> None:
        if not self._connected.is_set():
            self._gone.set()
        self._connected.clear()
        if not self._stopping.is_set():
            log.warning("disconnected from the broker (%s); reconnecting", reason)

    def _on_message(self, _c: mqtt.Client, _u: Any, msg: mqtt.MQTTMessage) -> None:
        try:
            topic = msg.topic
        except UnicodeDecodeError:
            topic = bytes(msg._topic).decode("utf-8", "replace")
        except Exception:  # never let one message end paho's network thread
            topic = "?"
        item = (topic, bytes(msg.payload or b""), datetime.now(UTC), int(msg.mid))
        with self._lock:
            self._counts["received"] += 1
        while True:
            try:
                self._queue.put(item, timeout=0.5)
                return
            except queue.Full:
                if self._stopping.is_set() and not self._worker_alive():
                    with self._lock:
                        self._counts["lost"] += 1
                    return

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> None:
        """Connect, subscribe and start the ingest thread; a FleetError if the broker fails."""
        b = self._config.broker
        self._worker = threading.Thread(target=self._run, name="fleet-ingest", daemon=True)
        self._worker.start()
        try:
            self._connect()
        except (OSError, ValueError) as exc:
            self._stop_worker()
            raise FleetError(f"cannot reach the MQTT broker at {b}: {exc}") from None
        if (
            not self._wait_connected()
            and self._gone.is_set()
            and self._connect_error is None  # closed, not refused (a login refused stays so)
            and self._config.share_group is None
            and self._v5
        ):
            # A broker that speaks only MQTT 3.1.1 (the demo's embedded amqtt) drops a v5
            # CONNECT: one client, unshared, works the same on 3.1.1 (a persistent session,
            # PUBACKs once stored); shared subscriptions need v5.
            log.info("the broker at %s closed an MQTT v5 connection; using MQTT 3.1.1", b)
            self._client.loop_stop()
            self._v5 = False
            self._gone.clear()
            self._client = self._make_client(v5=False)
            try:
                self._connect()
            except (OSError, ValueError) as exc:
                self._stop_worker()
                raise FleetError(f"cannot reach the MQTT broker at {b}: {exc}") from None
            self._wait_connected()
        if not self._connected.is_set():
            reason = self._connect_error or "no answer"
            if self._connect_error is not None and b.username:
                # A closed broker knows each fleet connection as a user of its own.
                reason += (
                    f" (the login {b.username}: check the password, and that the broker has "
                    "this account: fleet broker-config makes one per fleet connection)"
                )
            elif self._gone.is_set() and self._config.share_group is not None:
                reason += " (ingest workers need an MQTT v5 broker: shared subscriptions)"
            self.stop()
            raise FleetError(f"the MQTT broker at {b} did not accept the fleet: {reason}")

    def _connect(self) -> None:
        b = self._config.broker
        if self._v5:
            props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]  # paho leaves it untyped
            expiry = self._config.session_expiry_s
            props.SessionExpiryInterval = NEVER_EXPIRES if expiry is None else expiry
            # Messages in flight to us before our PUBACKs (sent once a batch is stored).
            props.ReceiveMaximum = min(65_535, max(100, 2 * self._config.batch_max))
            self._client.connect(b.host, b.port, keepalive=30, clean_start=False, properties=props)
        else:
            self._client.connect(b.host, b.port, keepalive=30)
        self._client.loop_start()

    def _wait_connected(self) -> bool:
        """Until connected, refused, closed by the broker, or the connect timeout."""
        deadline = time.monotonic() + self._config.connect_timeout_s
        while time.monotonic() < deadline:
            if self._connected.wait(0.1):
                return True
            if self._gone.is_set() or self._connect_error is not None:
                return False
        return self._connected.is_set()

    def stop(self) -> None:
        """Disconnect, then store what is still queued."""
        self._stopping.set()
        try:
            self._client.disconnect()
        finally:
            self._client.loop_stop()
        self._stop_worker()

    def _stop_worker(self) -> None:
        self._stopping.set()
        if self._worker is not None:
            self._worker.join()

    def _worker_alive(self) -> bool:
        return self._worker is not None and self._worker.is_alive()

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    @property
    def running(self) -> bool:
        """Whether the ingest thread is alive (it ends only when the fleet stops)."""
        return self._worker_alive() and not self._stopping.is_set()

    def counters(self) -> IngestCounters:
        with self._lock:
            counts = dict(self._counts)
        return IngestCounters(
            **counts,
            queue_depth=self._queue.qsize(),
            connected=self.connected,
            running=self.running,
        )

    def wait_until(self, predicate: Callable[[IngestCounters], bool], timeout: float) -> bool:
        """Block until ``predicate(counters)`` holds (True) or ``timeout`` passes (False)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate(self.counters()):
                return True
            time.sleep(0.01)
        return predicate(self.counters())

    # -- the ingest thread -------------------------------------------------------------------

    def _ack(self, items: list[Item]) -> None:
        """Acknowledge stored messages, in the order they came (MQTT wants that)."""
        for item in items:
            if item[3]:
                try:
                    self._client.ack(item[3], 1)
                except (OSError, ValueError, RuntimeError) as exc:  # gone: redelivered later
                    log.debug("cannot acknowledge message %d: %s", item[3], exc)

    def _take(self) -> list[Item]:
        try:
            items = [self._queue.get(timeout=0.1)]
        except queue.Empty:
            return []
        deadline = time.monotonic() + self._config.batch_wait_s
        while len(items) < self._config.batch_max:
            try:
                items.append(self._queue.get_nowait())
            except queue.Empty:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                try:
                    items.append(self._queue.get(timeout=remaining))
                except queue.Empty:
                    break
        return items

    def _run(self) -> None:
        while True:
            items = self._take()
            if not items:
                if self._stopping.is_set() and self._queue.empty():
                    return
                continue
            try:
                if self._handle(items):
                    self._ack(items)
            except Exception as exc:  # a bug must not end ingest: one message at a time
                log.exception("ingest batch of %d messages failed; retrying one by one", len(items))
                self._count("loop_errors")
                for item in items:
                    if self._handle_one(item, exc):
                        self._ack([item])

    def _handle_one(self, item: Item, first: Exception) -> bool:
        """One message of a batch that failed unexpectedly: stored if it can be, else a
        dead letter with the reason (else counted lost); True when it was stored."""
        try:
            return self._handle([item])
        except Exception as exc:
            reason = _unexpected("storing this message", exc)
        topic, payload, at, _mid = item
        try:
            batch = IngestBatch(dead=(dead_letter(topic, payload, reason, at),), received_at=at)
            result = self._write(batch)
        except Exception:
            log.exception("cannot dead-letter a message on %s (first error: %s)", topic, first)
            result = None
        with self._lock:
            self._counts["processed"] += 1
            self._counts["lost" if result is None else "dead_letters"] += 1
        return result is not None

    def _count(self, name: str, n: int = 1) -> None:
        with self._lock:
            self._counts[name] += n

    def _handle(self, items: list[Item]) -> bool:
        """Validate and store ``items``; True when all of it was stored (to acknowledge)."""
        batch, sensors, ignored = self.build_batch(items)
        result = self._write(batch)
        sensed = self._write_sensors(sensors)
        with self._lock:
            c = self._counts
            c["processed"] += len(items)
            c["ignored"] += ignored
            if sensed is None:
                c["lost"] += len(sensors)
            else:
                for name in (
                    "audio_new",
                    "audio_duplicate",
                    "shelf_new",
                    "shelf_duplicate",
                    "conflicts",
                ):
                    c[name] += getattr(sensed, name)
            if result is None:
                c["lost"] += len(batch)
                return False
            c["batches"] += 1
            c["aggregates_new"] += result.aggregates_new
            c["aggregates_duplicate"] += result.aggregates_duplicate
            c["power_new"] += result.power_new
            c["power_duplicate"] += result.power_duplicate
            c["statuses"] += result.statuses
            c["dead_letters"] += result.dead_letters
            c["conflicts"] += result.conflicts
        return sensed is not None

    def build_batch(
        self, items: list[Item] | list[tuple[str, bytes, datetime]]
    ) -> tuple[IngestBatch, SensorBatch, int]:
        """Validate raw messages into a batch (and the audio and shelf messages apart);
        returns both and how many were ignored."""
        aggs: list[Aggregate] = []
        statuses: list[DeviceStatus] = []
        status_received: list[datetime] = []
        power: list[PowerReading] = []
        audio: list[AudioLevels] = []
        shelf: list[ShelfState] = []
        seen: list[Seen] = []
        dead: list[DeadLetter] = []
        ignored = 0
        prefix = TOPIC_PREFIX + "/"
        skipped = self._config.skipped_kinds
        for topic, payload, at, *_mid in items:
            if topic.startswith(prefix) and topic.rsplit("/", 1)[-1] in skipped:
                ignored += 1
                continue
            try:
                message = parse(topic, payload, window=self._config.window, now=at)
            except WireError as exc:
                dead.append(dead_letter(topic, payload, str(exc), at))
                continue
            except Exception as exc:  # a validator's bug: this message only
                dead.append(dead_letter(topic, payload, _unexpected("validating", exc), at))
                self._count("loop_errors")
                continue
            if isinstance(message, Command | UpdateReport):
                ignored += 1
                continue
            if isinstance(message, Aggregate):
                aggs.append(message)
            elif isinstance(message, DeviceStatus):
                statuses.append(message)
                status_received.append(at)
            elif isinstance(message, AudioLevels):
                audio.append(message)
            elif isinstance(message, ShelfState):
                shelf.append(message)
            else:
                power.append(message)
            seen.append(Seen(message.site, message.device, at))
        batch = IngestBatch(
            aggregates=tuple(aggs),
            statuses=tuple(statuses),
            power=tuple(power),
            seen=tuple(seen),
            dead=tuple(dead),
            received_at=datetime.now(UTC),
            status_received=tuple(status_received),
        )
        sensors = SensorBatch(tuple(audio), tuple(shelf), received_at=batch.received_at)
        return batch, sensors, ignored

    def _write(self, batch: IngestBatch) -> IngestResult | None:
        return self._retrying(lambda: self._store.write(batch), len(batch))

    def _write_sensors(self, sensors: SensorBatch) -> SensorResult | None:
        if not len(sensors):
            return SensorResult()
        return self._retrying(lambda: write_sensors(self._store, sensors), len(sensors))

    def _retrying(self, write: Callable[[], _R], size: int) -> _R | None:
        """``write()``, retried with backoff on a StoreError; None when given up at stop."""
        delay = 0.1
        attempts = 0
        while True:
            try:
                return write()
            except StoreError as exc:
                attempts += 1
                with self._lock:
                    self._counts["store_errors"] += 1
                if self._stopping.is_set() and attempts >= 3:
                    log.error("giving up %d messages at shutdown: %s", size, exc)
                    return None
                log.warning("store write failed (attempt %d), retrying: %s", attempts, exc)
                time.sleep(delay)
                delay = min(delay * 2, 5.0)
