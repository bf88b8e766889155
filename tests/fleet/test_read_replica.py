"""Analyst reads from a PostgreSQL read replica (``fleet serve --read-url``): a real
streaming standby (``pg_basebackup -R``) of a throwaway primary, both on loopback."""

from __future__ import annotations

import json
import os
import pwd
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
from edgetally.fleet.config import FleetConfig
from edgetally.fleet.server import FleetServer
from edgetally.fleet.store.base import SchemaMissing, StoreError
from edgetally.fleet.store.connect import open_store
from edgetally.fleet.store.queries import counts
from edgetally.fleet.store.records import IngestBatch, Seen
from edgetally.fleet.store.replica import open_replica
from edgetally.models.wire import Aggregate
from edgetally.ports import free_port

from tests.conftest import Broker
from tests.fleet.conftest import PgServer, _pg_bin
from tests.fleet.ingest.test_fleet_ingest import publish_all, publisher, valid

pytestmark = pytest.mark.slow


def _until(predicate: Callable[[], bool], timeout: float = 60.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return predicate()


@dataclass
class Replicated:
    """A primary and its hot standby; :meth:`new_database` makes one on the primary and
    waits until the standby has it."""

    primary: PgServer
    standby_port: int

    def standby_url(self, db: str) -> str:
        return f"postgresql://edgetally@127.0.0.1:{self.standby_port}/{db}"

    def new_database(self) -> tuple[str, str]:
        url = self.primary.new_database()
        name = url.rsplit("/", 1)[1]
        replica = self.standby_url(name)

        def there() -> bool:
            try:
                with psycopg.connect(replica, connect_timeout=5):
                    return True
            except psycopg.OperationalError:
                return False

        assert _until(there), f"the standby never replayed CREATE DATABASE {name}"
        return url, replica


@pytest.fixture(scope="module")
def replicated() -> Iterator[Replicated]:
    bindir = _pg_bin()
    if bindir is None or not (bindir / "pg_basebackup").exists():
        pytest.skip("PostgreSQL server binaries missing: ./run install installs them")
    as_user: list[str] = []
    root = Path(tempfile.mkdtemp(prefix="edgetally-replica-"))
    if os.geteuid() == 0:  # initdb refuses root: run both clusters as the postgres user
        try:
            pw = pwd.getpwnam("postgres")
        except KeyError:
            pytest.skip("running as root and there is no postgres user to run PostgreSQL as")
        os.chmod(root, 0o755)
        os.chown(root, pw.pw_uid, pw.pw_gid)
        as_user = ["runuser", "-u", "postgres", "--"]
    port, standby_port = free_port(), free_port()
    primary = PgServer(bindir, root, port, as_user)
    ctl = str(bindir / "pg_ctl")
    started: list[Path] = []
    try:
        primary.run(
            str(bindir / "initdb"),
            "-D",
            str(root / "primary"),
            "-U",
            "edgetally",
            "-A",
            "trust",
            "-E",
            "UTF8",
        )
        common = f"-c listen_addresses=127.0.0.1 -k {root} -c fsync=off"
        primary.run(
            ctl,
            "-D",
            str(root / "primary"),
            "-w",
            "-l",
            str(root / "primary.log"),
            "-o",
            f"{common} -p {port} -c wal_level=replica -c max_wal_senders=4",
            "start",
        )
        started.append(root / "primary")
        # A hot standby streaming from the primary (-R writes its primary_conninfo).
        primary.run(
            str(bindir / "pg_basebackup"),
            "-h",
            "127.0.0.1",
            "-p",
            str(port),
            "-U",
            "edgetally",
            "-D",
            str(root / "standby"),
            "-R",
            "-X",
            "stream",
        )
        primary.run(
            ctl,
            "-D",
            str(root / "standby"),
            "-w",
            "-l",
            str(root / "standby.log"),
            "-o",
            f"{common} -p {standby_port} -c hot_standby=on",
            "start",
        )
        started.append(root / "standby")
        yield Replicated(primary, standby_port)
    finally:
        for data in reversed(started):
            subprocess.run(
                [*as_user, ctl, "-D", str(data), "-m", "fast", "stop"],
                capture_output=True,
                timeout=60,
            )
        shutil.rmtree(root, ignore_errors=True)


def _sql(url: str, text: str) -> list[tuple[Any, ...]]:
    with psycopg.connect(url, autocommit=True) as conn:
        cur = conn.execute(text)
        return list(cur.fetchall()) if cur.description is not None else []


def _wait_replayed(primary_url: str, replica_url: str) -> None:
    """Until the standby has replayed everything the primary wrote so far."""
    lsn = _sql(primary_url, "SELECT pg_current_wal_lsn()::text")[0][0]
    assert _until(
        lambda: (
            _sql(replica_url, f"SELECT pg_last_wal_replay_lsn() >= '{lsn}'::pg_lsn")[0][0] is True
        )
    )


def test_the_standby_is_a_standby(replicated: Replicated) -> None:
    _primary, replica = replicated.new_database()
    assert _sql(replica, "SELECT pg_is_in_recovery()") == [(True,)]


def test_read_only_store_makes_nothing_and_refuses_writes(
    replicated: Replicated, make_aggregates: Callable[..., list[Aggregate]]
) -> None:
    primary_url, replica_url = replicated.new_database()
    # A read-only store on a database without the schema: one line, and still no table
    # (checked on the primary, which would have taken the DDL).
    for url in (primary_url, replica_url):
        with pytest.raises(SchemaMissing, match="has no edgetally schema yet") as err:
            open_store(url, read_only=True)
        assert "\n" not in str(err.value)
    assert _sql(primary_url, "SELECT count(*) FROM pg_tables WHERE schemaname = 'public'") == [(0,)]

    primary = open_store(primary_url)  # makes the schema
    try:
        # Read-only on the primary itself: the session refuses the write, not the standby.
        ro = open_store(primary_url, read_only=True)
        try:
            aggs = make_aggregates(1, 3)
            batch = IngestBatch(
                aggregates=tuple(aggs), seen=tuple(Seen(a.site, a.device, a.start) for a in aggs)
            )
            with pytest.raises(StoreError, match="read-only transaction"):
                ro.write(batch)
            with pytest.raises(StoreError, match="read-only transaction"):
                ro.execute("DELETE FROM devices")
            with pytest.raises(StoreError, match="read-only transaction"):
                ro.execute("CREATE TABLE IF NOT EXISTS rollouts (id VARCHAR)")
            assert counts(ro) == counts(primary)
        finally:
            ro.close()
        tables = {r[0] for r in _sql(primary_url, "SELECT tablename FROM pg_tables")}
        assert "aggregates" in tables and "rollouts" not in tables
        # The standby, once replayed, opens read-only without a single write.
        replica = open_replica(replica_url, primary)
        try:
            assert replica.fetch("SHOW default_transaction_read_only").rows == [("on",)]
            assert counts(replica)["aggregates"] == 0
        finally:
            replica.close()
    finally:
        primary.close()


def test_an_older_schema_on_the_replica_is_named(replicated: Replicated) -> None:
    primary_url, replica_url = replicated.new_database()
    primary = open_store(primary_url)
    try:
        # As an older edgetally left it (the open store puts nothing back meanwhile).
        _sql(primary_url, "ALTER TABLE devices DROP COLUMN status_rank")
        _sql(primary_url, "DROP TABLE shelf")
        _wait_replayed(primary_url, replica_url)
        with pytest.raises(
            SchemaMissing,
            match=r"older edgetally schema \(missing: shelf, "
            r"devices\.status_rank\)",
        ):
            open_replica(replica_url, primary, wait_s=10)
    finally:
        primary.close()


def _traffic_in(api: str) -> int:
    r = httpx.get(api + "/api/v1/traffic", params={"interval": "day"}, timeout=30)
    assert r.status_code == 200, r.text
    return sum(int(row["in"]) for row in r.json()["rows"])


def _health(api: str) -> dict[str, Any]:
    body: dict[str, Any] = httpx.get(api + "/api/v1/health", timeout=30).json()
    return body


def test_the_api_answers_from_the_replica_once_replayed(
    replicated: Replicated, mosquitto: Broker
) -> None:
    primary_url, replica_url = replicated.new_database()
    # A fresh primary: the fleet makes the schema there, then waits for the standby to
    # replay it before it opens the standby read-only.
    config = FleetConfig.of(mosquitto.url, primary_url, "127.0.0.1:0", read_url=replica_url)
    pub = publisher(mosquitto.url)
    try:
        with FleetServer(config) as fleet:
            api = fleet.http_url
            assert fleet.read_store.description == replica_url
            assert fleet.store.description == primary_url
            read_only = fleet.read_store.fetch("SHOW default_transaction_read_only").rows
            assert read_only == [("on",)]
            publish_all(pub, [valid("cam1", seq, seq, 3) for seq in range(20)])
            assert _until(lambda: _traffic_in(api) == 60), "the replica never showed the rows"
            health = _health(api)
            assert health["ok"] is True and health["store"] == primary_url
            assert health["tables"]["aggregates"] == 20
            rep = health["replica"]
            assert rep["store"] == replica_url and rep["reachable"] is True
            assert rep["in_recovery"] is True and rep["replayed_at"] is not None

            # Replay paused: the primary has the new rows, the API (the replica) not yet;
            # health says how far behind it is.
            _sql(replica_url, "SELECT pg_wal_replay_pause()")
            try:
                publish_all(pub, [valid("cam2", seq, seq, 5) for seq in range(10)])
                assert _until(
                    lambda: _sql(primary_url, "SELECT count(*) FROM aggregates")[0][0] == 30
                )
                assert _traffic_in(api) == 60
                rep = _health(api)["replica"]
                assert rep["behind_bytes"] > 0 and rep["lag_s"] is not None and rep["lag_s"] >= 0
            finally:
                _sql(replica_url, "SELECT pg_wal_replay_resume()")
            assert _until(lambda: _traffic_in(api) == 110), "replay resumed, rows never came"
            assert _until(lambda: _health(api)["replica"]["behind_bytes"] == 0)
            assert _health(api)["replica"]["lag_s"] == 0.0
            # Devices (statuses and counters written on the primary) read from the replica.
            devices = httpx.get(api + "/api/v1/devices", timeout=30).json()["rows"]
            assert sorted(d["device"] for d in devices) == ["cam1", "cam2"]
        # `fleet query --db` opens read-only too, so it answers from the standby.
        out = subprocess.run(
            [
                sys.executable,
                "-m",
                "edgetally",
                "fleet",
                "query",
                "traffic",
                "--db",
                replica_url,
                "--interval",
                "day",
                "--json",
            ],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert out.returncode == 0, out.stderr
        assert sum(int(r["in"]) for r in json.loads(out.stdout)["rows"]) == 110
    finally:
        pub.disconnect()
        pub.loop_stop()


def _serve(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "edgetally",
            "fleet",
            "serve",
            "--broker",
            f"mqtt://127.0.0.1:{free_port()}",
            "--http",
            "127.0.0.1:0",
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )


def _one_line_error(out: subprocess.CompletedProcess[str]) -> str:
    assert out.returncode != 0 and "Traceback" not in out.stderr, out.stderr
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1, out.stderr
    assert lines[0].startswith("edgetally: error: ")
    return lines[0].removeprefix("edgetally: error: ")


def test_read_url_errors_are_one_line(
    replicated: Replicated, pg_server: PgServer, tmp_path: Path
) -> None:
    primary_url, replica_url = replicated.new_database()
    assert _one_line_error(_serve("--db", primary_url, "--read-url", "mysql://db/x")) == (
        "--read-url must be a postgresql:// URL of a read replica (got 'mysql://db/x')"
    )
    assert _one_line_error(
        _serve("--db", str(tmp_path / "f.duckdb"), "--read-url", replica_url)
    ).startswith("--read-url needs a PostgreSQL --db")
    assert _one_line_error(
        _serve("--role", "ingest", "--db", primary_url, "--read-url", replica_url)
    ).startswith("--read-url serves the API's reads")
    nowhere = f"postgresql://edgetally@127.0.0.1:{free_port()}/fleet"
    assert _one_line_error(_serve("--db", primary_url, "--read-url", nowhere)).startswith(
        f"the read replica: cannot connect to {nowhere}: "
    )
    # A database without the schema (not a standby, so nothing to wait for).
    empty = pg_server.new_database()
    assert _one_line_error(_serve("--db", primary_url, "--read-url", empty)) == (
        f"the read replica: {empty} has no edgetally schema yet: start the fleet once on "
        "the primary (it makes the schema) and let the replica replay it"
    )
    assert not (tmp_path / "f.duckdb").exists()
