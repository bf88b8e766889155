"""``/api/v1/events`` and its query on both stores: sums of the aggregates' event counts."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from datetime import timedelta

from edgetally.fleet.http.app import create_app
from edgetally.fleet.http.context import FleetContext
from edgetally.fleet.store import queries
from edgetally.fleet.store.connect import open_store
from edgetally.fleet.store.records import Filters
from edgetally.models.wire import Aggregate
from fastapi.testclient import TestClient


def _expected(aggs: list[Aggregate], device: str | None = None) -> Counter[tuple[str, str, str]]:
    """(device, family, event) -> count, per hour bucket summed over the whole span."""
    want: Counter[tuple[str, str, str]] = Counter()
    for a in aggs:
        if device is not None and a.device != device:
            continue
        for family, counts in (("shelf", a.shelf_events), ("audio", a.audio_events)):
            for event, n in counts.items():
                want[(a.device, family, event)] += n
    return want


def test_events_sum_per_bucket_and_kind(
    store_db: str,
    make_aggregates: Callable[..., list[Aggregate]],
    write_all: Callable[..., tuple[int, int]],
) -> None:
    aggs = make_aggregates(3, 130)
    store = open_store(store_db)
    try:
        write_all(store, aggs)
        write_all(store, aggs[:50])  # redelivered: must not count twice
        table = queries.events(store, Filters(interval="hour"))
        assert table.columns == ("bucket", "site", "device", "family", "event", "count")
        got: Counter[tuple[str, str, str]] = Counter()
        buckets = set()
        for bucket, _site, device, family, event, n in table.rows:
            got[(device, family, event)] += int(n)
            buckets.add(bucket)
        assert got == _expected(aggs)
        assert len(buckets) == 3  # 130 one-minute buckets span three hours
        t0 = min(a.start for a in aggs)
        one = queries.events(
            store,
            Filters(device="dev-1", start=t0, end=t0 + timedelta(minutes=30), interval="minute"),
        )
        want_minutes = {
            a.start.replace(tzinfo=None)
            for a in aggs
            if a.device == "dev-1"
            and a.start < t0 + timedelta(minutes=30)
            and (a.shelf_events or a.audio_events)
        }
        assert {row[0] for row in one.rows} == want_minutes

        client = TestClient(create_app(FleetContext(store=store)))
        resp = client.get("/api/v1/events", params={"device": "dev-2", "interval": "day"})
        assert resp.status_code == 200
        rows = resp.json()["rows"]
        assert {(r["device"], r["family"], r["event"]): r["count"] for r in rows} == dict(
            _expected(aggs, "dev-2")
        )
        csv = client.get("/api/v1/events", params={"format": "csv", "interval": "day"})
        assert csv.status_code == 200 and csv.text.startswith("bucket,site,device,family")
        assert client.get("/api/v1/events", params={"interval": "week"}).status_code == 422
    finally:
        store.close()
