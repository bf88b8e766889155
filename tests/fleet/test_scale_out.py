"""Ingest scaled out: workers on an MQTT v5 shared subscription writing to one PostgreSQL,
the api process keeping device statuses in the broker's order, and what a dead worker's
broker session does."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import psycopg
import pytest
from edgetally.fleet.config import FleetConfig
from edgetally.fleet.server import FleetServer
from edgetally.fleet.workers import IngestWorker, WorkerPool
from edgetally.models.topics import DeviceId, SiteId, topic_for
from edgetally.models.wire import DeviceStatus, to_json
from edgetally.ports import free_port
from paho.mqtt.enums import CallbackAPIVersion

from tests.conftest import Broker, write_mosquitto_config
from tests.fleet.ingest.test_fleet_ingest import publish_all, publisher, valid

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]


def _rows(pg_url: str, sql: str) -> list[tuple[Any, ...]]:
    with psycopg.connect(pg_url, autocommit=True) as conn:
        return list(conn.execute(sql).fetchall())


def _stored(pg_url: str) -> int:
    try:
        n: int = _rows(pg_url, "SELECT count(*) FROM aggregates")[0][0]
    except psycopg.errors.UndefinedTable:  # no worker has made the schema yet
        return 0
    return n


def _wait(predicate: object, timeout: float = 60.0) -> bool:
    assert callable(predicate)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return bool(predicate())


@pytest.fixture
def sys_broker(tmp_path: Path) -> Iterator[Broker]:
    """A Mosquitto that publishes its $SYS counters every second."""
    port = free_port()
    conf = write_mosquitto_config(tmp_path / "sys.conf", port, "sys_interval 1\n")
    broker = Broker(port=port, config=conf)
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()


def _wait_subscribed(broker: Broker, n: int) -> bool:
    """Wait until the broker counts ``n`` shared subscriptions (the workers') in $SYS."""
    seen = [0]
    c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="sys-watch")

    def on_message(_c: Any, _u: Any, msg: mqtt.MQTTMessage) -> None:
        seen[0] = int(msg.payload)

    c.on_message = on_message
    c.connect("127.0.0.1", broker.port)
    c.subscribe("$SYS/broker/shared_subscriptions/count")
    c.loop_start()
    try:
        return _wait(lambda: seen[0] >= n)
    finally:
        c.loop_stop()
        c.disconnect()


def _messages(devices: int, per_device: int, first: int = 0) -> list[tuple[str, bytes]]:
    return [
        valid(f"dev-{d}", s, s, (d + s) % 7)
        for s in range(first, first + per_device)
        for d in range(devices)
    ]


def _status(device: str, state: str, at: datetime) -> bytes:
    return to_json(
        DeviceStatus(site=SiteId("shop"), device=DeviceId(device), at=at, state=state)  # type: ignore[arg-type]  # a literal state
    )


def test_two_workers_store_every_aggregate_once_with_counters_and_status_forward(
    mosquitto: Broker, pg_url: str
) -> None:
    config = FleetConfig.of(mosquitto.url, pg_url, "127.0.0.1:0", role="api")
    with (
        FleetServer(config) as api,
        IngestWorker(config, "worker-a") as a,
        IngestWorker(config, "worker-b") as b,
    ):
        messages = _messages(devices=5, per_device=120)
        replay = messages[::7]  # sent again: stored once, counted once
        # The status history of dev-0, watched while it is written: its rank never falls.
        ranks: list[int] = []
        watching = threading.Event()

        def watch() -> None:
            with psycopg.connect(pg_url, autocommit=True) as conn:
                while not watching.is_set():
                    rows = conn.execute(
                        "SELECT status_rank FROM devices WHERE device = 'dev-0'"
                    ).fetchall()
                    if rows and rows[0][0] is not None:
                        ranks.append(int(rows[0][0]))
                    time.sleep(0.01)

        watcher = threading.Thread(target=watch)
        watcher.start()
        c = publisher(mosquitto.url)
        t0 = datetime(2024, 6, 1, 10, 0, tzinfo=UTC)
        try:
            for i in range(0, len(messages), 100):
                publish_all(c, messages[i : i + 100])
                state = "online" if (i // 100) % 2 == 0 else "offline"
                publish_all(
                    c,
                    [
                        (
                            topic_for("shop", "dev-0", "status"),
                            _status("dev-0", state, t0 + timedelta(seconds=i)),
                        )
                    ],
                )
            publish_all(c, replay)
            # The last status is the oldest by its own clock (as a last will is): it wins.
            publish_all(
                c, [(topic_for("shop", "dev-0", "status"), _status("dev-0", "offline", t0))]
            )
        finally:
            c.loop_stop()
            c.disconnect()
        total = len(messages) + len(replay)
        n_status = len(range(0, len(messages), 100)) + 1
        assert _wait(
            lambda: (
                a.counters().processed + b.counters().processed >= total
                and _stored(pg_url) == len(messages)
                and api.counters().statuses == n_status
            )
        ), (str(a.counters().as_dict()), str(b.counters().as_dict()), str(api.counters().as_dict()))
        watching.set()
        watcher.join()
        ka, kb = a.counters(), b.counters()
        # the broker split the messages between the workers, each message to one of them
        assert ka.processed > 0 and kb.processed > 0
        assert ka.received + kb.received == total + n_status  # statuses reach them: left
        assert ka.aggregates_new + kb.aggregates_new == len(messages)
        assert ka.aggregates_duplicate + kb.aggregates_duplicate == len(replay)
        assert ka.statuses == kb.statuses == 0 and ka.ignored + kb.ignored == n_status
        dupes = _rows(
            pg_url,
            "SELECT count(*) FROM (SELECT 1 FROM aggregates GROUP BY site, device, epoch, seq "
            "HAVING count(*) > 1) AS d",
        )
        assert dupes[0][0] == 0
        per_device = dict(
            (str(r[0]), int(str(r[1])))
            for r in _rows(pg_url, "SELECT device, messages FROM devices ORDER BY device")
        )
        # stored rows, not deliveries: 120 aggregates each (statuses are not messages stored)
        assert per_device == {f"dev-{d}": 120 for d in range(5)}
        in_total = _rows(pg_url, "SELECT sum(in_count) FROM traffic_day")[0][0]
        assert in_total == sum((d + s) % 7 for s in range(120) for d in range(5))
        assert ranks == sorted(ranks) and len(set(ranks)) >= 2
        final = _rows(pg_url, "SELECT state, status_at FROM devices WHERE device = 'dev-0'")
        assert final == [("offline", t0.replace(tzinfo=None))]


def test_a_device_last_will_wins_over_its_newer_online_status(
    mosquitto: Broker, pg_url: str
) -> None:
    """The will carries the time it was registered, older than the online status sent
    after it; the broker publishes it last, and the fleet keeps it."""
    config = FleetConfig.of(mosquitto.url, pg_url, "127.0.0.1:0", role="api")
    registered = datetime.now(UTC) - timedelta(minutes=5)
    with FleetServer(config) as api:
        dev = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="edgetally-shop-cam-1")
        dev.will_set(
            topic_for("shop", "cam-1", "status"),
            _status("cam-1", "offline", registered),
            qos=1,
            retain=True,
        )
        dev.connect("127.0.0.1", mosquitto.port, keepalive=5)
        dev.loop_start()
        dev.publish(
            topic_for("shop", "cam-1", "status"),
            _status("cam-1", "online", datetime.now(UTC)),
            qos=1,
            retain=True,
        ).wait_for_publish(10)
        assert _wait(
            lambda: (
                _rows(pg_url, "SELECT state FROM devices WHERE device = 'cam-1'") == [("online",)]
            )
        )
        dev.loop_stop()
        sock = dev.socket()
        assert sock is not None
        sock.close()  # the device vanishes without a DISCONNECT: the broker sends its will
        assert _wait(
            lambda: (
                _rows(pg_url, "SELECT state FROM devices WHERE device = 'cam-1'") == [("offline",)]
            )
        )
        # The counters move once the write returns, a moment after its rows are visible.
        assert _wait(lambda: api.counters().statuses == 2)


def _worker_process(
    broker: Broker, pg_url: str, client_id: str, expiry: int
) -> subprocess.Popen[bytes]:
    code = (
        "import sys, threading\n"
        "from edgetally.fleet.config import FleetConfig\n"
        "from edgetally.fleet.workers import IngestWorker\n"
        f"c = FleetConfig.of({broker.url!r}, {pg_url!r}, '127.0.0.1:0', role='ingest', "
        f"session_expiry_s={expiry})\n"
        f"with IngestWorker(c, {client_id!r}):\n"
        "    print('ready', flush=True)\n"
        "    threading.Event().wait()\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, cwd=REPO)
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == b"ready"
    return proc


def test_a_killed_worker_that_returns_within_its_session_expiry_loses_nothing(
    mosquitto: Broker, pg_url: str
) -> None:
    config = FleetConfig.of(mosquitto.url, pg_url, "127.0.0.1:0", role="ingest")
    dead = _worker_process(mosquitto, pg_url, "worker-k", expiry=60)
    with IngestWorker(config, "worker-l") as alive:
        first = _messages(devices=4, per_device=50)
        c = publisher(mosquitto.url)
        try:
            publish_all(c, first)
            assert _wait(lambda: _stored(pg_url) == len(first))
            dead.send_signal(signal.SIGKILL)
            dead.wait(10)
            second = _messages(devices=4, per_device=50, first=50)
            publish_all(c, second)  # half of it is held for the dead worker
            assert _wait(lambda: alive.counters().processed > 0)
            time.sleep(0.5)
            held = len(first) + len(second) - _stored(pg_url)
            assert held > 0
            back = _worker_process(mosquitto, pg_url, "worker-k", expiry=60)
            try:
                assert _wait(lambda: _stored(pg_url) == len(first) + len(second))
            finally:
                back.terminate()
                back.wait(30)
        finally:
            c.loop_stop()
            c.disconnect()


def test_a_dead_worker_holds_its_share_only_until_its_session_expires(
    mosquitto: Broker, pg_url: str
) -> None:
    config = FleetConfig.of(mosquitto.url, pg_url, "127.0.0.1:0", role="ingest")
    dead = _worker_process(mosquitto, pg_url, "worker-x", expiry=1)
    with IngestWorker(config, "worker-y") as alive:
        dead.send_signal(signal.SIGKILL)
        dead.wait(10)
        time.sleep(3)  # past the dead worker's session expiry (1 s)
        messages = _messages(devices=4, per_device=50)
        c = publisher(mosquitto.url)
        try:
            publish_all(c, messages)
        finally:
            c.loop_stop()
            c.disconnect()
        # the whole stream reaches the one worker left: nothing was routed to the dead one
        assert _wait(lambda: _stored(pg_url) == len(messages))
        assert alive.counters().received == len(messages)


def test_a_pool_worker_killed_mid_run_is_restarted_and_nothing_is_lost(
    sys_broker: Broker, pg_url: str
) -> None:
    mosquitto = sys_broker
    config = FleetConfig.of(mosquitto.url, pg_url, "127.0.0.1:0", role="ingest", client_id="pool")
    messages = _messages(devices=10, per_device=100)
    with WorkerPool(config, 2) as pool:
        assert _wait_subscribed(mosquitto, 2)
        c = publisher(mosquitto.url)
        try:
            publish_all(c, messages[:500])
            os.kill(pool.pids()[0], signal.SIGKILL)
            publish_all(c, messages[500:])
        finally:
            c.loop_stop()
            c.disconnect()
        assert _wait(lambda: _stored(pg_url) == len(messages), timeout=90)
        assert pool.restarts == 1
    per_device = _rows(pg_url, "SELECT DISTINCT messages FROM devices")
    assert per_device == [(100,)]


def test_several_workers_on_duckdb_are_refused_in_one_line(tmp_path: Path) -> None:
    for role in ("ingest", "all"):
        cli = subprocess.run(
            [
                sys.executable,
                "-m",
                "edgetally",
                "fleet",
                "serve",
                "--role",
                role,
                "--workers",
                "2",
                "--db",
                str(tmp_path / "fleet.duckdb"),
            ],
            capture_output=True,
            text=True,
            timeout=120,
            cwd=REPO,
        )
        assert cli.returncode != 0
        lines = cli.stderr.strip().splitlines()
        assert len(lines) == 1, cli.stderr
        assert "DuckDB allows one process" in lines[0] and "postgresql://" in lines[0]


def test_fleet_serve_role_ingest_with_workers_stores_and_stops_on_sigterm(
    mosquitto: Broker, pg_url: str
) -> None:
    serve = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "edgetally",
            "fleet",
            "serve",
            "--role",
            "ingest",
            "--workers",
            "2",
            "--db",
            pg_url,
            "--broker",
            mosquitto.url,
            "--client-id",
            "cli-ingest",
        ],
        stderr=subprocess.PIPE,
        text=True,
        cwd=REPO,
    )
    try:
        assert serve.stderr is not None
        first = serve.stderr.readline()
        assert first.startswith("fleet: 2 ingest workers on $share/edgetally/edgetally/#"), first
        assert "session expiry 60 s" in first
        messages = _messages(devices=3, per_device=40)
        c = publisher(mosquitto.url)
        try:
            # A probe, sent again until stored, says the workers are subscribed (a
            # message sent before reaches nobody).
            seq = iter(range(10_000))

            def probed() -> bool:
                publish_all(c, [valid("probe", next(seq), 0, 1)])
                return _stored(pg_url) > 0

            assert _wait(probed)
            probes = _stored(pg_url)
            publish_all(c, messages)
        finally:
            c.loop_stop()
            c.disconnect()
        assert _wait(lambda: _stored(pg_url) >= probes + len(messages))
        assert _rows(pg_url, "SELECT count(*) FROM aggregates WHERE device <> 'probe'") == [
            (len(messages),)
        ]
    finally:
        serve.send_signal(signal.SIGTERM)
        _out, err = serve.communicate(timeout=60)
    assert serve.returncode == 0, err
    assert "fleet: ingest workers stopped" in err
