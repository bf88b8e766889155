"""A smart plug reporting over MQTT: Tasmota and Shelly Gen2.

- Tasmota publishes ``tele/<topic>/SENSOR`` every TelePeriod (300 s by default; set
  ``TelePeriod 10`` for a useful resolution) with ``ENERGY.Power`` (W) and
  ``ENERGY.Total`` (kWh).
- Shelly Gen2/Plus publishes JSON-RPC notifications on ``<id>/events/rpc``; a
  ``NotifyStatus`` whose ``params`` hold ``switch:N`` (or ``pm1:N``) with ``apower`` (W)
  and ``aenergy.total`` (Wh).

These payloads belong to the plug's firmware, not to us: the pydantic models below ignore
fields they do not use (``extra="ignore"``) rather than rejecting newer firmware.
A plug measures the whole device at the wall, conversion losses included.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import urlparse

import paho.mqtt.client as mqtt
from edgetally.firmware_bridge.errors import BridgeError
from edgetally.firmware_bridge.power import PowerReading, utcnow
from paho.mqtt.enums import CallbackAPIVersion
from pydantic import BaseModel, ConfigDict, Field, ValidationError

log = logging.getLogger(__name__)


class _Foreign(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class TasmotaEnergy(_Foreign):
    power: float = Field(alias="Power", ge=0)
    total: float | None = Field(default=None, alias="Total")  # kWh


class TasmotaSensor(_Foreign):
    energy: TasmotaEnergy = Field(alias="ENERGY")


class ShellyEnergy(_Foreign):
    total: float  # Wh


class ShellyMeter(_Foreign):
    apower: float | None = None
    aenergy: ShellyEnergy | None = None


class ShellyNotify(_Foreign):
    method: str
    params: dict[str, object]


@dataclass(frozen=True, slots=True)
class PlugStatus:
    watts: float
    total_wh: float | None
    kind: str  # tasmota | shelly


def parse_plug_payload(payload: bytes) -> PlugStatus | None:
    """A power status from a Tasmota SENSOR or Shelly NotifyStatus payload.

    None when the message is valid but carries no power (other Shelly notifications,
    a Tasmota SENSOR without ENERGY). Raises BridgeError when it is not JSON at all.
    """
    try:
        data = json.loads(payload)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BridgeError(f"plug payload is not JSON: {exc}") from exc
    if not isinstance(data, dict):
        return None
    if "ENERGY" in data:
        try:
            sensor = TasmotaSensor.model_validate(data)
        except ValidationError as exc:
            raise BridgeError(
                f"Tasmota SENSOR payload without a usable ENERGY.Power: {exc.errors()[0]['msg']}"
            ) from exc
        kwh = sensor.energy.total
        return PlugStatus(sensor.energy.power, kwh * 1000.0 if kwh is not None else None, "tasmota")
    if data.get("method") == "NotifyStatus":
        try:
            note = ShellyNotify.model_validate(data)
        except ValidationError:
            return None
        watts = 0.0
        total: float | None = None
        found = False
        for key, value in note.params.items():
            if not key.startswith(("switch:", "pm1:")) or not isinstance(value, dict):
                continue
            try:
                meter = ShellyMeter.model_validate(value)
            except ValidationError:
                continue
            if meter.apower is None:
                continue
            found = True
            watts += max(0.0, meter.apower)
            if meter.aenergy is not None:
                total = (total or 0.0) + meter.aenergy.total
        return PlugStatus(watts, total, "shelly") if found else None
    return None


def plug_topic(topic: str) -> str:
    """A bare Tasmota topic (``plug1``) becomes ``tele/plug1/SENSOR``; full topics stay."""
    return topic if "/" in topic else f"tele/{topic}/SENSOR"


def parse_broker(url: str) -> tuple[str, int]:
    parsed = urlparse(url if "://" in url else f"mqtt://{url}")
    if parsed.scheme not in ("mqtt", "tcp"):
        raise BridgeError(f"unsupported broker URL {url!r} (use mqtt://host:port)")
    if not parsed.hostname:
        raise BridgeError(f"broker URL {url!r} has no host")
    try:
        port = parsed.port or 1883
    except ValueError as exc:
        raise BridgeError(f"broker URL {url!r} has a bad port") from exc
    return parsed.hostname, port


class PlugMeter:
    """Subscribes to a plug's topic and reports the latest power it published."""

    source = "plug"
    measured = True

    def __init__(
        self,
        broker: str,
        topic: str,
        timeout: float = 15.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.topic = plug_topic(topic)
        self.timeout = timeout
        self._clock = clock
        self.latest: PlugStatus | None = None
        self.bad_messages = 0
        self._cond = threading.Condition()
        host, port = parse_broker(broker)
        self._client = mqtt.Client(
            callback_api_version=CallbackAPIVersion.VERSION2,
            client_id=f"edgetally-power-{id(self):x}",
        )
        self._client.on_connect = self._on_connect
        self._client.on_message = self._on_message
        try:
            self._client.connect(host, port, keepalive=30)
        except OSError as exc:
            raise BridgeError(f"cannot connect to MQTT broker {host}:{port}: {exc}") from exc
        self._client.loop_start()

    def _on_connect(
        self, client: mqtt.Client, userdata: object, flags: object, rc: object, props: object = None
    ) -> None:
        client.subscribe(self.topic, qos=0)

    def _on_message(self, client: mqtt.Client, userdata: object, msg: mqtt.MQTTMessage) -> None:
        try:
            status = parse_plug_payload(bytes(msg.payload))
        except BridgeError as exc:
            self.bad_messages += 1
            log.warning("skipping a bad plug message on %s: %s", msg.topic, exc)
            return
        if status is None:
            return
        with self._cond:
            self.latest = status
            self._cond.notify_all()

    def read(self) -> PowerReading:
        deadline = self._clock() + self.timeout
        with self._cond:
            while self.latest is None:
                left = deadline - self._clock()
                if left <= 0:
                    raise BridgeError(
                        f"no power message on {self.topic} within {self.timeout:g} s "
                        f"({self.bad_messages} bad messages skipped)"
                    )
                self._cond.wait(min(left, 0.1))
            return PowerReading(utcnow(), self.latest.watts)

    def close(self) -> None:
        self._client.loop_stop()
        self._client.disconnect()
