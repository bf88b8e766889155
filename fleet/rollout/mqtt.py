"""The fleet's MQTT side of rollouts: commands out (QoS 1), update reports in."""

from __future__ import annotations

import logging
import ssl
import threading
from pathlib import Path

import paho.mqtt.client as mqtt
from edgetally.fleet.errors import FleetError
from edgetally.fleet.rollout.service import RolloutService
from edgetally.models.errors import EdgetallyError
from edgetally.models.topics import subscription
from paho.mqtt.enums import CallbackAPIVersion

log = logging.getLogger(__name__)
REPORTS = subscription("update")


class RolloutMqttLink:
    """Connects with the fleet's rollouts account (``USER-rollouts``: see
    :func:`~edgetally.fleet.broker_config.service_login`); hand :meth:`publish` to the
    service, then :meth:`attach` it so reports reach it."""

    def __init__(
        self,
        host: str,
        port: int,
        *,
        username: str | None,
        password: str | None,
        ca_cert: Path | None = None,
        client_id: str = "",
    ) -> None:
        self._client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id)
        if username:  # none on a broker without accounts (a local demo)
            self._client.username_pw_set(username, password)
        if ca_cert is not None:
            self._client.tls_set(ca_certs=str(ca_cert), cert_reqs=ssl.CERT_REQUIRED)
        self._client.on_connect = self._on_connect
        self._client.on_message = self._on_message
        self._client.on_disconnect = self._on_disconnect
        self._stopping = threading.Event()
        self._service: RolloutService | None = None
        self._connected = threading.Event()
        self._host, self._port = host, port
        self._who = f"the fleet account {username}" if username else "the fleet"
        self.rejected = 0  # malformed or spoofed reports, counted, never silently dropped

    def start(self, timeout: float = 30.0) -> None:
        try:
            self._client.connect(self._host, self._port)
        except (OSError, ssl.SSLError) as exc:
            raise FleetError(f"cannot reach the broker {self._host}:{self._port}: {exc}") from None
        self._client.loop_start()
        if not self._connected.wait(timeout):
            self.stop()
            raise FleetError(f"the broker {self._host}:{self._port} refused {self._who}")

    def attach(self, service: RolloutService) -> None:
        self._service = service

    def stop(self) -> None:
        self._stopping.set()
        self._client.disconnect()
        self._client.loop_stop()

    def publish(self, topic: str, payload: bytes) -> None:
        info = self._client.publish(topic, payload, qos=1)
        if info.rc != mqtt.MQTT_ERR_SUCCESS:
            raise FleetError(f"cannot queue a command on {topic}: {mqtt.error_string(info.rc)}")

    def _on_connect(
        self, client: mqtt.Client, userdata: object, flags: object, rc: object, props: object
    ) -> None:
        if getattr(rc, "is_failure", False):
            log.warning("broker refused the fleet account: %s", rc)
            return
        client.subscribe(REPORTS, qos=1)
        self._connected.set()

    def _on_disconnect(
        self, client: mqtt.Client, userdata: object, flags: object, rc: object, props: object
    ) -> None:
        if not self._stopping.is_set():  # paho connects again by itself
            log.warning("rollouts: disconnected from the broker (%s); reconnecting", rc)

    def _on_message(self, client: mqtt.Client, userdata: object, msg: mqtt.MQTTMessage) -> None:
        if self._service is None:
            self.rejected += 1
            return
        try:
            self._service.handle_report(msg.topic, bytes(msg.payload))
        except EdgetallyError as exc:
            self.rejected += 1
            log.warning("update report refused on %s: %s", msg.topic, exc)
