"""Publish the outbox to the broker over MQTT (paho-mqtt 2.x), QoS 1, in order.

A row leaves the outbox only when the broker's PUBACK for its message says it took it: paho
reports it through ``on_publish(mid, reason)`` and the row whose publish returned that
``mid`` is deleted. The publisher speaks MQTT v5, whose PUBACK carries a reason code: 0x80
and above (not authorised 0x87, what Mosquitto's ACL answers; quota exceeded 0x97; payload
format invalid 0x99; ...) means the broker did not take the message, and the row stays in
the outbox. Each cause (topic and reason) is logged once, in one line, and tried again with
one row after a backoff (``retry_min`` doubling up to ``retry_max`` seconds) and on every
reconnect; once a row of it is taken the rest follow (``refusals.py``).
:attr:`Publisher.refused` counts the rows kept so. A broker
that speaks only MQTT 3.1.1 gets 3.1.1 (see ``broker.py``); its PUBACK has no reason, so a
message it drops (an ACL denial) is acknowledged like a delivered one: said once, in a
warning.

Messages still unacknowledged when the connection drops are re-sent by paho after it
reconnects (with exponential backoff); when the process itself dies they are still in the
outbox and are sent again by the next run. A message may therefore reach the broker twice,
never zero times: the fleet keeps one message per (device, seq).

The device's status is published retained on ``.../status`` when the connection is made,
with an ``offline`` last will that the broker publishes when the device vanishes.

Threads: paho's network thread only records acknowledgements (a deque and an event); one
pump thread of ours publishes rows and deletes acknowledged ones. Never take a lock of ours
inside a paho callback: paho calls ``on_publish`` holding its own message mutex, which
``publish()`` needs too.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, Literal

import paho.mqtt.client as mqtt
from edgetally.models.topics import topic_for
from edgetally.models.wire import DeviceStatus, to_json
from edgetally.runtime.errors import EdgeRuntimeError
from edgetally.runtime.uplink.broker import (
    REFUSED,
    BrokerAddress,
    BrokerLogin,
    broker_login,
    describe_publish_refusal,
    make_client,
    parse_broker_url,
    reason_name,
)
from edgetally.runtime.uplink.outbox import Outbox, OutboxRow
from edgetally.runtime.uplink.refusals import Refusals

log = logging.getLogger(__name__)

DEFAULT_WINDOW = 64  # messages in flight (published, not yet acknowledged)
RETRY_MIN_S = 1.0  # a refused cause is tried again after this, doubling ...
RETRY_MAX_S = 60.0  # ... up to this
_only_311_told: set[str] = set()  # brokers already said to speak only 3.1.1 (once a process)
__all__ = ["BrokerAddress", "Publisher", "PublisherError", "parse_broker_url"]

StatusFactory = Callable[[Literal["online", "offline"]], DeviceStatus]


class PublisherError(EdgeRuntimeError):
    """The publisher cannot be set up or a message cannot be handed to the broker."""


def default_status(site: str, device: str) -> StatusFactory:
    started = time.monotonic()

    def make(state: Literal["online", "offline"]) -> DeviceStatus:
        return DeviceStatus(
            site=site,  # type: ignore[arg-type]  # pydantic validates it
            device=device,  # type: ignore[arg-type]  # pydantic validates it
            at=datetime.now(UTC),
            state=state,
            uptime_s=round(time.monotonic() - started, 3),
        )

    return make


class Publisher:
    """Drains an :class:`Outbox` to an MQTT broker; start with :meth:`start`."""

    def __init__(
        self,
        outbox: Outbox,
        broker: str | BrokerLogin,
        *,
        site: str,
        device: str,
        status: StatusFactory | None = None,
        window: int = DEFAULT_WINDOW,
        keepalive: int = 15,
        client_id: str | None = None,
        max_backoff: int = 8,
        retry_min: float = RETRY_MIN_S,
        retry_max: float = RETRY_MAX_S,
    ) -> None:
        """``broker``: a URL (a password in its userinfo logs in as ``site/device``) or a
        :class:`~edgetally.runtime.uplink.broker.BrokerLogin` with the password and the CA.
        ``retry_min``/``retry_max``: the backoff for rows the broker refused."""
        self.outbox = outbox
        if isinstance(broker, str):
            broker = broker_login(broker, site=site, device=device)
        self.login = broker
        self.address = broker.address
        self.site, self.device = site, device
        self.status_topic = topic_for(site, device, "status")
        self._status = status or default_status(site, device)
        self._window = max(1, window)
        self._room = self._window  # the window, or less when the broker takes fewer
        self._keepalive = keepalive
        self._client = make_client(
            broker,
            client_id or f"edgetally-{site}-{device}",
            protocol=mqtt.MQTTv5,  # a clean start; the session ends with the connection
        )
        self._told: str | None = None  # the last problem logged (each one once)
        self._client.max_inflight_messages_set(self._window)
        self._client.reconnect_delay_set(min_delay=1, max_delay=max_backoff)
        self._client.will_set(
            self.status_topic, to_json(self._status("offline")), qos=1, retain=True
        )
        self._client.on_connect = self._on_connect
        self._client.on_disconnect = self._on_disconnect
        self._client.on_publish = self._on_publish
        self._client.on_connect_fail = self._on_connect_fail

        self._wake = threading.Event()
        self._stop = threading.Event()
        self._connected = threading.Event()
        # (mid, reason code, reason name) of each PUBACK, filled by paho's thread
        self._acks: deque[tuple[int, int, str]] = deque()
        self._inflight: dict[int, tuple[int, str]] = {}  # mid -> (row id, topic); pump only
        self._last_sent_id = 0  # highest row id handed to paho (pump thread only)
        # Rows the broker refused, kept in the outbox (changed by the pump thread only).
        self._refused = Refusals(retry_min, retry_max)
        self._round_from: int | None = None  # sending an opened cause's rows: the last id
        self._reconnected = False  # set by paho's thread: probe every cause at once
        self._status_told: set[int] = set()  # reasons a status message was refused for
        self._pump: threading.Thread | None = None
        self._error: BaseException | None = None
        self.acked = 0
        self.refusals = 0  # PUBACKs that refused a row (a row refused twice counts twice)
        self.connects = 0
        self.disconnects = 0

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> None:
        """Connect in the background (retrying with backoff) and start draining."""
        try:
            self._client.connect_async(
                self.address.host, self.address.port, keepalive=self._keepalive
            )
        except (OSError, ValueError) as exc:
            raise PublisherError(f"cannot connect to {self.address}: {exc}") from None
        self._client.loop_start()
        self._pump = threading.Thread(target=self._pump_loop, name="outbox-pump", daemon=True)
        self._pump.start()

    def wake(self) -> None:
        """Something was written to the outbox: publish it soon."""
        self._wake.set()

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    @property
    def problem(self) -> str | None:
        """Why the last connection attempt failed, in one line (None once connected)."""
        return self._client.problem

    @property
    def refused(self) -> int:
        """Rows the broker refused (PUBACK reason >= 0x80), kept in the outbox and not yet
        delivered by a later attempt."""
        return len(self._refused)

    @property
    def refused_why(self) -> str | None:
        """What the broker refused, in one line (None when nothing is refused now)."""
        causes = self._refused.summary()
        if not causes:
            return None
        parts = []
        for topic, code, name, n in causes:
            hint = describe_publish_refusal(topic, code, name, self.login)
            parts.append(f"{n} on {topic} ({name}{'; ' + hint if hint else ''})")
        total = sum(n for *_, n in causes)
        return f"the broker {self.login} refused {total}: {', '.join(parts)}"

    @property
    def fatal(self) -> bool:
        """The broker refused the login or TLS cannot succeed: retrying will not help."""
        return self._client.fatal and not self.connected

    def publish_status(self) -> None:
        """Publish the (changed) status again; when offline it goes out on the next connect."""
        if self.connected:
            self._client.publish(
                self.status_topic, to_json(self._status("online")), qos=1, retain=True
            )

    def drain(self, timeout: float) -> int:
        """Wait until the outbox is empty or ``timeout`` seconds passed; returns what remains.
        Returns at once when the broker refused the login or TLS failed (:attr:`fatal`), or
        refused every row that remains (:attr:`refused`; they are sent again on the next
        connection, or later while the publisher runs)."""
        deadline = time.monotonic() + timeout
        while True:
            self._raise_pump_error()
            remaining = self.outbox.count()
            if (
                remaining == 0
                or time.monotonic() >= deadline
                or self.fatal
                or remaining <= self.refused
            ):
                return remaining
            self._wake.set()
            time.sleep(0.05)

    def stop(self, *, graceful: bool = True) -> None:
        """Stop publishing; when connected and ``graceful``, say ``offline`` first."""
        self._stop.set()
        self._wake.set()
        if self._pump is not None:
            self._pump.join(timeout=10)
        if graceful and self.connected:
            try:
                info = self._client.publish(
                    self.status_topic, to_json(self._status("offline")), qos=1, retain=True
                )
                info.wait_for_publish(timeout=2.0)
            except (RuntimeError, ValueError, OSError) as exc:
                log.info("offline status not sent: %s", exc)
        self._client.disconnect()
        self._client.loop_stop()

    # ------------------------------------------------------------------ paho callbacks

    def _on_connect(
        self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any, props: Any
    ) -> None:
        if not self._client.note_connack(reason):
            self._tell()
            return
        self._told = None
        self.connects += 1
        log.info("connected to %s", self.address)
        if self._client.only_311 and str(self.address) not in _only_311_told:
            _only_311_told.add(str(self.address))
            log.warning(
                "the broker %s speaks only MQTT 3.1.1: publishing over 3.1.1, where a message "
                "the broker drops (its ACL refuses the topic) is acknowledged all the same and "
                "leaves the outbox",
                self.address,
            )
        # v5: how many unacknowledged messages the broker takes (Mosquitto: 20); paho cannot
        # change its own limit once connected, so the pump keeps to it, with one left for
        # the status message.
        receive_max = getattr(props, "ReceiveMaximum", None)
        limit = receive_max - 1 if isinstance(receive_max, int) and receive_max > 1 else None
        self._room = min(self._window, limit) if limit else self._window
        self._reconnected = True  # a new connection may be let through: probe at once
        client.publish(self.status_topic, to_json(self._status("online")), qos=1, retain=True)
        self._connected.set()
        self._wake.set()

    def _on_disconnect(
        self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any, props: Any
    ) -> None:
        self._client.note_disconnect()
        if self._connected.is_set() and not self._stop.is_set():
            self.disconnects += 1
            log.warning("lost the broker %s (%s); reconnecting with backoff", self.address, reason)
        self._connected.clear()

    def _on_connect_fail(self, client: mqtt.Client, userdata: Any) -> None:
        self._tell()

    def _tell(self) -> None:
        """Log the connection problem once (it repeats on every retry)."""
        problem = self._client.problem or f"the broker {self.address} is unreachable"
        if problem != self._told:
            self._told = problem
            level = logging.WARNING if self._client.fatal else logging.INFO
            log.log(level, "%s; counting goes on into the outbox, retrying", problem)

    def _on_publish(
        self, client: mqtt.Client, userdata: Any, mid: int, reason: Any, props: Any
    ) -> None:
        code = int(getattr(reason, "value", 0) or 0)
        self._acks.append((mid, code, reason_name(reason) if code >= REFUSED else ""))
        self._wake.set()

    # ------------------------------------------------------------------ pump thread

    def _pump_loop(self) -> None:
        try:
            while not self._stop.is_set():
                self._wake.wait(timeout=0.5)
                self._wake.clear()
                self._client.check_connack()
                self._take_acks()
                if self._connected.is_set():
                    self._publish_more()
                    self._take_acks()
        except BaseException as exc:  # handed to the caller through drain()
            log.error("outbox pump stopped: %s", exc)
            self._error = exc

    def _take_acks(self) -> None:
        while self._acks:
            mid, code, name = self._acks.popleft()
            sent = self._inflight.pop(mid, None)
            if sent is None:  # the status message, or an ack we already handled
                if code >= REFUSED and code not in self._status_told:
                    self._status_told.add(code)
                    self._tell_refusal(self.status_topic, code, name, "sent on each connect")
                continue
            row_id, topic = sent
            if code >= REFUSED:  # not delivered: the row stays, and goes again later
                self.refusals += 1
                if self._refused.refused(row_id, topic, code, name):  # a new cause
                    self._tell_refusal(topic, code, name, "kept in the outbox, sent again later")
                continue
            self.outbox.delete(row_id)
            self.acked += 1
            if self._refused.taken(row_id):  # its cause is gone, it seems: send the rest
                self._round_from = 0

    def _tell_refusal(self, topic: str, code: int, name: str, what: str) -> None:
        hint = describe_publish_refusal(topic, code, name, self.login)
        log.warning(
            "the broker %s refused %s (%s): %s%s",
            self.login,
            topic,
            name,
            what,
            f"; {hint}" if hint else "",
        )

    def _publish_more(self) -> None:
        room = self._room - len(self._inflight)
        if self._reconnected:
            self._reconnected = False
            self._refused.reconnected()
        if room > 0 and len(self._refused):
            busy = {row_id for row_id, _ in self._inflight.values()}
            room -= self._send(self.outbox.rows(self._refused.probes_due(busy, room)))
            if room > 0 and self._round_from is not None:
                room -= self._send(self._rows_to_send_again(room, busy))
        if room <= 0:
            return
        for row in self.outbox.pending(after_id=self._last_sent_id, limit=room):
            self._send([row])
            self._last_sent_id = row.row_id

    def _rows_to_send_again(self, limit: int, busy: set[int]) -> list[OutboxRow]:
        """The next ``limit`` refused rows whose cause opened, oldest first.

        Every row up to the last one sent that is still in the outbox is in flight or was
        refused, so a round reads the outbox from its start to that row, a page at a time."""
        out: list[OutboxRow] = []
        while self._round_from is not None and len(out) < limit:
            page = self.outbox.pending(after_id=self._round_from, limit=max(limit, 256))
            if not page or page[0].row_id > self._last_sent_id:
                self._round_from = None  # the round is over
                break
            for row in page:
                if row.row_id > self._last_sent_id:
                    self._round_from = None
                    break
                self._round_from = row.row_id
                if row.row_id not in busy and self._refused.goes_again(row.row_id):
                    out.append(row)
                    if len(out) >= limit:
                        break
        return out

    def _send(self, rows: list[OutboxRow]) -> int:
        for row in rows:
            info = self._client.publish(row.topic, row.payload, qos=1)
            if info.rc not in (mqtt.MQTT_ERR_SUCCESS, mqtt.MQTT_ERR_NO_CONN):
                # NO_CONN: paho keeps QoS 1 messages and sends them on reconnect.
                raise PublisherError(
                    f"cannot publish outbox row {row.row_id} to {row.topic}: "
                    f"{mqtt.error_string(info.rc)}"
                )
            self._inflight[info.mid] = (row.row_id, row.topic)
        return len(rows)

    def _raise_pump_error(self) -> None:
        if self._error is not None:
            if isinstance(self._error, EdgeRuntimeError):
                raise self._error
            raise PublisherError(f"outbox pump failed: {self._error}")
