"""A client id belongs to its login: on the generated broker (a real Mosquitto over TLS) a
device that asks for the fleet's client id, or another device's, neither disconnects that
client nor touches its persistent session; and every connection of the fleet (the single
ingest, ingest workers, device statuses, rollouts, on one host or two) has an account of
its own, so they all stay connected together, and a worker slot started again takes back
its session."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import psycopg
import pytest
from edgetally.fleet.config import FleetConfig
from edgetally.fleet.errors import FleetError
from edgetally.fleet.http.auth import add_token
from edgetally.fleet.server import FleetServer
from edgetally.fleet.workers import IngestWorker, WorkerPool
from edgetally.models.bundle import generate_keypair
from edgetally.models.topics import DeviceId, SiteId, topic_for
from edgetally.models.wire import DeviceStatus, to_json

from tests.fleet.ingest.test_fleet_ingest import T0, valid
from tests.fleet.test_broker_support import (
    Client,
    SecureBroker,
    connect,
    publish,
    start_secure_broker,
    subscribe,
)

pytestmark = pytest.mark.slow
DEVICES = "shop/dev-1,shop/dev-2,shop/dev-3"
DROPPED = "disconnected from the broker"  # what a fleet connection logs when it is thrown off


@pytest.fixture
def secure_broker(tmp_path: Path) -> Iterator[SecureBroker]:
    sb = start_secure_broker(tmp_path, DEVICES, fleet_workers=3, fleet_users=("fleet", "fleet-b"))
    try:
        yield sb
    finally:
        sb.broker.stop()


def _fleet_config(
    sb: SecureBroker, tmp_path: Path, db: str, user: str = "fleet", **options: object
) -> FleetConfig:
    """The fleet as README's closed fleet runs it: user ``fleet``, the password in a file."""
    pw = tmp_path / "fleet.pw"
    pw.write_text(sb.cfg.fleet_password + "\n")
    return FleetConfig.of(
        f"mqtts://{user}@127.0.0.1:{sb.port}",
        db,
        "127.0.0.1:0",
        broker_password_file=pw,
        ca_file=str(sb.cfg.ca_cert),
        **options,
    )


def _until(predicate: Callable[[], bool], timeout: float = 60.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return predicate()


def _thief(sb: SecureBroker, client_id: str) -> Client:
    """shop/dev-2 logs in asking for ``client_id`` (MQTT 3.1.1, clean session: taking over a
    session this way would discard it). Its login is good, so the broker lets it in."""
    thief = connect(sb, *sb.creds("shop/dev-2"), client_id=client_id)
    assert thief.rc == 0 and thief.client.is_connected()
    return thief


def test_a_device_with_the_fleets_client_id_neither_drops_the_fleet_nor_its_session(
    secure_broker: SecureBroker, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    sb = secure_broker
    config = _fleet_config(sb, tmp_path, str(tmp_path / "fleet.duckdb"))
    # The ids the fleet's ingest asks for and is given (the user name, on this broker).
    stolen = [config.client_id, "fleet"]
    messages = [valid("dev-1", seq, seq, 1) for seq in range(40)]
    device = connect(sb, *sb.creds("shop/dev-1"), client_id="edgetally-shop-dev-1")
    caplog.set_level(logging.WARNING, logger="edgetally.fleet.ingest.mqtt")
    try:
        # The fleet runs: a thief holds one of its ids while the device publishes.
        with FleetServer(config) as fleet:
            for i in range(0, 20, 5):
                thief = _thief(sb, stolen[i // 5 % 2])
                for topic, payload in messages[i : i + 5]:
                    publish(device, topic, payload)
                thief.close()
            assert _until(lambda: fleet.counters().aggregates_new == 20), fleet.counters()
            assert fleet.counters().connected
        # The fleet is away: its session holds what comes now, and thieves log in with its
        # ids and a clean session (which would have discarded what the broker holds).
        for topic, payload in messages[20:]:
            publish(device, topic, payload)
        for client_id in stolen:
            _thief(sb, client_id).close()
        with FleetServer(config) as fleet:
            assert _until(lambda: fleet.counters().aggregates_new == 20), fleet.counters()
            rows = fleet.store.fetch("SELECT count(*) FROM aggregates").rows
        assert rows == [(40,)]
    finally:
        device.close()
    assert not [r.getMessage() for r in caplog.records if DROPPED in r.getMessage()]


def test_a_device_cannot_take_another_devices_client_id(secure_broker: SecureBroker) -> None:
    sb = secure_broker
    victim = connect(sb, *sb.creds("shop/dev-1"), client_id="edgetally-shop-dev-1")
    agent = connect(sb, *sb.creds("shop/dev-1/updater"), client_id="shop/dev-1/updater")
    cmd = topic_for("shop", "dev-1", "cmd")
    subscribe(agent, cmd)
    rollouts = connect(sb, *sb.creds("fleet-rollouts"), client_id="edgetally-fleet-rollouts")
    try:
        for client_id in ("edgetally-shop-dev-1", "shop/dev-1", "shop/dev-1/updater"):
            thief = _thief(sb, client_id)
            publish(rollouts, cmd, client_id.encode())  # reaches the agent, not the thief
            thief.close()
        seen = [agent.received.get(timeout=30) for _ in range(3)]
        assert [p for _, p in seen] == [
            b"edgetally-shop-dev-1",
            b"shop/dev-1",
            b"shop/dev-1/updater",
        ]
        # Both of the device's connections were there all along, side by side.
        assert not victim.dropped.is_set() and not agent.dropped.is_set()
        assert victim.client.is_connected() and agent.client.is_connected()
    finally:
        for c in (victim, agent, rollouts):
            c.close()


def test_fleet_hosts_workers_statuses_and_rollouts_stay_connected_together(
    secure_broker: SecureBroker,
    tmp_path: Path,
    pg_url: str,
    caplog: pytest.LogCaptureFixture,
    capfd: pytest.CaptureFixture[str],
) -> None:
    sb = secure_broker
    tokens = tmp_path / "tokens.json"
    add_token(tokens, "ops", "operator")
    key, pub = generate_keypair(tmp_path / "keys")
    config = _fleet_config(
        sb,
        tmp_path,
        pg_url,
        role="all",
        workers=3,
        tokens_file=str(tokens),
        rollouts_dir=str(tmp_path / "rollouts"),
        fleet_key=str(key),
        fleet_pubkey=str(pub),
    )
    # A second host, user fleet-b: another api process and two more ingest workers.
    host_b = _fleet_config(sb, tmp_path, pg_url, "fleet-b", role="api", tokens_file=str(tokens))
    workers_b = _fleet_config(sb, tmp_path, pg_url, "fleet-b", role="ingest")
    caplog.set_level(logging.WARNING)
    messages = [valid(f"dev-{d}", seq, seq, d) for seq in range(30) for d in (1, 2)]
    devices = {d: connect(sb, *sb.creds(f"shop/dev-{d}")) for d in (1, 2, 3)}
    try:
        with FleetServer(config) as fleet, FleetServer(host_b) as api_b, WorkerPool(workers_b, 2):
            started = time.monotonic()
            # The workers subscribe a moment after the fleet starts (their first session):
            # dev-3 sends until one of its aggregates is stored.
            probe = iter(range(10_000))
            assert _until(lambda: _probe(devices[3], next(probe), pg_url))
            for topic, payload in messages:
                publish(devices[int(topic.split("/")[3][-1])], topic, payload)
            status = DeviceStatus(
                site=SiteId("shop"), device=DeviceId("dev-2"), at=T0, state="online"
            )
            publish(devices[2], topic_for("shop", "dev-2", "status"), to_json(status))
            assert _until(lambda: _count(pg_url, "device <> 'dev-3'") == len(messages))
            assert _until(lambda: fleet.counters().statuses == api_b.counters().statuses == 1)
            assert fleet.rollouts is not None
            # Connections that shared a login would throw each other off again and again
            # (each reconnects after 1 s): give that a few rounds to show.
            time.sleep(max(0.0, 4.0 - (time.monotonic() - started)))
            assert fleet.counters().connected and api_b.counters().connected
    finally:
        for c in devices.values():
            c.close()
    logged = [r.getMessage() for r in caplog.records] + capfd.readouterr().err.splitlines()
    assert not [line for line in logged if DROPPED in line or "ended (exit" in line], logged


def test_a_killed_worker_slot_logs_in_again_and_gets_its_session_back(
    secure_broker: SecureBroker, tmp_path: Path, pg_url: str
) -> None:
    sb = secure_broker
    config = _fleet_config(sb, tmp_path, pg_url, role="ingest", session_expiry_s=60)
    messages = [valid("dev-1", seq, seq, 1) for seq in range(400)]
    device = connect(sb, *sb.creds("shop/dev-1"))
    probes = connect(sb, *sb.creds("shop/dev-3"))
    try:
        with WorkerPool(config, 2) as pool:
            probe = iter(range(10_000))
            assert _until(lambda: _probe(probes, next(probe), pg_url))
            for topic, payload in messages[:100]:
                publish(device, topic, payload)
            os.kill(pool.pids()[0], signal.SIGKILL)
            # Its share of these waits in its session (fleet-0) until it is back.
            for topic, payload in messages[100:]:
                publish(device, topic, payload)
            assert _until(lambda: _count(pg_url, "device = 'dev-1'") == len(messages), 90)
            assert pool.restarts == 1
    finally:
        device.close()
        probes.close()


def test_a_worker_slot_without_an_account_is_refused_in_one_line(
    secure_broker: SecureBroker, tmp_path: Path
) -> None:
    config = _fleet_config(secure_broker, tmp_path, str(tmp_path / "f.duckdb"), role="ingest")
    IngestWorker(config, 2).start().stop()  # fleet-2: the last of the three made
    with pytest.raises(FleetError) as refused:
        IngestWorker(config, 3).start()
    message = str(refused.value)
    assert message.startswith(
        f"the MQTT broker at mqtts://fleet-3@127.0.0.1:{secure_broker.port} did not accept "
        "the fleet: Not authorized (the login fleet-3: check the password"
    ), message
    assert "\n" not in message and secure_broker.cfg.fleet_password not in message
    # The same through the command: one worker is slot 0, here of a user with no accounts.
    nobody = tmp_path / "nobody.pw"
    nobody.write_text(secure_broker.cfg.fleet_password + "\n")
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "edgetally",
            "fleet",
            "serve",
            "--role",
            "ingest",
            "--broker",
            f"mqtts://nobody@127.0.0.1:{secure_broker.port}",
            "--broker-password-file",
            str(nobody),
            "--ca",
            str(secure_broker.cfg.ca_cert),
            "--db",
            str(tmp_path / "f.duckdb"),
        ],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert done.returncode == 1
    assert done.stderr.splitlines()[-1].startswith(
        f"edgetally: error: the MQTT broker at mqtts://nobody-0@127.0.0.1:{secure_broker.port} "
        "did not accept the fleet: Not authorized (the login nobody-0: "
    ), done.stderr


def _count(pg_url: str, where: str) -> int:
    """How many aggregates the workers stored (``where`` holds)."""
    try:
        with psycopg.connect(pg_url, autocommit=True) as conn:
            row = conn.execute(f"SELECT count(*) FROM aggregates WHERE {where}").fetchone()
    except psycopg.errors.UndefinedTable:
        return 0
    return int(row[0]) if row else 0


def _probe(device: Client, seq: int, pg_url: str) -> bool:
    publish(device, *valid("dev-3", seq, seq, 1))
    time.sleep(0.1)
    return _count(pg_url, "device = 'dev-3'") > 0
