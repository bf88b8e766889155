"""Smart plugs (Tasmota, Shelly Gen2) through a real Mosquitto on loopback."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from edgetally.firmware_bridge.errors import BridgeError
from edgetally.firmware_bridge.plug import PlugMeter, parse_broker, parse_plug_payload, plug_topic
from paho.mqtt.enums import CallbackAPIVersion

TASMOTA = {
    "Time": "2025-03-01T10:00:00",
    "ENERGY": {
        "TotalStartTime": "2024-01-01T00:00:00",
        "Total": 12.345,
        "Yesterday": 0.2,
        "Today": 0.1,
        "Period": 1,
        "Power": 9.0,
        "ApparentPower": 12,
        "ReactivePower": 8,
        "Factor": 0.75,
        "Voltage": 231,
        "Current": 0.052,
    },
}
SHELLY = {
    "src": "shellyplusplugs-a8032ab12345",
    "dst": "shellyplusplugs-a8032ab12345/events",
    "method": "NotifyStatus",
    "params": {
        "ts": 1740823200.52,
        "switch:0": {
            "id": 0,
            "apower": 11.5,
            "aenergy": {"total": 2345.6, "by_minute": [190, 191, 192], "minute_ts": 1740823140},
        },
    },
}


def test_payload_parsing() -> None:
    t = parse_plug_payload(json.dumps(TASMOTA).encode())
    assert t is not None and (t.kind, t.watts) == ("tasmota", 9.0)
    assert t.total_wh == pytest.approx(12345.0)
    s = parse_plug_payload(json.dumps(SHELLY).encode())
    assert s is not None and (s.kind, s.watts, s.total_wh) == ("shelly", 11.5, 2345.6)
    other = {
        "method": "NotifyStatus",
        "params": {"ts": 1.0, "switch:0": {"id": 0, "temperature": {"tC": 40}}},
    }
    assert parse_plug_payload(json.dumps(other).encode()) is None
    assert parse_plug_payload(b'{"Time": "x", "ANALOG": {}}') is None
    with pytest.raises(BridgeError, match="not JSON"):
        parse_plug_payload(b"\xff{")
    with pytest.raises(BridgeError, match=r"ENERGY\.Power"):
        parse_plug_payload(b'{"ENERGY": {"Power": "lots"}}')


def test_topics_and_broker_urls() -> None:
    assert plug_topic("plug1") == "tele/plug1/SENSOR"
    assert plug_topic("shellyplusplugs-x/events/rpc") == "shellyplusplugs-x/events/rpc"
    assert parse_broker("mqtt://127.0.0.1:1884") == ("127.0.0.1", 1884)
    assert parse_broker("broker.local") == ("broker.local", 1883)
    with pytest.raises(BridgeError, match="unsupported"):
        parse_broker("http://x")


class Publisher:
    def __init__(self, port: int) -> None:
        self.client = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2)
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()

    def publish_until(self, topic: str, pick: Callable[[], Any], done: threading.Event) -> None:
        # The meter subscribes asynchronously: repeat until it is done.
        while not done.is_set():
            p = pick()
            body = p if isinstance(p, bytes) else json.dumps(p).encode()
            self.client.publish(topic, body, qos=1).wait_for_publish(5)
            time.sleep(0.05)

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


@pytest.mark.slow
@pytest.mark.parametrize(
    ("topic", "subscribe", "payload", "watts"),
    [
        ("plug1", "tele/plug1/SENSOR", TASMOTA, 9.0),
        (
            "shellyplusplugs-a8032ab12345/events/rpc",
            "shellyplusplugs-a8032ab12345/events/rpc",
            SHELLY,
            11.5,
        ),
    ],
)
def test_meter_reads_power_from_the_broker(
    mosquitto: Any, topic: str, subscribe: str, payload: Any, watts: float
) -> None:
    meter = PlugMeter(mosquitto.url, topic, timeout=10)
    pub = Publisher(mosquitto.port)
    done = threading.Event()
    # malformed messages until the meter has counted one (skipped, not a crash), then readings
    thread = threading.Thread(
        target=pub.publish_until,
        args=(subscribe, lambda: payload if meter.bad_messages else b"not json", done),
    )
    thread.start()
    try:
        reading = meter.read()
    finally:
        done.set()
        thread.join()
        pub.close()
        meter.close()
    assert meter.topic == subscribe
    assert reading.watts == pytest.approx(watts)
    assert meter.bad_messages >= 1
    assert meter.latest is not None and meter.latest.total_wh is not None


@pytest.mark.slow
def test_silent_plug_times_out_with_a_clear_error(mosquitto: Any) -> None:
    meter = PlugMeter(mosquitto.url, "quiet", timeout=0.3)
    try:
        with pytest.raises(BridgeError, match="no power message on tele/quiet/SENSOR"):
            meter.read()
    finally:
        meter.close()


def test_unreachable_broker_is_a_clear_error() -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # bound, not listening: connection refused
        with pytest.raises(BridgeError, match="cannot connect to MQTT broker"):
            PlugMeter(f"mqtt://127.0.0.1:{port}", "plug1")
