"""Both stores (a DuckDB file and a real PostgreSQL) give the same, correct answers."""

from __future__ import annotations

import io
import json
import random
from collections import defaultdict
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from edgetally.fleet.http.export import to_json, to_parquet, to_records
from edgetally.fleet.ingest.mqtt import dead_letter
from edgetally.fleet.store import queries, sql
from edgetally.fleet.store.base import Store, StoreError
from edgetally.fleet.store.connect import open_store
from edgetally.fleet.store.records import Filters, IngestBatch, Interval, Seen, Table
from edgetally.models.topics import DeviceId, SiteId
from edgetally.models.wire import Aggregate, DeviceStatus, PowerReading, Seq

T0 = datetime(2024, 5, 6, 8, 0, tzinfo=UTC)  # the start of the samples of conftest
MakeAggs = Callable[..., list[Aggregate]]
WriteAll = Callable[..., tuple[int, int]]


def expected_traffic(aggs: list[Aggregate], f: Filters) -> list[dict[str, object]]:
    width = {"minute": 60, "15min": 900, "hour": 3600, "day": 86400}[f.interval]
    sums: dict[tuple[datetime, str, str, str], list[int]] = defaultdict(lambda: [0, 0])
    for a in aggs:
        if (f.site and a.site != f.site) or (f.device and a.device != f.device):
            continue
        if f.line and a.line != f.line:
            continue
        if (f.start and a.start < f.start) or (f.end and a.start >= f.end):
            continue
        epoch = int(a.start.timestamp())
        bucket = datetime.fromtimestamp(epoch - epoch % width, UTC)
        s = sums[(bucket, a.site, a.device, a.line)]
        s[0] += a.in_count
        s[1] += a.out_count
    return [
        {
            "bucket": b.isoformat().replace("+00:00", "Z"),
            "site": site,
            "device": dev,
            "line": line,
            "in": v[0],
            "out": v[1],
        }
        for (b, site, dev, line), v in sorted(sums.items())
    ]


@pytest.fixture
def loaded(
    store_db: str, make_aggregates: MakeAggs, write_all: WriteAll
) -> Iterator[tuple[Store, list[Aggregate]]]:
    store = open_store(store_db)
    aggs = make_aggregates()
    write_all(store, aggs)
    yield store, aggs
    store.close()


@pytest.mark.slow
@pytest.mark.parametrize(
    "f",
    [
        Filters(interval="minute", device="dev-1", line="door"),
        Filters(interval="15min"),
        Filters(interval="hour", site="site-0"),
        Filters(interval="day"),
        Filters(
            interval="15min",
            start=T0 + timedelta(minutes=17),
            end=T0 + timedelta(minutes=95),
            line="queue",
        ),
        Filters(interval="hour", device="nobody"),
        Filters(interval="hour", start=T0 + timedelta(hours=1), end=T0 + timedelta(hours=2)),
        Filters(interval="hour", site="site-1", start=T0 + timedelta(minutes=30)),
        Filters(interval="day", line="door", end=T0 + timedelta(minutes=61)),
    ],
)
def test_traffic_matches_a_python_recount(
    loaded: tuple[Store, list[Aggregate]], f: Filters
) -> None:
    store, aggs = loaded
    got = to_records(queries.traffic(store, f))
    assert got == expected_traffic(aggs, f)
    if f.device != "nobody":
        assert got


@pytest.mark.slow
def test_redelivered_aggregates_never_count_twice(
    store_db: str, make_aggregates: MakeAggs, write_all: WriteAll
) -> None:
    store = open_store(store_db)
    try:
        aggs = make_aggregates(n_devices=2, minutes=30)
        assert write_all(store, aggs) == (len(aggs), 0)
        before = to_records(queries.traffic(store, Filters(interval="day")))
        # the same messages again, shuffled, some twice inside one batch
        again = aggs[::3] + aggs[::3] + aggs[5:40]
        random.Random(1).shuffle(again)
        new, dup = write_all(store, again, chunk=50)
        assert (new, dup) == (0, len(again))
        assert to_records(queries.traffic(store, Filters(interval="day"))) == before
        for interval in ("hour", "day"):  # the rollups did not count the redeliveries either
            f = Filters(interval=interval)
            assert queries.traffic_source(store, f) != "aggregates"
            assert queries.traffic(store, f) == queries.traffic(store, f, rollups=False)
        assert queries.counts(store)["aggregates"] == len(aggs)
        assert queries.counts(store)["events"] == sum(
            len(a.shelf_events) + len(a.audio_events) for a in aggs
        )
    finally:
        store.close()


@pytest.mark.parametrize(
    ("f", "source"),
    [
        (Filters(interval="day"), "traffic_day"),
        (Filters(interval="day", start=T0 - timedelta(hours=8)), "traffic_day"),
        (Filters(interval="day", start=T0), "traffic_hour"),
        (Filters(interval="hour", end=T0 + timedelta(hours=1)), "traffic_hour"),
        (Filters(interval="hour", start=T0 + timedelta(minutes=1)), "aggregates"),
        (Filters(interval="15min"), "aggregates"),
    ],
)
def test_traffic_reads_the_coarsest_rollup_that_is_exact(
    loaded: tuple[Store, list[Aggregate]], f: Filters, source: str
) -> None:
    store, _aggs = loaded
    assert queries.traffic_source(store, f) == source
    assert queries.traffic(store, f) == queries.traffic(store, f, rollups=False)


def test_a_file_from_before_the_rollups_gets_them(
    tmp_path: Path, make_aggregates: MakeAggs, write_all: WriteAll
) -> None:
    path = str(tmp_path / "old.duckdb")
    aggs = make_aggregates(n_devices=2, minutes=70)
    store = open_store(path)
    write_all(store, aggs)
    for table, _unit in sql.ROLLUPS:  # as a file written before the rollups existed
        store.execute(f"DROP TABLE {table}")
    store.close()
    f = Filters(interval="day")
    old = open_store(path, read_only=True)  # cannot build them: answers from the rows
    try:
        assert not old.has_rollups and queries.traffic_source(old, f) == "aggregates"
        assert to_records(queries.traffic(old, f)) == expected_traffic(aggs, f)
    finally:
        old.close()
    store = open_store(path)
    try:
        assert store.has_rollups and queries.traffic_source(store, f) == "traffic_day"
        assert to_records(queries.traffic(store, f)) == expected_traffic(aggs, f)
        n = store.fetch("SELECT count(*) FROM traffic_hour").rows[0][0]
        assert n == len({(a.start.replace(minute=0), a.device, a.line) for a in aggs})
    finally:
        store.close()


@pytest.mark.slow
def test_occupancy_and_dwell(loaded: tuple[Store, list[Aggregate]]) -> None:
    store, aggs = loaded
    f = Filters(interval="hour", device="dev-2", line="queue")
    occ = to_records(queries.occupancy(store, f))
    dw = to_records(queries.dwell(store, f))
    mine = [a for a in aggs if a.device == "dev-2" and a.line == "queue"]
    by_hour: dict[datetime, list[Aggregate]] = defaultdict(list)
    for a in mine:
        by_hour[a.start.replace(minute=0)].append(a)
    assert [r["bucket"] for r in occ] == [
        h.isoformat().replace("+00:00", "Z") for h in sorted(by_hour)
    ]
    for row, hour in zip(occ, sorted(by_hour), strict=True):
        group = by_hour[hour]
        mean = sum((a.occupancy_mean or 0) * a.seconds for a in group) / sum(
            a.seconds for a in group
        )
        assert row["occupancy_mean"] == pytest.approx(mean, abs=1e-3)
        assert row["occupancy_peak"] == max(a.occupancy_peak or 0 for a in group)
    for row in dw:
        hour = datetime.fromisoformat(str(row["bucket"]))
        dwells = [a.dwell for a in by_hour[hour] if a.dwell is not None]
        visits = sum(d.count for d in dwells)
        assert row["visits"] == visits
        med = sum(d.median_s * d.count for d in dwells) / visits
        assert row["median_s"] == pytest.approx(med, abs=1e-3)
        assert row["p90_s"] == pytest.approx(2 * med, abs=1e-3)


@pytest.mark.slow
def test_devices_power_and_dead_letters(store_db: str) -> None:
    store = open_store(store_db)
    try:
        now = datetime.now(UTC)
        status = DeviceStatus(
            site=SiteId("s1"),
            device=DeviceId("d1"),
            at=now,
            state="online",
            model="yolox_nano",
            backend="onnxruntime",
            fps=7.5,
            uptime_s=12.0,
            errors=2,
            last_error="camera reopened",
        )
        power = PowerReading(
            site=SiteId("s1"),
            device=DeviceId("d1"),
            seq=Seq(1),
            source="rapl",
            start=T0,
            seconds=60,
            wh=0.25,
            mean_w=15.0,
            measured=True,
        )
        bad = dead_letter("edgetally/v1/s1/d1/agg", b"\x00\xffnot json", "invalid JSON", now)
        r = store.write(
            IngestBatch(
                statuses=(status,),
                power=(power, power),
                seen=(Seen("s1", "d1", now), Seen("s1", "d1", now)),
                dead=(bad,),
            )
        )
        assert (r.power_new, r.power_duplicate, r.dead_letters) == (1, 1, 1)
        devs = to_records(queries.devices(store))
        assert len(devs) == 1
        d = devs[0]
        assert (d["device"], d["site"], d["online"], d["state"]) == ("d1", "s1", True, "online")
        assert (d["model"], d["backend"], d["fps"], d["errors"]) == (
            "yolox_nano",
            "onnxruntime",
            7.5,
            2,
        )
        # rows stored, not deliveries: the power reading once (not its redelivery, and a
        # status is no stored message)
        assert d["messages"] == 1
        # the last will: offline, even though its time is older
        lwt = status.model_copy(update={"state": "offline", "at": T0})
        store.write(IngestBatch(statuses=(lwt,), seen=(Seen("s1", "d1", now),)))
        d = to_records(queries.devices(store))[0]
        assert (d["online"], d["state"]) == (False, "offline")
        # silence makes a device offline too
        d2 = to_records(queries.devices(store, now=now + timedelta(hours=1)))[0]
        assert d2["online"] is False
        assert store.fetch("SELECT wh, mean_w, measured FROM power").rows == [(0.25, 15.0, True)]
        dl = to_records(queries.dead_letters(store))
        assert dl[0]["reason"] == "invalid JSON"
        assert dl[0]["payload_size"] == 10
        assert "\x00" not in str(dl[0]["payload_head"])
    finally:
        store.close()


def test_duckdb_in_use_by_another_process_is_a_clear_error(tmp_path: Path) -> None:
    import subprocess
    import sys

    db = tmp_path / "fleet.duckdb"
    open_store(str(db)).close()
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import duckdb, sys, time; c = duckdb.connect(sys.argv[1]); print('ok', flush=True);"
            " time.sleep(60)",
            str(db),
        ],
        stdout=subprocess.PIPE,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == b"ok"
        with pytest.raises(StoreError, match="in use"):
            open_store(str(db), read_only=True)
    finally:
        holder.kill()
        holder.wait()


@pytest.mark.parametrize(
    ("db", "needle"),
    [
        ("mysql://x/y", "unsupported database URL"),
        ("", "no database"),
        ("/nonexistent-folder/x.duckdb", "does not exist"),
    ],
)
def test_bad_database_arguments(db: str, needle: str) -> None:
    with pytest.raises(StoreError, match=needle):
        open_store(db)


def test_read_only_missing_file(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="no fleet database"):
        open_store(str(tmp_path / "absent.duckdb"), read_only=True)


@pytest.mark.slow
@pytest.mark.parametrize("interval", ["minute", "15min", "hour", "day"])
def test_answers_built_from_columns_equal_the_python_rows(
    loaded: tuple[Store, list[Aggregate]], interval: Interval
) -> None:
    store, _aggs = loaded
    f = Filters(interval=interval)
    for name in queries.QUERIES:
        table = queries.run_named(store, name, f)
        assert table.arrow is not None and len(table) > 0
        rows = Table(table.columns, list(table.rows))  # the same rows, without Arrow
        assert json.loads(to_json(table)) == json.loads(to_json(rows)) == {"rows": to_records(rows)}
        got = pq.read_table(io.BytesIO(to_parquet(table)))
        assert got.to_pylist() == pq.read_table(io.BytesIO(to_parquet(rows))).to_pylist()
        assert got.schema.field("bucket").type == pa.timestamp("us", tz="UTC")
    text = "SELECT device, count(*) AS n, sum(in_count) AS s FROM aggregates GROUP BY 1 ORDER BY 1"
    assert store.fetch_arrow(text).rows == store.fetch(text).rows


def test_json_from_columns_escapes_and_formats_like_python() -> None:
    when = datetime(2024, 5, 6, 8, 0)
    arrow = pa.table(
        {
            "bucket": pa.array([when, when + timedelta(microseconds=5), None]),
            "site": ['a"b\\c', "ünï\n", None],
            "n": pa.array([1, None, -3], pa.int32()),
            "x": [2.0, -0.0, 1.23456789],
            "ok": [True, False, None],
        }
    )
    table = Table(tuple(arrow.column_names), arrow=arrow)
    expected = {"rows": to_records(Table(table.columns, list(table.rows)))}
    assert json.loads(to_json(table)) == expected
    assert expected["rows"][1]["bucket"] == "2024-05-06T08:00:00.000005Z"
    assert [r["x"] for r in expected["rows"]] == [2.0, -0.0, 1.2346]
    # only whole seconds: the fast path writes the same text as the Python one
    whole = Table(("bucket", "x"), arrow=pa.table({"bucket": [when], "x": [3.0]}))
    assert to_json(whole) == b'{"rows":[{"bucket":"2024-05-06T08:00:00Z","x":3.0}]}'
    empty = Table(("a",), arrow=pa.table({"a": pa.array([], pa.int64())}))
    assert json.loads(to_json(empty)) == {"rows": []} and len(empty) == 0
    with pytest.raises(ValueError, match="JSON"):  # NaN is not JSON, either way
        to_json(Table(("x",), arrow=pa.table({"x": [float("nan")]})))


def same_answer(a: Table, b: Table) -> None:
    """Equal rows; floats equal to 1e-9 (sums in another order)."""
    assert a.columns == b.columns and len(a) == len(b) > 0
    for x, y in zip(a.rows, b.rows, strict=True):
        assert x[:4] == y[:4]  # bucket, site, device, line
        assert x[4:] == pytest.approx(y[4:], rel=1e-9, abs=1e-9)


@pytest.mark.slow
@pytest.mark.parametrize(
    "f",
    [
        Filters(interval="hour"),
        Filters(interval="day", line="queue"),
        Filters(interval="hour", device="dev-3", start=T0 + timedelta(hours=1)),
        Filters(interval="day", site="site-1", end=T0 + timedelta(hours=2)),
    ],
)
def test_occupancy_and_dwell_from_rollups_equal_the_raw_buckets(
    store_db: str, make_aggregates: MakeAggs, write_all: WriteAll, f: Filters
) -> None:
    store = open_store(store_db)
    try:
        aggs = make_aggregates(n_devices=4, minutes=150)
        # half the rows without zone stats: rollup groups mix NULL and values
        for i, a in enumerate(aggs):
            if i % 3 == 0:
                aggs[i] = a.model_copy(update={"occupancy_mean": None, "occupancy_peak": None})
            if i % 4 == 1:
                aggs[i] = aggs[i].model_copy(update={"dwell": None})
        write_all(store, aggs, chunk=37)  # an hour's rows over several batches: merged
        write_all(store, aggs[::7], chunk=13)  # redelivered: must add nothing
        assert queries.traffic_source(store, f) != "aggregates"
        for query in (queries.occupancy, queries.dwell):
            same_answer(query(store, f), query(store, f, rollups=False))
        occ = to_records(queries.occupancy(store, f))
        assert all(isinstance(r["occupancy_peak"], int) for r in occ)
        dw = to_records(queries.dwell(store, f))
        assert all(isinstance(r["visits"], int) for r in dw)
    finally:
        store.close()


def test_rollups_from_before_occupancy_and_dwell_get_them(
    tmp_path: Path, make_aggregates: MakeAggs, write_all: WriteAll
) -> None:
    path = str(tmp_path / "older.duckdb")
    store = open_store(path)
    write_all(store, make_aggregates(n_devices=2, minutes=70))
    for table, _unit in sql.ROLLUPS:  # as written before the rollups had zone columns
        for column, _kind, _expr in sql.ROLLUP_ZONE_COLUMNS:
            store.execute(f"ALTER TABLE {table} DROP COLUMN {column}")
    store.close()
    f = Filters(interval="day")
    old = open_store(path, read_only=True)
    try:
        assert not old.has_rollups and queries.traffic_source(old, f) == "aggregates"
        raw = queries.occupancy(old, f)
    finally:
        old.close()
    store = open_store(path)
    try:
        assert store.has_rollups and queries.traffic_source(store, f) == "traffic_day"
        same_answer(queries.occupancy(store, f), raw)
        same_answer(queries.dwell(store, f), queries.dwell(store, f, rollups=False))
    finally:
        store.close()


def test_columnar_fetch_keeps_every_value(store_db: str) -> None:
    store = open_store(store_db)
    try:
        values = (
            "SELECT * FROM (VALUES "
            "('a,\"b\"' || chr(10) || 'c', CAST(1 AS BIGINT), CAST(1.25 AS DOUBLE PRECISION), "
            "TRUE, TIMESTAMP '2024-05-06 08:00:00.000123', CAST(7 AS INTEGER)), "
            "('', NULL, NULL, FALSE, NULL, NULL), "
            "(NULL, CAST(-5 AS BIGINT), CAST(-0.5 AS DOUBLE PRECISION), NULL, "
            "TIMESTAMP '2024-05-06 08:00:00', CAST(-2 AS INTEGER)), "
            "('NULL', CAST(0 AS BIGINT), CAST(3 AS DOUBLE PRECISION), TRUE, NULL, NULL)"
            ") AS v(s, n, x, ok, t, i) ORDER BY n NULLS FIRST"
        )
        for text, params in (
            (values, ()),
            (
                "SELECT device, sum(in_count) AS s FROM aggregates WHERE device = ? GROUP BY 1",
                ("nobody",),
            ),  # empty, and a numeric sum on PostgreSQL
            ("SELECT CAST(sum(in_count) AS DECIMAL(10, 2)) AS d FROM aggregates", ()),
        ):
            got = store.fetch_arrow(text, params)
            want = store.fetch(text, params)
            assert got.columns == want.columns
            assert [
                tuple(float(v) if isinstance(v, Decimal) else v for v in row) for row in want.rows
            ] == got.rows
    finally:
        store.close()
