"""Helpers (no tests): a real Mosquitto started from the generated fleet configuration and
paho clients that talk TLS to it."""

from __future__ import annotations

import getpass
import os
import queue
import ssl
import threading
from dataclasses import dataclass, field
from pathlib import Path

import paho.mqtt.client as mqtt
from edgetally.fleet.broker_config import BrokerConfig, generate_broker_config, parse_devices
from edgetally.ports import free_port
from paho.mqtt.enums import CallbackAPIVersion

from tests.conftest import Broker


@dataclass
class SecureBroker:
    broker: Broker
    cfg: BrokerConfig

    @property
    def port(self) -> int:
        return self.broker.port

    def creds(self, who: str) -> tuple[str, str]:
        """(user, password) of any generated account: the fleet's, a device's, an updater's
        (``site/device/updater``: the device's password)."""
        if who == self.cfg.fleet_user or who in self.cfg.fleet_accounts:
            return who, self.cfg.fleet_password
        return who, self.cfg.device_passwords[who.removesuffix("/updater")]


def start_secure_broker(
    tmp_path: Path, devices: str, fleet_workers: int = 8, fleet_users: tuple[str, ...] = ("fleet",)
) -> SecureBroker:
    port = free_port()
    run_as = getpass.getuser() if os.geteuid() == 0 else None
    cfg = generate_broker_config(
        tmp_path / "broker",
        parse_devices(devices),
        port=port,
        bind="127.0.0.1",
        run_as=run_as,
        fleet_users=fleet_users,
        fleet_workers=fleet_workers,
    )
    broker = Broker(port=port, config=cfg.config)
    broker.start()
    return SecureBroker(broker, cfg)


@dataclass
class Client:
    """A connected paho client that collects (topic, payload) of what it receives."""

    client: mqtt.Client
    rc: object
    received: queue.Queue[tuple[str, bytes]] = field(default_factory=queue.Queue)
    dropped: threading.Event = field(default_factory=threading.Event)  # lost once connected
    closing: threading.Event = field(default_factory=threading.Event)

    def messages(self) -> list[tuple[str, bytes]]:
        out = []
        while not self.received.empty():
            out.append(self.received.get_nowait())
        return out

    def close(self) -> None:
        self.closing.set()
        self.client.disconnect()
        self.client.loop_stop()


def connect(
    sb: SecureBroker,
    username: str | None,
    password: str | None,
    *,
    ca: Path | None = None,
    client_id: str = "",
) -> Client:
    """Connect and wait for CONNACK; ``rc`` is its reason code (0 / Success when accepted)."""
    c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id)
    if username is not None:
        c.username_pw_set(username, password)
    c.tls_set(ca_certs=str(ca or sb.cfg.ca_cert), cert_reqs=ssl.CERT_REQUIRED)
    done = threading.Event()
    holder = Client(c, None)

    def on_connect(
        client: mqtt.Client, userdata: object, flags: object, rc: object, p: object
    ) -> None:
        holder.rc = rc
        done.set()

    def on_message(client: mqtt.Client, userdata: object, msg: mqtt.MQTTMessage) -> None:
        holder.received.put((msg.topic, bytes(msg.payload)))

    def on_disconnect(client: mqtt.Client, u: object, f: object, rc: object, p: object) -> None:
        if not done.is_set():
            holder.rc = rc
            done.set()
        elif not holder.closing.is_set():
            holder.dropped.set()

    c.on_connect = on_connect
    c.on_message = on_message
    c.on_disconnect = on_disconnect
    c.connect("127.0.0.1", sb.port)
    c.loop_start()
    assert done.wait(30), "no CONNACK"
    return holder


def subscribe(c: Client, topic: str) -> None:
    ev = threading.Event()
    c.client.on_subscribe = lambda *a: ev.set()
    c.client.subscribe(topic, qos=1)
    assert ev.wait(30)


def publish(c: Client, topic: str, payload: bytes) -> None:
    info = c.client.publish(topic, payload, qos=1)
    info.wait_for_publish(30)
