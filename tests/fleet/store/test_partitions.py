"""PostgreSQL raw tables partitioned by month: a store of the plain schema converted on
open, partitions made as rows arrive, and retention that drops raw months while the
rollups keep answering."""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest
from edgetally.fleet.http.export import to_records
from edgetally.fleet.store import queries, sql
from edgetally.fleet.store.base import Store
from edgetally.fleet.store.columns import stage
from edgetally.fleet.store.connect import open_store
from edgetally.fleet.store.partitions import lock_devices, raw_cutoff
from edgetally.fleet.store.records import Filters, IngestBatch, Seen
from edgetally.fleet.store.retention import drop_old_raw, partitions
from edgetally.fleet.store.sensors import SensorBatch, write_sensors
from edgetally.models.topics import DeviceId, SiteId
from edgetally.models.wire import (
    Aggregate,
    AudioLevels,
    CounterId,
    FacingCounts,
    PowerReading,
    Seq,
    ShelfState,
    SourceId,
)

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
            site=SiteId("site-0"),
            device=DeviceId("dev-0"),
            seq=Seq(10_000 + i),
            source="rapl",
            start=T0 + timedelta(days=10 * i),
            seconds=900,
            wh=0.5,
            mean_w=2.0,
            measured=True,
        )
        for i in range(10)
    ]


def _sensors(days: int = 100) -> SensorBatch:
    """One audio and one shelf message (two facings) a day from 20 January 2024."""
    audio = tuple(
        AudioLevels(
            site=SiteId("site-0"),
            device=DeviceId("mic-0"),
            source=SourceId("mic0"),
            seq=Seq(i),
            start=T0 + timedelta(days=i),
            seconds=900,
            duration_s=900.0,
            leq_dbfs=-30.0 - i % 7,
            laeq_dbfs=-32.0 - i % 7,
            events={"dog": i % 3},
        )
        for i in range(days)
    )
    shelf = tuple(
        ShelfState(
            site=SiteId("site-1"),
            device=DeviceId("shelf-0"),
            source=SourceId("cam0"),
            seq=Seq(i),
            start=T0 + timedelta(days=i),
            seconds=900,
            facings=tuple(
                FacingCounts(
                    region=CounterId("top"),
                    facing=CounterId(f"f{f}"),
                    facing_empty=(i + f) % 2,
                    restocked=i % 3,
                    empty_at_end=f == 0,
                )
                for f in range(2)
            ),
        )
        for i in range(days)
    )
    return SensorBatch(audio=audio, shelf=shelf)


def _sensor_rows(conn: Any) -> dict[str, list[tuple[Any, ...]]]:
    return {
        "audio": conn.execute(
            "SELECT site, device, seq, start, leq_dbfs, digest FROM audio ORDER BY seq"
        ).fetchall(),
        "shelf": conn.execute(
            "SELECT site, device, seq, facing, start, facing_empty, digest FROM shelf "
            "ORDER BY seq, facing"
        ).fetchall(),
    }


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
            ("aggregates", staged.aggregates),
            ("events", staged.events),
            ("power", staged.power),
        ):
            names = list(columns)
            with (
                conn.cursor() as cur,
                cur.copy(f"COPY {table} ({', '.join(names)}) FROM STDIN") as copy,
            ):
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
        assert counts == {"aggregates": len(aggs), "events": len(staged.events["seq"]), "power": 10}
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


def test_plain_audio_and_shelf_tables_are_partitioned_on_open_rows_kept(pg_url: str) -> None:
    # Written by a store whose audio and shelf tables were plain (as before they were
    # partitioned): made plain again here, rows and all, then opened.
    store = open_store(pg_url)
    try:
        write_sensors(store, _sensors())
    finally:
        store.close()
    with psycopg.connect(pg_url, autocommit=True) as conn:
        creates = {t.split("(", 1)[0].split()[-1]: t for t in sql.sensor_schema("DOUBLE PRECISION")}
        for table in ("audio", "shelf"):
            conn.execute(f"ALTER TABLE {table} RENAME TO {table}_old")
            conn.execute(creates[table])
            conn.execute(f"INSERT INTO {table} SELECT * FROM {table}_old")
            conn.execute(f"DROP TABLE {table}_old")
            assert _relkind(pg_url, table) == "r"
        before = _sensor_rows(conn)
    assert len(before["audio"]) == 100 and len(before["shelf"]) == 200
    store = open_store(pg_url)
    try:
        for table in ("audio", "shelf"):
            assert _relkind(pg_url, table) == "p"
            months = [m for _n, m in partitions(store, table)]
            assert months == [datetime(2024, m, 1) for m in range(1, 5)], table
        with psycopg.connect(pg_url, autocommit=True) as conn:
            assert _sensor_rows(conn) == before
            indexes = {
                str(r[0])
                for r in conn.execute(
                    "SELECT indexname FROM pg_indexes WHERE tablename IN ('audio', 'shelf')"
                ).fetchall()
            }
        assert {"audio_start_brin", "audio_device_start", "shelf_site_start"} <= indexes
        # redeliveries stay out, a new month gets its partitions
        again = write_sensors(store, _sensors())
        assert (again.audio_new, again.shelf_new) == (0, 0)
        late = _sensors(1)
        july = datetime(2024, 7, 3, tzinfo=UTC)
        late = SensorBatch(
            audio=(late.audio[0].model_copy(update={"seq": Seq(500), "start": july}),),
            shelf=(late.shelf[0].model_copy(update={"seq": Seq(500), "start": july}),),
        )
        r = write_sensors(store, late)
        assert (r.audio_new, r.shelf_new) == (1, 1)
        assert partitions(store, "audio")[-1][1] == datetime(2024, 7, 1)
        assert partitions(store, "shelf")[-1][1] == datetime(2024, 7, 1)
    finally:
        store.close()


def test_retention_drops_raw_months_and_the_rollups_answer_the_same(store_db: str) -> None:
    aggs = _aggregates()
    store = open_store(store_db)
    try:
        store.write(_batch(aggs))
        write_sensors(store, _sensors())
        before = _answers(store)
        now = datetime(2024, 4, 15, tzinfo=UTC)
        assert raw_cutoff(now, 2) == datetime(2024, 2, 1)
        gone = drop_old_raw(store, 2, now)  # January goes; February to April stay
        if store.dialect.name == "postgres":
            assert sorted(gone) == [
                f"{t}_p2024_01" for t in ("aggregates", "audio", "events", "power", "shelf")
            ]
            for table in ("aggregates", "audio", "shelf"):
                assert partitions(store, table)[0][1] == datetime(2024, 2, 1)
        else:
            assert gone == [
                f"{t} < 2024-02" for t in ("aggregates", "events", "power", "audio", "shelf")
            ]
        january = sum(1 for a in aggs if a.start < datetime(2024, 2, 1, tzinfo=UTC))
        assert january > 0
        left = store.fetch("SELECT count(*), min(start) FROM aggregates").rows[0]
        assert left[0] == len(aggs) - january
        assert left[1] == datetime(2024, 2, 1)
        assert store.fetch("SELECT count(*) FROM power").rows[0][0] == 8  # 2 in January
        # audio and shelf: a message a day from 20 January, so 12 January days go
        for table, per_day in (("audio", 1), ("shelf", 2)):
            left = store.fetch(f"SELECT count(*), min(start) FROM {table}").rows[0]
            assert (left[0], left[1]) == ((100 - 12) * per_day, datetime(2024, 2, 1)), table
        assert _answers(store) == before  # January by day and by hour: from the rollups
        assert drop_old_raw(store, 2, now) == []  # nothing more to drop
        with pytest.raises(ValueError, match="at least one month"):
            drop_old_raw(store, 0, now)
    finally:
        store.close()


def test_a_worker_storing_a_device_waits_for_another_storing_the_same(
    pg_url: str, wait: Callable[[Callable[[], bool], float], bool]
) -> None:
    """Two workers with the same key, other content, six months apart: neither can find
    the key absent while the other is storing it, so one row stays and the other is a
    conflict."""
    aggs = _aggregates(days=1, devices=1)
    first = aggs[0]
    other = first.model_copy(update={"start": first.start + timedelta(days=183), "in_count": 50})
    store = open_store(pg_url)
    try:
        store.prepare_months([first.start.replace(tzinfo=None), other.start.replace(tzinfo=None)])
        store.write(IngestBatch(seen=(Seen(first.site, first.device, first.start),)))
        row = stage(IngestBatch(aggregates=(first,))).aggregates
        lock = lock_devices([(first.site, first.device)])
        assert lock is not None
        results = []
        with psycopg.connect(pg_url) as worker:  # a worker amid storing ``first``
            locked = worker.execute(lock[0].replace("?", "%s"), lock[1]).fetchone()
            assert locked == (1,)
            worker.execute(
                f"INSERT INTO aggregates ({', '.join(row)}) "
                f"VALUES ({', '.join(['%s'] * len(row))})",
                [values[0] for values in row.values()],
            )
            other_worker = threading.Thread(
                target=lambda: results.append(store.write(IngestBatch(aggregates=(other,))))
            )
            other_worker.start()

            def waits_for_the_device() -> bool:
                with psycopg.connect(pg_url, autocommit=True) as conn:
                    return bool(
                        conn.execute(
                            "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                            "AND datname = current_database()"
                        ).fetchone()[0]  # type: ignore[index]
                    )

            assert wait(waits_for_the_device, 30)
            worker.commit()
            other_worker.join()
        assert (results[0].aggregates_new, results[0].conflicts) == (0, 1)
        stored = store.fetch("SELECT start, in_count FROM aggregates").rows
        assert stored == [(first.start.replace(tzinfo=None), first.in_count)]
    finally:
        store.close()
