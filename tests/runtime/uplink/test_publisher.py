"""Publisher against a real Mosquitto on loopback: rows leave the outbox only on PUBACK."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from edgetally.models.topics import topic_for
from edgetally.runtime.errors import ConfigError
from edgetally.runtime.uplink.outbox import Outbox
from edgetally.runtime.uplink.publisher import Publisher, parse_broker_url
from paho.mqtt.enums import CallbackAPIVersion

from tests.conftest import Broker

AGG = topic_for("shop-1", "dev-1", "agg")


class Recorder:
    """A QoS 1 subscriber that records (topic, payload) of everything it gets."""

    def __init__(
        self, port: int, topic: str = "edgetally/#", *, session: str | None = None
    ) -> None:
        """``session``: a persistent session's client id, so that the broker keeps what
        arrives while this recorder is disconnected."""
        self.messages: list[tuple[str, bytes, bool]] = []
        self._lock = threading.Lock()
        self._ready = threading.Event()
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=session or f"rec-{id(self)}",
            clean_session=session is None,
        )
        self.client.on_connect = lambda c, u, f, r, p: (c.subscribe(topic, qos=1), None)[1]
        self.client.on_subscribe = lambda *a: self._ready.set()
        self.client.on_message = self._on_message
        self.client.reconnect_delay_set(1, 2)
        self.client.connect_async("127.0.0.1", port)
        self.client.loop_start()
        assert self._ready.wait(10), "recorder did not subscribe"

    def _on_message(self, c: mqtt.Client, u: object, msg: mqtt.MQTTMessage) -> None:
        with self._lock:
            self.messages.append((msg.topic, bytes(msg.payload), bool(msg.retain)))

    def payloads(self, suffix: str = "/agg") -> list[bytes]:
        with self._lock:
            return [p for t, p, _ in self.messages if t.endswith(suffix)]

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def wait_until(cond: Callable[[], bool], timeout: float = 20.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(0.05)
    return cond()


def body(seq: int, epoch: str) -> bytes:
    return json.dumps({"seq": seq}).encode()


@pytest.fixture
def outbox(tmp_path: Path) -> Iterator[Outbox]:
    box = Outbox(tmp_path / "outbox.db")
    yield box
    box.close()


def test_parse_broker_url() -> None:
    assert str(parse_broker_url("mqtt://127.0.0.1:1999")) == "mqtt://127.0.0.1:1999"
    assert parse_broker_url("example.org").port == 1883
    with pytest.raises(ConfigError, match="unsupported scheme"):
        parse_broker_url("http://x:1")
    with pytest.raises(ConfigError, match="port"):
        parse_broker_url("mqtt://x:99999")


def test_drains_in_order_and_deletes_on_ack(mosquitto: Broker, outbox: Outbox) -> None:
    rec = Recorder(mosquitto.port)
    outbox.put_many([(AGG, body)] * 200)
    pub = Publisher(outbox, mosquitto.url, site="shop-1", device="dev-1", window=16)
    pub.start()
    try:
        assert pub.drain(timeout=30) == 0
        assert wait_until(lambda: len(rec.payloads()) >= 200)
        seqs = [json.loads(p)["seq"] for p in rec.payloads()]
        assert seqs == list(range(200))  # in order, once
        assert pub.acked == 200
    finally:
        pub.stop()
        rec.close()


def test_broker_down_keeps_rows_until_it_is_back(mosquitto: Broker, outbox: Outbox) -> None:
    rec = Recorder(mosquitto.port)
    pub = Publisher(outbox, mosquitto.url, site="shop-1", device="dev-1", max_backoff=2)
    pub.start()
    try:
        outbox.put_many([(AGG, body)] * 20)
        pub.wake()
        assert pub.drain(timeout=20) == 0
        rec.close()
        mosquitto.stop()
        assert wait_until(lambda: not pub.connected)
        outbox.put_many([(AGG, body)] * 30)
        pub.wake()
        time.sleep(1.0)
        assert outbox.count() == 30  # no broker, no PUBACK, nothing deleted
        mosquitto.start()
        rec = Recorder(mosquitto.port)
        assert pub.drain(timeout=30) == 0
        assert wait_until(lambda: len(rec.payloads()) >= 30)
        assert sorted({json.loads(p)["seq"] for p in rec.payloads()}) == list(range(20, 50))
        assert pub.disconnects >= 1 and pub.connects >= 2
    finally:
        pub.stop()
        rec.close()


def test_starts_before_the_broker_exists(mosquitto: Broker, outbox: Outbox) -> None:
    mosquitto.stop()
    outbox.put_many([(AGG, body)] * 5)
    pub = Publisher(outbox, mosquitto.url, site="shop-1", device="dev-1", max_backoff=1)
    pub.start()
    try:
        assert pub.drain(timeout=1.5) == 5
        mosquitto.start()
        assert pub.drain(timeout=30) == 0
    finally:
        pub.stop()


def test_status_is_retained_online_then_offline(mosquitto: Broker, outbox: Outbox) -> None:
    pub = Publisher(outbox, mosquitto.url, site="shop-1", device="dev-1")
    pub.start()
    assert wait_until(lambda: pub.connected)
    late = Recorder(mosquitto.port)  # subscribes after the fact: sees the retained status
    try:
        assert wait_until(lambda: len(late.payloads("/status")) >= 1)
        assert json.loads(late.payloads("/status")[0])["state"] == "online"
        assert late.messages[0][2] is True  # retained
        pub.stop()
        assert wait_until(lambda: json.loads(late.payloads("/status")[-1])["state"] == "offline")
    finally:
        late.close()
