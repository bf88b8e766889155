"""``/api/v1/health`` with a read replica that cannot be read: 503 and why (the reads of a
real standby are in tests/fleet/test_read_replica.py)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from edgetally.fleet.http.app import create_app
from edgetally.fleet.http.context import FleetContext
from edgetally.fleet.store.base import StoreError
from edgetally.fleet.store.connect import open_store
from edgetally.fleet.store.records import Table
from edgetally.fleet.store.sql import Dialect
from fastapi.testclient import TestClient


class _GoneReplica:
    """A replica store whose server went away: every read fails as PostgresStore's do."""

    description = "postgresql://reader@replica.example:5432/fleet"
    dialect = Dialect("postgres")
    has_rollups = True
    reads = 0

    def fetch(self, sql_text: str, params: Sequence[Any] = ()) -> Table:
        self.reads += 1
        raise StoreError(f"cannot connect to {self.description}: connection refused")

    fetch_arrow = fetch


def test_an_unreadable_replica_makes_health_503_and_analyst_reads_503(tmp_path: Path) -> None:
    primary = open_store(str(tmp_path / "fleet.duckdb"))
    replica = _GoneReplica()
    try:
        ctx = FleetContext(store=replica, primary=primary)  # type: ignore[arg-type]
        with TestClient(create_app(ctx), raise_server_exceptions=False) as client:
            r = client.get("/api/v1/health")
            assert r.status_code == 503
            body = r.json()
            assert body["store"] == primary.description  # where ingest writes
            assert body["tables"]["aggregates"] == 0  # counted on the primary
            assert body["replica"] == {
                "store": replica.description,
                "reachable": False,
                "error": f"cannot connect to {replica.description}: connection refused",
            }
            assert body["reason"] == (
                "the read replica cannot be read: cannot connect to "
                f"{replica.description}: connection refused"
            )
            # The analyst reads go to the replica, not to the primary.
            before = replica.reads
            r = client.get("/api/v1/traffic", params={"interval": "day"})
            assert r.status_code == 503 and "connection refused" in r.json()["detail"]
            assert replica.reads > before
    finally:
        primary.close()


def test_without_a_replica_health_has_no_replica_key(tmp_path: Path) -> None:
    store = open_store(str(tmp_path / "fleet.duckdb"))
    try:
        with TestClient(create_app(FleetContext(store=store))) as client:
            body = client.get("/api/v1/health").json()
        assert body["ok"] is True and "replica" not in body
        assert body["store"] == store.description
    finally:
        store.close()
