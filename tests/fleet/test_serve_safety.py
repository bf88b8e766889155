"""`fleet serve` keeps its secrets and its doors: no password in an error or a repr, the
broker password from a file, no open API on the network unless asked, tokens revoked
without a restart, dead letters kept for a while, not for ever."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from edgetally.fleet.addresses import BrokerAddress, parse_broker_url
from edgetally.fleet.config import FleetConfig
from edgetally.fleet.errors import FleetError
from edgetally.fleet.http.auth import add_token
from edgetally.fleet.server import FleetServer, delete_old_dead_letters
from edgetally.fleet.store.base import Store
from edgetally.fleet.store.connect import open_store
from edgetally.fleet.store.records import DeadLetter, IngestBatch
from edgetally.models.broker_url import redact_url

from tests.conftest import Broker
from tests.fleet.test_broker_support import start_secure_broker
from tests.runtime.uplink.test_publisher import wait_until


def edgetally(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "edgetally", *args], capture_output=True, text=True, timeout=120
    )


@pytest.mark.parametrize(
    "url",
    [
        "http://fleet:s3cret-pw@fleet.lan:8883",
        "mqtt://fleet:s3cret-pw@fleet.lan:port",
        "mqtt://fleet:s3cret/pw@fleet.lan:8883",
        "mqtts://fleet:s3cret-pw@fleet.lan:8883/path",
        "mqtt://fleet:s3cret-pw@",
    ],
)
def test_a_bad_broker_url_never_shows_its_password(url: str, tmp_path: Path) -> None:
    with pytest.raises(FleetError) as caught:
        parse_broker_url(url)
    message = str(caught.value)
    assert "s3cret" not in message and "fleet:***@" in message
    r = edgetally("fleet", "serve", "--broker", url, "--db", str(tmp_path / "f.duckdb"))
    assert r.returncode == 1 and "s3cret" not in r.stderr + r.stdout
    assert r.stderr.startswith("edgetally: error: invalid broker URL")


def test_no_secret_in_a_config_repr(tmp_path: Path) -> None:
    pw = tmp_path / "fleet.pw"
    pw.write_text("from-the-file\n")
    config = FleetConfig.of(
        "mqtts://fleet:in-the-url@fleet.lan:8883", "postgresql://fleet:db-secret@db:5432/fleet"
    )
    filed = FleetConfig.of(
        "mqtts://fleet@fleet.lan:8883", str(tmp_path / "f.duckdb"), broker_password_file=pw
    )
    assert filed.broker.password == "from-the-file"
    assert config.broker.password == "in-the-url"
    for text in (repr(config), str(config), repr(filed), repr(config.broker), str(filed.broker)):
        for secret in ("in-the-url", "db-secret", "from-the-file"):
            assert secret not in text
    assert "postgresql://fleet:***@db:5432/fleet" in repr(config)
    assert redact_url("mqtt://u:p@h:1") == "mqtt://u:***@h:1"


def test_the_broker_password_file_needs_a_user_and_only_one_password(tmp_path: Path) -> None:
    pw = tmp_path / "pw"
    pw.write_text("secret\n")
    with pytest.raises(FleetError, match="USER@"):
        FleetConfig.of("mqtt://fleet.lan", "f.duckdb", broker_password_file=pw)
    with pytest.raises(FleetError, match="give it once"):
        FleetConfig.of("mqtt://fleet:other@fleet.lan", "f.duckdb", broker_password_file=pw)
    with pytest.raises(FleetError, match="cannot read"):
        FleetConfig.of("mqtt://fleet@h", "f.duckdb", broker_password_file=tmp_path / "none")
    empty = tmp_path / "empty"
    empty.write_text("\n")
    with pytest.raises(FleetError, match="one line"):
        FleetConfig.of("mqtt://fleet@h", "f.duckdb", broker_password_file=empty)
    assert BrokerAddress("h", 1, username="u").with_password("p").password == "p"


@pytest.mark.slow
def test_the_fleet_logs_in_with_the_password_from_a_file(tmp_path: Path) -> None:
    sb = start_secure_broker(tmp_path, "shop1/a")
    try:
        pw = tmp_path / "fleet.pw"
        pw.write_text(sb.cfg.fleet_password + "\n")
        config = FleetConfig.of(
            f"mqtts://{sb.cfg.fleet_user}@127.0.0.1:{sb.port}",
            str(tmp_path / "fleet.duckdb"),
            "127.0.0.1:0",
            broker_password_file=pw,
            ca_file=str(sb.cfg.ca_cert),
        )
        with FleetServer(config) as fleet:
            assert fleet.ingestor.wait_until(lambda c: c.connected, 30)
    finally:
        sb.broker.stop()


def test_serve_refuses_an_open_api_on_the_network(tmp_path: Path) -> None:
    r = edgetally("fleet", "serve", "--http", "0.0.0.0:8080", "--db", str(tmp_path / "f.duckdb"))
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
    assert "--tokens" in r.stderr and "--insecure" in r.stderr
    for host in ("0.0.0.0", "192.168.1.10", "fleet.lan", "::"):
        with pytest.raises(FleetError, match="--tokens"):
            FleetConfig.of("mqtt://127.0.0.1", "f.duckdb", f"[{host}]:8080").check_exposure()
    for host in ("127.0.0.1", "localhost", "127.0.0.2", "::1"):
        FleetConfig.of("mqtt://127.0.0.1", "f.duckdb", f"[{host}]:8080").check_exposure()
    FleetConfig.of("mqtt://h", "f", "0.0.0.0:1", tokens_file="t.json").check_exposure()
    FleetConfig.of("mqtt://h", "f", "0.0.0.0:1", insecure=True).check_exposure()


@pytest.mark.slow
def test_insecure_serves_open_and_warns(
    tmp_path: Path, mosquitto: Broker, caplog: pytest.LogCaptureFixture
) -> None:
    config = FleetConfig.of(mosquitto.url, str(tmp_path / "f.duckdb"), "0.0.0.0:0")
    with pytest.raises(FleetError, match="--insecure"):
        FleetServer(config).start()
    config = FleetConfig.of(mosquitto.url, str(tmp_path / "f.duckdb"), "0.0.0.0:0", insecure=True)
    with caplog.at_level(logging.WARNING), FleetServer(config) as fleet:
        assert httpx.get(fleet.http_url + "/api/v1/devices").status_code == 200
    assert any("open to every machine" in r.getMessage() for r in caplog.records)


@pytest.mark.slow
def test_a_running_fleet_refuses_a_token_once_removed_from_its_file(
    tmp_path: Path, mosquitto: Broker
) -> None:
    tokens = tmp_path / "tokens.json"
    ann = add_token(tokens, "ann", "analyst")
    bob = add_token(tokens, "bob", "analyst")
    config = FleetConfig.of(
        mosquitto.url,
        str(tmp_path / "f.duckdb"),
        "0.0.0.0:0",
        tokens_file=str(tokens),
        max_heavy_queries=2,
        query_timeout_s=7.0,
    )
    with FleetServer(config) as fleet:
        ctx = fleet.app.state.fleet if fleet.app is not None else None
        assert ctx is not None and ctx.heavy.limit == 2 and ctx.query_timeout_s == 7.0
        url = fleet.http_url + "/api/v1/traffic"
        for token in (ann, bob):
            assert httpx.get(url, headers={"Authorization": f"Bearer {token}"}).status_code == 200
        body = json.loads(tokens.read_text())
        body["tokens"] = [t for t in body["tokens"] if t["name"] != "ann"]
        tokens.write_text(json.dumps(body))
        assert httpx.get(url, headers={"Authorization": f"Bearer {ann}"}).status_code == 401
        assert httpx.get(url, headers={"Authorization": f"Bearer {bob}"}).status_code == 200


def _dead(at: datetime, topic: str) -> DeadLetter:
    return DeadLetter(
        received_at=at, topic=topic, reason="bad JSON", payload_size=3, payload_head="{{{"
    )


def _topics(store: Store) -> set[str]:
    return {str(r[0]) for r in store.fetch("SELECT topic FROM dead_letters").rows}


def test_old_dead_letters_are_deleted(store_db: str) -> None:
    now = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
    store = open_store(store_db)
    try:
        store.write(
            IngestBatch(
                dead=(
                    _dead(now - timedelta(days=31), "old"),
                    _dead(now - timedelta(days=29), "recent"),
                    _dead(now, "new"),
                )
            )
        )
        delete_old_dead_letters(store, 30, now)
        assert _topics(store) == {"recent", "new"}
    finally:
        store.close()


@pytest.mark.slow
def test_the_fleet_deletes_old_dead_letters_at_start_and_then_periodically(
    tmp_path: Path, mosquitto: Broker
) -> None:
    db = str(tmp_path / "fleet.duckdb")
    now = datetime.now(UTC)
    store = open_store(db)
    store.write(IngestBatch(dead=(_dead(now - timedelta(days=40), "old"), _dead(now, "new"))))
    store.close()
    config = FleetConfig.of(
        mosquitto.url, db, "127.0.0.1:0", dead_letter_days=30.0, housekeeping_s=0.1
    )
    with FleetServer(config) as fleet:
        assert _topics(fleet.store) == {"new"}  # at start
        fleet.store.write(IngestBatch(dead=(_dead(now - timedelta(days=31), "later"),)))
        assert wait_until(lambda: _topics(fleet.store) == {"new"}, 30)
    store = open_store(db)
    store.write(IngestBatch(dead=(_dead(now - timedelta(days=400), "ancient"),)))
    store.close()
    kept = FleetConfig.of(mosquitto.url, db, "127.0.0.1:0", dead_letter_days=None)
    with FleetServer(kept) as fleet:  # no retention: kept for ever
        assert _topics(fleet.store) == {"new", "ancient"}


@pytest.mark.slow
def test_health_says_when_the_ingest_loop_has_stopped(tmp_path: Path, mosquitto: Broker) -> None:
    config = FleetConfig.of(mosquitto.url, str(tmp_path / "fleet.duckdb"), "127.0.0.1:0")
    with FleetServer(config) as fleet:
        up = httpx.get(fleet.http_url + "/api/v1/health")
        assert up.status_code == 200 and up.json()["ok"] is True
        ingest = up.json()["ingest"]
        assert ingest["running"] is True and ingest["conflicts"] == 0
        fleet.ingestor.stop()  # the loop ends: nothing is taken in any more
        down = httpx.get(fleet.http_url + "/api/v1/health")
        assert down.status_code == 503
        assert down.json()["ok"] is False and down.json()["ingest"]["running"] is False
