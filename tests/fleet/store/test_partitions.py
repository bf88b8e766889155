"""PostgreSQL raw tables partitioned by month: a store of the plain schema converted on
open, partitions made as rows arrive, and retention that drops raw months while the
rollups keep answering."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest
from edgetally.fleet.http.export import to_records
from edgetally.fleet.store import queries, sql
from edgetally.fleet.store.base import Store, open_store
from edgetally.fleet.store.columns import stage
from edgetally.fleet.store.partitions import drop_old_raw, partitions, raw_cutoff
from edgetally.fleet.store.records import Filters, IngestBatch, Seen
from edgetally.models.topics import DeviceId, SiteId
from edgetally.models.wire import Aggregate, CounterId, PowerReading, Seq, SourceId

T0 = datetime(2024, 1, 20, 0, 0, tzinfo=UTC)


def _aggregates(days: int = 100, devices: int = 3) -> list[Aggregate]:
    """One aggregate per device every 6 hours from 20 January 2024: four months."""
    out = []
    for d in range(devices):
        for i in range(days * 4):
            out.append(
                Aggregate(
                    site=SiteId(f"site-{d % 2}"),
                    device=DeviceId(f"dev-{d}"),
                    source=SourceId("cam0"),
                    line=CounterId("door"),
                    seq=Seq(i),
                    start=T0 + timedelta(hours=6 * i),
                    seconds=900,
                    in_count=(i * 7 + d) % 11,
                    out_count=(i * 3 + d) % 5,
                    occupancy_mean=float(i % 4),
                    occupancy_peak=i % 4 + 1,
                    shelf_events={"gap_opened": 1} if i % 9 == 0 else {},
                )
            )
    return out


def _power() -> list[PowerReading]:
    return [
        PowerReading(
            site=SiteId("site-0"), device=DeviceId("dev-0"), seq=Seq(10_000 + i), source="rapl",
            start=T0 + timedelta(days=10 * i), seconds=900, wh=0.5, mean_w=2.0, measured=True,
        )
        for i in range(10)
    ]


def _batch(aggs: list[Aggregate]) -> IngestBatch:
    return IngestBatch(
        aggregates=tuple(aggs),
        power=tuple(_power()),
        seen=tuple(Seen(a.site, a.device, a.start) for a in aggs),
    )


def _answers(store: Store) -> dict[str, Any]:
    """What analysts read through the rollups: traffic by day and by hour, occupancy."""
    whole = Filters(start=T0, end=T0 + timedelta(days=100), interval="day")
    hourly = Filters(start=T0, end=T0 + timedelta(days=5), interval="hour", site="site-0")
    return {
        "day": to_records(queries.traffic(store, whole, group="fleet")),
        "hour": to_records(queries.traffic(store, hourly)),
        "occupancy": to_records(queries.run_named(store, "occupancy", whole, group="site")),
    }


def _relkind(url: str, table: str) -> str:
    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute("SELECT relkind FROM pg_class WHERE relname = %s", [table]).fetchone()
    assert row is not None
    return str(row[0])


def test_a_store_of_the_plain_schema_is_partitioned_on_open(pg_url: str) -> None:
    aggs = _aggregates()
    batch = _batch(aggs)
    # The store as it was before partitions: plain tables, the rows loaded directly.
    staged = stage(batch)
    with psycopg.connect(pg_url, autocommit=True) as conn:
        for statement in sql.schema("DOUBLE PRECISION"):
            conn.execute(statement)
        conn.execute("ALTER TABLE devices DROP COLUMN status_rank")  # (added since)
        conn.execute("CREATE INDEX aggregates_start ON aggregates (start)")
        for table, columns in (
            ("aggregates", staged.aggregates), ("events", staged.events),
            ("power", staged.power),
        ):
            names = list(columns)
            with conn.cursor() as cur, cur.copy(
                f"COPY {table} ({', '.join(names)}) FROM STDIN"
            ) as copy:
                for row in zip(*(columns[n] for n in names), strict=True):
                    copy.write_row(row)
    assert _relkind(pg_url, "aggregates") == "r"
    reference = open_store(":memory:")
    reference.write(batch)
    store = open_store(pg_url)  # converts, and builds the rollups the old store lacked
    try:
        for table in ("aggregates", "events", "power"):
            assert _relkind(pg_url, table) == "p"
            months = [m for _n, m in partitions(store, table)]
            assert months == [datetime(2024, m, 1) for m in range(1, 5)], table
        counts = {
            t: store.fetch(f"SELECT count(*) FROM {t}").rows[0][0]
            for t in ("aggregates", "events", "power")
        }
        assert counts == {
            "aggregates": len(aggs), "events": len(staged.events["seq"]), "power": 10
        }
        assert _answers(store) == _answers(reference)
        # the keys still keep redeliveries out, in every month
        again = store.write(batch)
        assert (again.aggregates_new, again.aggregates_duplicate) == (0, len(aggs))
        assert (again.power_new, again.power_duplicate) == (0, 10)
        # a new month gets its partition when its first rows come
        july = datetime(2024, 7, 3, tzinfo=UTC)
        late = aggs[0].model_copy(update={"seq": Seq(99_999), "start": july})
        assert store.write(IngestBatch(aggregates=(late,))).aggregates_new == 1
        assert partitions(store, "aggregates")[-1][1] == datetime(2024, 7, 1)
        # a conflict (a stored key, other content) in the next month is kept out too
        clash = aggs[5].model_copy(update={"start": aggs[5].start + timedelta(days=20)})
        r = store.write(IngestBatch(aggregates=(clash,)))
        assert (r.aggregates_new, r.conflicts) == (0, 1)
    finally:
        store.close()
        reference.close()


def test_retention_drops_raw_months_and_the_rollups_answer_the_same(store_db: str) -> None:
    aggs = _aggregates()
    store = open_store(store_db)
    try:
        store.write(_batch(aggs))
        before = _answers(store)
        now = datetime(2024, 4, 15, tzinfo=UTC)
        assert raw_cutoff(now, 2) == datetime(2024, 2, 1)
        gone = drop_old_raw(store, 2, now)  # January goes; February to April stay
        if store.dialect.name == "postgres":
            assert sorted(gone) == ["aggregates_p2024_01", "events_p2024_01", "power_p2024_01"]
            assert partitions(store, "aggregates")[0][1] == datetime(2024, 2, 1)
        else:
            assert gone == ["aggregates < 2024-02", "events < 2024-02", "power < 2024-02"]
        january = sum(1 for a in aggs if a.start < datetime(2024, 2, 1, tzinfo=UTC))
        assert january > 0
        left = store.fetch("SELECT count(*), min(start) FROM aggregates").rows[0]
        assert left[0] == len(aggs) - january
        assert left[1] == datetime(2024, 2, 1)
        assert store.fetch("SELECT count(*) FROM power").rows[0][0] == 8  # 2 in January
        assert _answers(store) == before  # January by day and by hour: from the rollups
        assert drop_old_raw(store, 2, now) == []  # nothing more to drop
        with pytest.raises(ValueError, match="at least one month"):
            drop_old_raw(store, 0, now)
    finally:
        store.close()
