"""The API protects the fleet from its own analysts: a few heavy queries at once (the rest
wait in a short line or are told to come back), reads cancelled after a time limit, and a
health check that says when ingest has stopped."""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from edgetally.fleet.http.app import create_app
from edgetally.fleet.http.context import FleetContext, HeavyQueries
from edgetally.fleet.ingest.mqtt import IngestCounters
from edgetally.fleet.store.base import Store
from edgetally.fleet.store.connect import open_store
from edgetally.fleet.store.records import Table
from edgetally.models.wire import Aggregate
from fastapi.testclient import TestClient

HEAVY = [
    "/api/v1/traffic",
    "/api/v1/occupancy",
    "/api/v1/dwell",
    "/api/v1/events",
    "/api/v1/audio",
    "/api/v1/shelf",
    "/api/v1/energy",
    "/api/v1/power",
    "/api/v1/traffic?format=csv",
    "/api/v1/dwell?format=parquet",
]


class GatedStore:
    """A real store whose reads of rows wait, while ``gate`` is closed, until the test
    opens it; ``entered`` counts reads that reached the store."""

    def __init__(self, inner: Store) -> None:
        self.inner = inner
        self.gate = threading.Event()
        self.gate.set()
        self.entered = threading.Semaphore(0)
        self.slow_sql: str | None = None

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def _wait(self) -> None:
        self.entered.release()
        assert self.gate.wait(60), "the test never opened the gate"

    def fetch(self, sql: str, params: Sequence[Any] = ()) -> Table:
        if "count(*)" not in sql:  # health's row counts never wait
            self._wait()
        return self.inner.fetch(self.slow_sql or sql, () if self.slow_sql else params)

    def fetch_arrow(self, sql: str, params: Sequence[Any] = ()) -> Table:
        self._wait()
        return self.inner.fetch_arrow(self.slow_sql or sql, () if self.slow_sql else params)


@pytest.fixture
def gated(
    tmp_path: Path,
    make_aggregates: Callable[..., list[Aggregate]],
    write_all: Callable[..., tuple[int, int]],
) -> Iterator[GatedStore]:
    store = open_store(str(tmp_path / "fleet.duckdb"))
    write_all(store, make_aggregates(n_devices=2, minutes=30))
    yield GatedStore(store)
    store.close()


def _client(store: GatedStore, **kwargs: Any) -> TestClient:
    ctx = FleetContext(store=store, **kwargs)
    return TestClient(create_app(ctx), raise_server_exceptions=False)


@dataclass
class Call:
    """A request made on its own thread; ``response`` once it answered."""

    thread: threading.Thread
    box: list[httpx.Response]

    @property
    def response(self) -> httpx.Response:
        self.thread.join(60)
        assert self.box, "the request never answered"
        return self.box[0]


def _start(client: TestClient, url: str) -> Call:
    box: list[httpx.Response] = []
    thread = threading.Thread(target=lambda: box.append(client.get(url)), daemon=True)
    thread.start()
    return Call(thread, box)


def _entered(store: GatedStore, n: int) -> None:
    for _ in range(n):
        assert store.entered.acquire(timeout=60), "a query never reached the store"


@pytest.mark.parametrize("url", HEAVY)
def test_past_the_cap_and_the_line_a_heavy_query_is_503_with_retry_after(
    gated: GatedStore, url: str
) -> None:
    heavy = HeavyQueries(2, max_waiting=0)
    with _client(gated, heavy=heavy) as client:
        gated.gate.clear()
        running = [_start(client, "/api/v1/traffic"), _start(client, "/api/v1/dwell")]
        _entered(gated, 2)
        refused = client.get(url)
        assert refused.status_code == 503
        assert int(refused.headers["retry-after"]) > 0
        detail = refused.json()["detail"]
        assert "heavy queries" in detail and "\n" not in detail
        # light reads are not held up by heavy ones
        assert client.get("/api/v1/health").status_code == 200
        gated.gate.set()
        assert [c.response.status_code for c in running] == [200, 200]
        assert heavy.running == 0
        assert client.get(url).status_code == 200  # the slots are free again


def test_a_heavy_query_waits_in_a_short_line_for_a_slot(gated: GatedStore) -> None:
    heavy = HeavyQueries(1, max_waiting=1)
    with _client(gated, heavy=heavy) as client:
        gated.gate.clear()
        first = _start(client, "/api/v1/traffic?interval=day")
        _entered(gated, 1)
        second = _start(client, "/api/v1/occupancy?interval=day")
        while heavy.waiting < 1:  # the second one is in line
            assert second.thread.is_alive()
            threading.Event().wait(0.01)
        third = client.get("/api/v1/dwell")  # the line is full
        assert third.status_code == 503 and "retry-after" in third.headers
        gated.gate.set()
        assert first.response.status_code == 200
        assert second.response.status_code == 200 and second.response.json()["rows"]


def test_a_query_past_the_time_limit_is_cancelled_with_a_one_line_504(
    gated: GatedStore,
) -> None:
    # the read that reaches the store runs for minutes unless it is really cancelled
    gated.slow_sql = "SELECT sum(a.range * b.range) FROM range(100000000) a, range(1000) b"
    with _client(gated, query_timeout_s=0.5) as client:
        for url in ("/api/v1/traffic?format=csv", "/api/v1/devices"):
            r = client.get(url)
            assert r.status_code == 504, r.text
            detail = r.json()["detail"]
            assert "limit of 0.5 s" in detail and "\n" not in detail
        gated.slow_sql = None
        assert client.get("/api/v1/traffic").status_code == 200  # the store still answers


def test_health_is_503_and_not_ok_when_ingest_has_stopped(gated: GatedStore) -> None:
    alive = {"running": True}

    def counters() -> IngestCounters:
        return dataclasses.replace(IngestCounters(), running=alive["running"], conflicts=2)

    with _client(gated, counters=counters) as client:
        up = client.get("/api/v1/health")
        assert up.status_code == 200
        body = up.json()
        assert body["ok"] is True and body["ingest"]["running"] is True
        assert body["ingest"]["conflicts"] == 2 and body["tables"]["aggregates"] > 0
        alive["running"] = False
        down = client.get("/api/v1/health")
        assert down.status_code == 503
        body = down.json()
        assert body["ok"] is False and body["ingest"]["running"] is False
        assert "ingest" in body["reason"]


def test_health_without_ingest_is_ok(gated: GatedStore) -> None:
    with _client(gated) as client:
        r = client.get("/api/v1/health")
        assert r.status_code == 200 and r.json()["ok"] is True and r.json()["ingest"] is None
