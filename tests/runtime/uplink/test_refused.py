"""A broker that refuses a publish, against a real Mosquitto with passwords and an ACL: the
rows stay in the outbox, one line says why, and they are delivered once the login or the
ACL lets them through. And a broker that speaks only MQTT 3.1.1 (amqtt) still gets them.

Mosquitto 2.0.11 answers an MQTT v5 QoS 1 publish its ACL denies with PUBACK reason 0x87
(not authorized) and keeps the connection; over 3.1.1 the same PUBACK says nothing, which is
why the publisher speaks v5."""

from __future__ import annotations

import asyncio
import getpass
import json
import logging
import os
import signal
import threading
from collections.abc import Iterator
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from edgetally.fleet.broker_config import mosquitto_password_hash
from edgetally.models.topics import topic_for
from edgetally.ports import free_port
from edgetally.runtime.uplink.broker import assume_mqtt311
from edgetally.runtime.uplink.outbox import Outbox
from edgetally.runtime.uplink.publisher import Publisher
from paho.mqtt.enums import CallbackAPIVersion

from tests.conftest import Broker
from tests.runtime.uplink.test_publisher import wait_until

CAM1_AGG = topic_for("shop1", "cam1", "agg")
CAM2_AGG = topic_for("shop1", "cam2", "agg")
PASSWORDS = {"shop1/cam1": "pw-cam1", "shop1/cam2": "pw-cam2", "fleet": "pw-fleet"}
PUBLISHER = "edgetally.runtime.uplink.publisher"


def _acl(*, cam2_may_write_cam1: bool = False) -> str:
    lines = ["user fleet", "topic readwrite edgetally/#", ""]
    for dev in ("cam1", "cam2"):
        lines += [f"user shop1/{dev}", f"topic write edgetally/v1/shop1/{dev}/#"]
        if dev == "cam2" and cam2_may_write_cam1:
            lines.append("topic write edgetally/v1/shop1/cam1/#")
        lines.append("")
    return "\n".join(lines)


@pytest.fixture
def closed_broker(tmp_path: Path) -> Iterator[Broker]:
    """Mosquitto on loopback: no anonymous clients, one password per device, and an ACL
    that lets each device publish only under its own topics."""
    port = free_port()
    (tmp_path / "passwords").write_text(
        "".join(f"{u}:{mosquitto_password_hash(p)}\n" for u, p in PASSWORDS.items())
    )
    (tmp_path / "acl").write_text(_acl())
    conf = tmp_path / "mosquitto.conf"
    conf.write_text(
        f"listener {port} 127.0.0.1\nallow_anonymous false\npersistence false\n"
        f"password_file {tmp_path / 'passwords'}\nacl_file {tmp_path / 'acl'}\n"
        # Started as root, Mosquitto drops to its own user, who cannot read tmp_path.
        + (f"user {getpass.getuser()}\n" if os.geteuid() == 0 else "")
    )
    broker = Broker(port=port, config=conf)
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()


class FleetRecorder:
    """The fleet's side: logged in as ``fleet``, records every (topic, payload) it gets."""

    def __init__(self, port: int) -> None:
        self.messages: list[tuple[str, bytes]] = []
        self._lock = threading.Lock()
        ready = threading.Event()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="fleet-rec")
        self.client.username_pw_set("fleet", PASSWORDS["fleet"])
        self.client.on_connect = lambda c, u, f, r, p: (c.subscribe("edgetally/#", qos=1), None)[1]
        self.client.on_subscribe = lambda *a: ready.set()
        self.client.on_message = self._on_message
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        assert ready.wait(10), "the fleet's recorder did not subscribe"

    def _on_message(self, c: mqtt.Client, u: object, msg: mqtt.MQTTMessage) -> None:
        with self._lock:
            self.messages.append((msg.topic, bytes(msg.payload)))

    def got(self, topic: str) -> list[bytes]:
        with self._lock:
            return [p for t, p in self.messages if t == topic]

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def body(seq: int, epoch: str) -> bytes:
    return json.dumps({"seq": seq}).encode()


def _publisher(outbox: Outbox, port: int, device: str, **kw: float) -> Publisher:
    url = f"mqtt://:{PASSWORDS[f'shop1/{device}']}@127.0.0.1:{port}"
    return Publisher(outbox, url, site="shop1", device=device, **kw)  # type: ignore[arg-type]


def _refusal_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.name == PUBLISHER and "refused" in r.getMessage()
    ]


def _waiting(outbox: Outbox) -> list[tuple[int, str, bytes]]:
    return [(r.row_id, r.topic, r.payload) for r in outbox.pending(limit=1000)]


def test_another_devices_rows_stay_until_the_right_login_delivers_them_once(
    closed_broker: Broker, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A device re-provisioned as shop1/cam2 with shop1/cam1's rows still in its outbox."""
    caplog.set_level(logging.INFO, logger=PUBLISHER)
    fleet = FleetRecorder(closed_broker.port)
    outbox = Outbox(tmp_path / "outbox.db")
    for _ in range(3):  # cam1's buckets, then cam2's, interleaved as they were stored
        outbox.put_many([(CAM1_AGG, body)] * 3)
        outbox.put_many([(CAM2_AGG, body)] * 2)
    cam1_rows = [r for r in _waiting(outbox) if r[1] == CAM1_AGG]
    pub = _publisher(outbox, closed_broker.port, "cam2", retry_min=0.2, retry_max=0.4)
    pub.start()
    try:
        # The drain ends once nothing but refused rows is left: cam2's own rows went.
        assert pub.drain(timeout=30) == 9
        assert wait_until(lambda: len(fleet.got(CAM2_AGG)) == 6)
        assert pub.refused == 9 and pub.acked == 6
        assert _waiting(outbox) == cam1_rows  # nothing refused was deleted
        # It tries the cause again with one row at a time (refusals.py), with backoff, and
        # says so once per cause, not once per row or try.
        assert wait_until(lambda: pub.refusals >= 9 + 3)
        assert _waiting(outbox) == cam1_rows
        lines = _refusal_lines(caplog)
        assert lines == [
            f"the broker mqtt://127.0.0.1:{closed_broker.port} refused {CAM1_AGG} "
            "(not authorized): kept in the outbox, sent again later; is this device logged "
            "in as shop1/cam1? it logs in as shop1/cam2"
        ]
        assert [r.levelno for r in caplog.records if r.getMessage() == lines[0]] == [
            logging.WARNING
        ]
        why = pub.refused_why
        assert why is not None and f"refused 9: 9 on {CAM1_AGG} (not authorized;" in why
        assert fleet.got(CAM1_AGG) == []
    finally:
        pub.stop()

    # Logged in as shop1/cam1 (the login corrected), the same rows go, each once.
    pub = _publisher(outbox, closed_broker.port, "cam1")
    pub.start()
    try:
        assert pub.drain(timeout=30) == 0
        assert pub.refused == 0 and pub.acked == 9
        assert wait_until(lambda: len(fleet.got(CAM1_AGG)) >= 9)
        assert sorted(fleet.got(CAM1_AGG)) == sorted(p for _, _, p in cam1_rows)
        assert len(fleet.got(CAM2_AGG)) == 6  # and nothing of cam2's twice
    finally:
        pub.stop()
        outbox.close()
        fleet.close()


def _kick(port: int, client_id: str, user: str) -> None:
    """Log in with ``client_id``: Mosquitto drops the client that had it (a reconnect)."""
    c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id)
    c.username_pw_set(user, PASSWORDS[user])
    c.connect("127.0.0.1", port)
    c.loop_start()
    assert wait_until(c.is_connected, 10)
    c.disconnect()
    c.loop_stop()


def test_rows_refused_go_once_the_acl_lets_them(closed_broker: Broker, tmp_path: Path) -> None:
    fleet = FleetRecorder(closed_broker.port)
    outbox = Outbox(tmp_path / "outbox.db")
    outbox.put_many([(CAM1_AGG, body)] * 50)
    # No probe by the clock in this test (an hour's backoff): only a reconnect tries again.
    pub = _publisher(outbox, closed_broker.port, "cam2", retry_min=3600, max_backoff=1)
    pub.start()
    try:
        assert pub.drain(timeout=30) == 50
        assert pub.refused == 50
        # The operator lets cam2 publish there; Mosquitto rereads its ACL on SIGHUP.
        (closed_broker.config.parent / "acl").write_text(_acl(cam2_may_write_cam1=True))
        assert closed_broker.proc is not None
        os.kill(closed_broker.proc.pid, signal.SIGHUP)
        connects = pub.connects
        _kick(closed_broker.port, "edgetally-shop1-cam2", "shop1/cam2")
        assert wait_until(lambda: pub.connects > connects, 30)
        # On the new connection one row probes the cause; taken, the other 49 follow.
        assert wait_until(lambda: outbox.count() == 0, 30)
        assert pub.refused == 0 and pub.acked == 50
        assert wait_until(lambda: len(fleet.got(CAM1_AGG)) >= 50)
        seqs = [json.loads(p)["seq"] for p in fleet.got(CAM1_AGG)]
        assert sorted(seqs) == list(range(50))  # each once
        assert pub.refused_why is None
    finally:
        pub.stop()
        outbox.close()
        fleet.close()


def test_a_publish_nobody_subscribed_to_is_a_delivery(
    closed_broker: Broker, tmp_path: Path
) -> None:
    """Mosquitto answers a publish nobody subscribed to with 0x10 (no matching
    subscribers): below 0x80, so it is a delivery and the row leaves."""
    outbox = Outbox(tmp_path / "outbox.db")
    outbox.put_many([(CAM2_AGG, body)] * 4)
    pub = _publisher(outbox, closed_broker.port, "cam2")
    pub.start()
    try:
        assert pub.drain(timeout=30) == 0
        assert pub.acked == 4 and pub.refused == 0
    finally:
        pub.stop()
        outbox.close()


@pytest.fixture
def amqtt_port() -> Iterator[int]:
    """amqtt on loopback: a broker that speaks only MQTT 3.1.1."""
    broker_mod = pytest.importorskip("amqtt.broker")
    logging.getLogger("amqtt").setLevel(logging.CRITICAL)
    port = free_port()
    loop = asyncio.new_event_loop()
    config = {
        "listeners": {"default": {"type": "tcp", "bind": f"127.0.0.1:{port}"}},
        "sys_interval": 0,
        "auth": {"allow-anonymous": True, "plugins": ["auth_anonymous"]},
        "topic-check": {"enabled": False},
    }
    broker = broker_mod.Broker(config, loop=loop)
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    asyncio.run_coroutine_threadsafe(broker.start(), loop).result(timeout=20)
    try:
        yield port
    finally:
        asyncio.run_coroutine_threadsafe(broker.shutdown(), loop).result(timeout=10)
        asyncio.run_coroutine_threadsafe(_cancel_the_rest(), loop).result(timeout=10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=5)
        loop.close()


async def _cancel_the_rest() -> None:
    """amqtt leaves tasks behind after its shutdown: end them, so none is destroyed pending."""
    rest = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
    for task in rest:
        task.cancel()
    await asyncio.gather(*rest, return_exceptions=True)


@pytest.mark.slow  # amqtt takes 5 s to shut down
def test_a_broker_that_speaks_only_311_gets_the_rows_over_311(
    amqtt_port: int, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger=PUBLISHER)
    outbox = Outbox(tmp_path / "outbox.db")
    outbox.put_many([(CAM2_AGG, body)] * 20)
    pub = Publisher(outbox, f"mqtt://127.0.0.1:{amqtt_port}", site="shop1", device="cam2")
    pub.start()
    try:
        assert pub.drain(timeout=60) == 0  # v5 unanswered, then 3.1.1
        assert pub.acked == 20
    finally:
        pub.stop()
    said = [r.getMessage() for r in caplog.records if "speaks only MQTT 3.1.1" in r.getMessage()]
    assert len(said) == 1 and "acknowledged all the same and leaves the outbox" in said[0]

    # Told so (as the demo tells its clients about its amqtt), a client starts with 3.1.1:
    # no v5 attempt left unanswered first.
    caplog.clear()
    assume_mqtt311("127.0.0.1", amqtt_port)
    try:
        outbox.put_many([(CAM2_AGG, body)] * 5)
        pub = Publisher(outbox, f"mqtt://127.0.0.1:{amqtt_port}", site="shop1", device="cam2")
        pub.start()
        try:
            assert wait_until(lambda: pub.connected, 20)
            assert pub.drain(timeout=30) == 0
        finally:
            pub.stop()
        assert not [r for r in caplog.records if "before answering" in r.getMessage()]
    finally:
        assume_mqtt311("127.0.0.1", amqtt_port, speaks_only_311=False)
        outbox.close()
