"""Nothing a device sends, resends or forgets can stop the fleet or lose a count.

- a time that overflows UTC or lies outside the fleet's window is a dead letter, and
  ingest goes on (a hypothesis property through a real Mosquitto, retained and not);
- a device is its site and its name: two shops' ``cam1`` are two devices;
- a new outbox (re-imaged device) is a new epoch, never taken for redeliveries;
- the same (site, device, epoch, seq) with other content is a recorded conflict;
- a store of the previous schema is migrated on open, its answers unchanged.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import duckdb
import httpx
import paho.mqtt.client as mqtt
import pytest
from edgetally.fleet.config import FleetConfig
from edgetally.fleet.http.export import to_records
from edgetally.fleet.server import FleetServer
from edgetally.fleet.store import queries
from edgetally.fleet.store.base import Store
from edgetally.fleet.store.connect import open_store
from edgetally.fleet.store.records import Filters, IngestBatch, Seen
from edgetally.fleet.store.sensors import SensorBatch, write_sensors
from edgetally.models.topics import DeviceId, SiteId, topic_for
from edgetally.models.wire import (
    Aggregate,
    AudioLevels,
    CounterId,
    Epoch,
    FacingCounts,
    PowerReading,
    Seq,
    ShelfState,
    SourceId,
    to_json,
)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from paho.mqtt.enums import CallbackAPIVersion

if TYPE_CHECKING:  # the fleet's tests import the device's runtime only where they use it
    from edgetally.runtime.uplink.outbox import PayloadBuilder

T0 = datetime(2024, 6, 1, 10, 0, tzinfo=UTC)
EPOCH = Epoch("00aa11bb22cc33dd")


def agg(
    site: str,
    device: str,
    seq: int,
    n_in: int,
    *,
    epoch: str | None = "00aa11bb22cc33dd",
    minute: int | None = None,
) -> Aggregate:
    return Aggregate(
        site=SiteId(site),
        device=DeviceId(device),
        source=SourceId("cam0"),
        line=CounterId("door"),
        epoch=None if epoch is None else Epoch(epoch),
        seq=Seq(seq),
        start=T0 + timedelta(minutes=seq if minute is None else minute),
        seconds=60,
        in_count=n_in,
        out_count=1,
    )


def seen(*aggs: Aggregate) -> tuple[Seen, ...]:
    return tuple(Seen(a.site, a.device, T0) for a in aggs)


@pytest.fixture
def store(store_db: str) -> Iterator[Store]:
    s = open_store(store_db)
    try:
        yield s
    finally:
        s.close()


def totals(store: Store) -> dict[tuple[str, str], int]:
    rows = to_records(queries.traffic(store, Filters(interval="day")))
    out: dict[tuple[str, str], int] = {}
    for r in rows:
        key = (str(r["site"]), str(r["device"]))
        out[key] = out.get(key, 0) + int(r["in"])
    return out


# --------------------------------------------------------------------------- identity


def test_two_sites_with_the_same_device_name_are_two_devices(store: Store) -> None:
    a = [agg("shopA", "cam1", s, 2) for s in range(5)]
    b = [agg("shopB", "cam1", s, 3) for s in range(5)]
    r = store.write(IngestBatch(aggregates=(*a, *b), seen=seen(*a, *b)))
    assert (r.aggregates_new, r.aggregates_duplicate) == (10, 0)
    assert totals(store) == {("shopA", "cam1"): 10, ("shopB", "cam1"): 15}
    devices = to_records(queries.devices(store))
    assert sorted((d["site"], d["device"]) for d in devices) == [
        ("shopA", "cam1"),
        ("shopB", "cam1"),
    ]
    # a device filter alone spans both sites; with the site, one
    both = to_records(queries.traffic(store, Filters(device="cam1", interval="day")))
    assert sum(int(r["in"]) for r in both) == 25


def test_a_new_outbox_is_a_new_stream_not_redeliveries(store: Store) -> None:
    old = [agg("shop", "cam1", s, 1, epoch="1111111111111111") for s in range(5)]
    store.write(IngestBatch(aggregates=tuple(old), seen=seen(*old)))
    # re-imaged: seq starts at 0 again, under a new epoch
    new = [agg("shop", "cam1", s, 4, epoch="2222222222222222", minute=60 + s) for s in range(5)]
    r = store.write(IngestBatch(aggregates=tuple(new), seen=seen(*new)))
    assert (r.aggregates_new, r.aggregates_duplicate, r.conflicts) == (5, 0, 0)
    assert totals(store) == {("shop", "cam1"): 5 + 20}
    # a redelivery of either stream still counts once
    r = store.write(IngestBatch(aggregates=(old[2], new[3]), seen=seen(old[2])))
    assert (r.aggregates_new, r.aggregates_duplicate, r.conflicts) == (0, 2, 0)
    assert totals(store) == {("shop", "cam1"): 25}


def test_a_conflicting_redelivery_keeps_the_first_and_is_recorded(store: Store) -> None:
    first = agg("shop", "cam1", 7, 3)
    store.write(IngestBatch(aggregates=(first,), seen=seen(first)))
    other = first.model_copy(update={"in_count": 99})
    twin = first.model_copy(update={"in_count": 50})
    # stored before, and twice inside one batch with different content
    r = store.write(IngestBatch(aggregates=(other, agg("shop", "cam1", 8, 1), twin)))
    assert r.aggregates_new == 1
    assert r.conflicts == 2
    assert totals(store) == {("shop", "cam1"): 3 + 1}
    letters = to_records(queries.dead_letters(store, limit=10))
    reasons = [str(d["reason"]) for d in letters]
    assert len(reasons) == 2 and all(x.startswith("conflict: agg shop/cam1") for x in reasons)
    assert all("the first is kept" in x and "seq 7" in x for x in reasons)
    device = to_records(queries.devices(store))[0]
    assert device["conflicts"] == 2
    # the same content again is a plain redelivery, no conflict
    r = store.write(IngestBatch(aggregates=(first,)))
    assert (r.aggregates_duplicate, r.conflicts) == (1, 0)


def test_power_audio_and_shelf_conflicts_are_recorded(store: Store) -> None:
    power = PowerReading(
        site=SiteId("shop"),
        device=DeviceId("cam1"),
        epoch=EPOCH,
        seq=Seq(0),
        source="rapl",
        start=T0,
        seconds=60,
        wh=1.0,
        mean_w=60.0,
        measured=True,
    )
    audio = AudioLevels(
        site=SiteId("shop"),
        device=DeviceId("cam1"),
        source=SourceId("mic0"),
        epoch=EPOCH,
        seq=Seq(3),
        start=T0,
        seconds=60,
        duration_s=60.0,
        leq_dbfs=-30.0,
        laeq_dbfs=-32.0,
    )
    r = store.write(IngestBatch(power=(power,), seen=seen(agg("shop", "cam1", 0, 0))))
    assert r.power_new == 1
    r = store.write(IngestBatch(power=(power.model_copy(update={"wh": 2.0}),)))
    assert (r.power_new, r.conflicts) == (0, 1)
    s = write_sensors(store, SensorBatch(audio=(audio,)))
    assert (s.audio_new, s.conflicts) == (1, 0)
    s = write_sensors(store, SensorBatch(audio=(audio.model_copy(update={"leq_dbfs": -3.0}),)))
    assert (s.audio_new, s.audio_duplicate, s.conflicts) == (0, 1, 1)
    s = write_sensors(store, SensorBatch(audio=(audio,)))  # a redelivery: no conflict
    assert (s.audio_duplicate, s.conflicts) == (1, 0)
    assert to_records(queries.devices(store))[0]["conflicts"] == 2
    level = store.fetch("SELECT leq_dbfs FROM audio").rows
    assert level == [(-30.0,)]


def test_a_conflict_six_months_away_is_a_dead_letter_not_a_second_row(store: Store) -> None:
    """On PostgreSQL the raw tables are partitioned by month and their primary key holds
    ``start``: the key is still one message, whatever month the other content claims."""
    far = timedelta(days=183)
    first = agg("shop", "cam1", 7, 3)
    power = PowerReading(
        site=SiteId("shop"),
        device=DeviceId("cam1"),
        epoch=EPOCH,
        seq=Seq(0),
        source="rapl",
        start=T0,
        seconds=60,
        wh=1.0,
        mean_w=60.0,
        measured=True,
    )
    audio = AudioLevels(
        site=SiteId("shop"),
        device=DeviceId("cam1"),
        source=SourceId("mic0"),
        epoch=EPOCH,
        seq=Seq(3),
        start=T0,
        seconds=60,
        duration_s=60.0,
        leq_dbfs=-30.0,
        laeq_dbfs=-32.0,
        events={"dog": 1},
    )
    shelf = ShelfState(
        site=SiteId("shop"),
        device=DeviceId("cam1"),
        source=SourceId("cam0"),
        epoch=EPOCH,
        seq=Seq(4),
        start=T0,
        seconds=60,
        facings=(
            FacingCounts(
                region=CounterId("top"),
                facing=CounterId("f0"),
                restocked=1,
                empty_at_end=True,
            ),
        ),
    )
    store.write(IngestBatch(aggregates=(first,), power=(power,), seen=seen(first)))
    write_sensors(store, SensorBatch(audio=(audio,), shelf=(shelf,)))
    later = {"start": T0 + far}
    r = store.write(
        IngestBatch(
            aggregates=(first.model_copy(update={**later, "in_count": 40}),),
            power=(power.model_copy(update={**later, "wh": 9.0}),),
        )
    )
    assert (r.aggregates_new, r.power_new, r.conflicts) == (0, 0, 2)
    s = write_sensors(
        store,
        SensorBatch(
            audio=(audio.model_copy(update={**later, "leq_dbfs": -10.0}),),
            shelf=(shelf.model_copy(update=later),),
        ),
    )
    assert (s.audio_new, s.shelf_new, s.conflicts) == (0, 0, 2)
    # a redelivery of the first, six months before the other, is still a duplicate
    r = store.write(IngestBatch(aggregates=(first,)))
    assert (r.aggregates_new, r.aggregates_duplicate, r.conflicts) == (0, 1, 0)
    for table, message in (
        ("aggregates", first),
        ("power", power),
        ("audio", audio),
        ("shelf", shelf),
    ):
        rows = store.fetch(f"SELECT start FROM {table}").rows
        assert rows == [(message.start.replace(tzinfo=None),)], table
    events = store.fetch("SELECT family, start FROM events ORDER BY family").rows
    assert events == [("audio", T0.replace(tzinfo=None)), ("shelf", T0.replace(tzinfo=None))]
    assert totals(store) == {("shop", "cam1"): 3}
    letters = to_records(queries.dead_letters(store, limit=10))
    kinds = sorted(str(d["reason"]).split()[1] for d in letters)
    assert kinds == ["agg", "audio", "power", "shelf"]
    assert to_records(queries.devices(store))[0]["conflicts"] == 4


def test_a_conflict_delivered_again_counts_once(store: Store) -> None:
    """The devices' ``conflicts`` count distinct conflicts: a conflicting message delivered
    three times (a QoS 1 redelivery, two workers both receiving it) is one dead letter and
    one conflict; another conflicting content for the same key is a second."""
    first = agg("shop", "cam1", 7, 3)
    audio = AudioLevels(
        site=SiteId("shop"),
        device=DeviceId("cam2"),
        source=SourceId("mic0"),
        epoch=EPOCH,
        seq=Seq(3),
        start=T0,
        seconds=60,
        duration_s=60.0,
        leq_dbfs=-30.0,
        laeq_dbfs=-32.0,
    )
    store.write(IngestBatch(aggregates=(first,), seen=seen(first, agg("shop", "cam2", 0, 0))))
    write_sensors(store, SensorBatch(audio=(audio,)))
    clash = first.model_copy(update={"in_count": 99})
    loud = audio.model_copy(update={"leq_dbfs": -3.0})
    store.write(IngestBatch(aggregates=(clash, clash)))  # twice in one batch
    store.write(IngestBatch(aggregates=(clash,)))  # and once more
    for _ in range(3):
        write_sensors(store, SensorBatch(audio=(loud,)))

    def counted() -> tuple[dict[str, int], int]:
        rows = to_records(queries.devices(store))
        devices = {str(d["device"]): int(d["conflicts"]) for d in rows}
        letters = len(to_records(queries.dead_letters(store, limit=100)))
        return devices, letters

    assert counted() == ({"cam1": 1, "cam2": 1}, 2)
    # another content for the same keys: a second conflict each
    store.write(IngestBatch(aggregates=(first.model_copy(update={"in_count": 5}),)))
    write_sensors(store, SensorBatch(audio=(audio.model_copy(update={"leq_dbfs": -9.0}),)))
    assert counted() == ({"cam1": 2, "cam2": 2}, 4)
    assert totals(store) == {("shop", "cam1"): 3}
    assert store.fetch("SELECT leq_dbfs FROM audio").rows == [(-30.0,)]


# --------------------------------------------------------------------------- migration

# The keyed tables as the previous schema (version 1) created them: keys on (device, seq),
# the devices table on device alone.
V1_SCHEMA = (
    """CREATE TABLE aggregates (
        device VARCHAR NOT NULL, seq BIGINT NOT NULL,
        site VARCHAR NOT NULL, source VARCHAR NOT NULL, line VARCHAR NOT NULL,
        start TIMESTAMP NOT NULL, seconds INTEGER NOT NULL,
        in_count INTEGER NOT NULL, out_count INTEGER NOT NULL,
        occupancy_mean DOUBLE PRECISION, occupancy_peak INTEGER,
        dwell_count INTEGER, dwell_median_s DOUBLE PRECISION, dwell_p90_s DOUBLE PRECISION,
        received_at TIMESTAMP NOT NULL, PRIMARY KEY (device, seq))""",
    """CREATE TABLE events (
        device VARCHAR NOT NULL, seq BIGINT NOT NULL,
        family VARCHAR NOT NULL, event VARCHAR NOT NULL,
        site VARCHAR NOT NULL, line VARCHAR NOT NULL,
        start TIMESTAMP NOT NULL, seconds INTEGER NOT NULL, count INTEGER NOT NULL,
        PRIMARY KEY (device, seq, family, event))""",
    """CREATE TABLE power (
        device VARCHAR NOT NULL, seq BIGINT NOT NULL,
        site VARCHAR NOT NULL, source VARCHAR NOT NULL,
        start TIMESTAMP NOT NULL, seconds INTEGER NOT NULL,
        wh DOUBLE PRECISION NOT NULL, mean_w DOUBLE PRECISION NOT NULL,
        measured BOOLEAN NOT NULL, received_at TIMESTAMP NOT NULL, PRIMARY KEY (device, seq))""",
    """CREATE TABLE devices (
        device VARCHAR PRIMARY KEY, site VARCHAR NOT NULL,
        first_seen TIMESTAMP NOT NULL, last_seen TIMESTAMP NOT NULL, messages BIGINT NOT NULL,
        state VARCHAR NOT NULL, status_at TIMESTAMP,
        model VARCHAR, backend VARCHAR, fps DOUBLE PRECISION, uptime_s DOUBLE PRECISION,
        errors BIGINT, last_error VARCHAR)""",
    """CREATE TABLE dead_letters (
        received_at TIMESTAMP NOT NULL, topic VARCHAR NOT NULL, reason VARCHAR NOT NULL,
        payload_size INTEGER NOT NULL, payload_head VARCHAR NOT NULL)""",
    """CREATE TABLE audio (
        device VARCHAR NOT NULL, seq BIGINT NOT NULL,
        site VARCHAR NOT NULL, source VARCHAR NOT NULL,
        start TIMESTAMP NOT NULL, seconds INTEGER NOT NULL, duration_s DOUBLE PRECISION NOT NULL,
        leq_dbfs DOUBLE PRECISION NOT NULL, laeq_dbfs DOUBLE PRECISION NOT NULL,
        leq_dbspl DOUBLE PRECISION, laeq_dbspl DOUBLE PRECISION, speech_ratio DOUBLE PRECISION,
        received_at TIMESTAMP NOT NULL, PRIMARY KEY (device, seq))""",
    """CREATE TABLE shelf (
        device VARCHAR NOT NULL, seq BIGINT NOT NULL,
        region VARCHAR NOT NULL, facing VARCHAR NOT NULL,
        site VARCHAR NOT NULL, source VARCHAR NOT NULL,
        start TIMESTAMP NOT NULL, seconds INTEGER NOT NULL,
        facing_empty INTEGER NOT NULL, restocked INTEGER NOT NULL,
        product_taken INTEGER NOT NULL, empty_at_end BOOLEAN NOT NULL,
        received_at TIMESTAMP NOT NULL, PRIMARY KEY (device, seq, region, facing))""",
)
V1_ROWS = (
    "INSERT INTO aggregates VALUES ('cam1', 0, 'shopA', 'cam0', 'door', "
    "TIMESTAMP '2024-06-01 10:00:00', 60, 4, 2, NULL, NULL, NULL, NULL, NULL, "
    "TIMESTAMP '2024-06-01 10:01:00')",
    "INSERT INTO aggregates VALUES ('cam1', 1, 'shopA', 'cam0', 'door', "
    "TIMESTAMP '2024-06-01 10:01:00', 60, 6, 1, NULL, NULL, NULL, NULL, NULL, "
    "TIMESTAMP '2024-06-01 10:02:00')",
    "INSERT INTO events VALUES ('cam1', 0, 'shelf', 'facing_empty', 'shopA', 'door', "
    "TIMESTAMP '2024-06-01 10:00:00', 60, 2)",
    "INSERT INTO power VALUES ('cam1', 0, 'shopA', 'rapl', TIMESTAMP '2024-06-01 10:00:00', "
    "60, 0.5, 30.0, true, TIMESTAMP '2024-06-01 10:01:00')",
    "INSERT INTO devices VALUES ('cam1', 'shopA', TIMESTAMP '2024-06-01 10:00:00', "
    "TIMESTAMP '2024-06-01 10:02:00', 3, 'online', NULL, 'm', 'b', 5.0, 10.0, 0, NULL)",
    "INSERT INTO dead_letters VALUES (TIMESTAMP '2024-06-01 10:00:00', 't', 'r', 1, 'x')",
)


def make_v1_store(db: str) -> None:
    if db.startswith("postgresql://"):
        import psycopg

        with psycopg.connect(db, autocommit=True) as conn:
            for statement in (*V1_SCHEMA, *V1_ROWS):
                conn.execute(statement)
        return
    con = duckdb.connect(db)
    try:
        for statement in (*V1_SCHEMA, *V1_ROWS):
            con.execute(statement.replace("DOUBLE PRECISION", "DOUBLE"))
    finally:
        con.close()


def test_a_store_of_the_previous_schema_is_migrated_on_open(store_db: str) -> None:
    make_v1_store(store_db)
    store = open_store(store_db)
    try:
        assert totals(store) == {("shopA", "cam1"): 10}
        keys = store.fetch("SELECT site, device, epoch, seq FROM aggregates ORDER BY seq").rows
        assert keys == [("shopA", "cam1", "", 0), ("shopA", "cam1", "", 1)]
        assert store.fetch("SELECT count(*) FROM events WHERE epoch = ''").rows == [(1,)]
        assert store.fetch("SELECT wh FROM power").rows == [(0.5,)]
        device = to_records(queries.devices(store))[0]
        assert (device["site"], device["messages"], device["conflicts"]) == ("shopA", 3, 0)
        # old rows still dedupe a device that predates epochs, and new keys work beside them
        legacy = agg("shopA", "cam1", 1, 6, epoch=None)
        r = store.write(IngestBatch(aggregates=(legacy,), seen=seen(legacy)))
        assert r.aggregates_duplicate == 1
        b = agg("shopB", "cam1", 0, 5)
        store.write(IngestBatch(aggregates=(b,), seen=seen(b)))
        assert totals(store) == {("shopA", "cam1"): 10, ("shopB", "cam1"): 5}
        assert len(to_records(queries.dead_letters(store))) == 1
    finally:
        store.close()
    # opening again changes nothing
    store = open_store(store_db)
    try:
        assert totals(store) == {("shopA", "cam1"): 10, ("shopB", "cam1"): 5}
    finally:
        store.close()


# --------------------------------------------------------------------------- through MQTT


@contextmanager
def connected(url: str) -> Iterator[mqtt.Client]:
    host, port = url.removeprefix("mqtt://").split(":")
    c = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2)
    c.connect(host, int(port))
    c.loop_start()
    try:
        yield c
    finally:
        c.loop_stop()
        c.disconnect()


def send(client: mqtt.Client, messages: list[tuple[str, bytes, bool]]) -> None:
    for topic, payload, retain in messages:
        info = client.publish(topic, payload, qos=1, retain=retain)
        info.wait_for_publish(timeout=30)
        assert info.is_published()


def _numbered(draft: Aggregate) -> PayloadBuilder:
    """The payload of ``draft`` under the sequence number and epoch its outbox gives it."""
    return lambda seq, epoch: to_json(draft.model_copy(update={"seq": seq, "epoch": epoch}))


def publish(url: str, messages: list[tuple[str, bytes, bool]]) -> None:
    with connected(url) as client:
        send(client, messages)


HOSTILE_TIMES = st.one_of(
    st.sampled_from(
        [
            "0001-01-01T00:00:00+14:00",
            "9999-12-31T23:00:00-05:00",
            "9999-12-31T23:59:59.999999-23:59",
            "0001-01-01T00:00:00-00:01",
            "1970-01-01T00:00:00Z",
            "2999-01-01T00:00:00Z",
        ]
    ),
    st.builds(
        lambda d, h, m: f"{d.isoformat()}{'+' if h >= 0 else '-'}{abs(h):02d}:{m:02d}",
        st.datetimes(min_value=datetime(1, 1, 1), max_value=datetime(9999, 12, 31, 23, 59)),
        st.integers(-23, 23),
        st.integers(0, 59),
    ),
)
JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)


@pytest.mark.slow
def test_no_message_stops_ingest(mosquitto: Any, tmp_path: Path) -> None:
    """After each hostile message (a time that overflows or lies outside the window, or any
    JSON), retained or not, on every kind's topic, a valid aggregate is still stored."""
    config = FleetConfig.of(mosquitto.url, str(tmp_path / "fleet.duckdb"), "127.0.0.1:0")
    seq = iter(range(10**6))
    base = json.loads(to_json(agg("shop", "cam1", 0, 1)))
    kinds = ["agg", "status", "power", "audio", "shelf", "cmd", "update"]

    with FleetServer(config) as fleet, connected(mosquitto.url) as client:

        @settings(
            max_examples=40,
            deadline=None,
            suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
        )
        @given(
            when=HOSTILE_TIMES,
            field=st.sampled_from(["start", "at"]),
            junk=JSON,
            kind=st.sampled_from(kinds),
            retain=st.booleans(),
            use_junk=st.booleans(),
        )
        def one(when: str, field: str, junk: Any, kind: str, retain: bool, use_junk: bool) -> None:
            body: Any = junk if use_junk else {**base, field: when}
            hostile = json.dumps(body).encode()
            n = next(seq)
            good = agg("shop", "probe", n, 1, minute=n % 1000)
            before = fleet.counters().aggregates_new
            send(
                client,
                [
                    (f"edgetally/v1/shop/cam1/{kind}", hostile, retain),
                    (topic_for("shop", "probe", "agg"), to_json(good), False),
                ],
            )
            assert fleet.ingestor.wait_until(lambda k: k.aggregates_new > before, 10), (
                f"ingest stopped after {hostile[:120]!r} on {kind}"
            )

        one()
        k = fleet.counters()
        assert k.running and k.loop_errors == 0 and k.lost == 0
        health = httpx.get(f"{fleet.http_url}/api/v1/health").json()
        assert health["ingest"]["running"] is True
    # the retained hostile messages greet a restarted fleet, which still ingests
    with FleetServer(config) as fleet:
        good = agg("shop", "probe", 10**6, 5, minute=5)
        publish(mosquitto.url, [(topic_for("shop", "probe", "agg"), to_json(good), False)])
        assert fleet.ingestor.wait_until(lambda k: k.aggregates_new >= 1, 15)
        assert fleet.counters().running


def test_times_outside_the_window_are_dead_letters_with_the_reason(tmp_path: Path) -> None:
    from edgetally.fleet.addresses import parse_broker_url
    from edgetally.fleet.ingest.mqtt import IngestConfig, Ingestor

    store = open_store(str(tmp_path / "f.duckdb"))
    try:
        ingestor = Ingestor(store, IngestConfig(broker=parse_broker_url("mqtt://127.0.0.1:1")))
        now = datetime.now(UTC)
        base = json.loads(to_json(agg("shop", "cam1", 0, 1)))
        items = [
            (topic_for("shop", "cam1", "agg"), json.dumps({**base, "start": when}).encode(), now)
            for when in (
                "0001-01-01T00:00:00+14:00",
                "9999-12-31T23:00:00-05:00",
                "1999-12-31T23:00:00Z",
                (now + timedelta(days=2)).isoformat(),
                (now - timedelta(days=3)).isoformat(),
            )
        ]
        batch, _sensors, _ignored = ingestor.build_batch(items)
        reasons = [d.reason for d in batch.dead]
        assert len(reasons) == 4 and len(batch.aggregates) == 1
        assert "time is out of range" in reasons[0] and "time is out of range" in reasons[1]
        assert "before 2000-01-01" in reasons[2]
        assert "ahead of the receiving clock" in reasons[3]
    finally:
        store.close()


@pytest.mark.slow
@pytest.mark.parametrize("db_kind", ["duckdb", "postgres"])
def test_devices_end_to_end_identity_reset_and_conflict(
    db_kind: str, mosquitto: Any, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    """Real device outboxes and publishers through Mosquitto: two sites' ``cam1``, one of
    them re-imaged mid-run (its outbox deleted), and a conflicting redelivery; every
    device's counts arrive once, nothing counted twice."""
    from edgetally.runtime.uplink.outbox import Outbox
    from edgetally.runtime.uplink.publisher import Publisher

    db = (
        str(tmp_path / "fleet.duckdb")
        if db_kind == "duckdb"
        else request.getfixturevalue("pg_server").new_database()
    )
    counted: dict[tuple[str, str], int] = {}

    def run_device(site: str, box: Path, buckets: range, n_in: int) -> str:
        outbox = Outbox(box)
        publisher = Publisher(outbox, mosquitto.url, site=site, device="cam1")
        publisher.start()
        try:
            for b in buckets:
                draft = agg(site, "cam1", 0, n_in, minute=b)
                outbox.put(topic_for(site, "cam1", "agg"), _numbered(draft))
                counted[(site, "cam1")] = counted.get((site, "cam1"), 0) + n_in
            deadline = time.monotonic() + 60
            while outbox.count() and time.monotonic() < deadline:
                publisher.wake()
                time.sleep(0.05)
            assert outbox.count() == 0
            return outbox.epoch
        finally:
            publisher.stop()
            outbox.close()

    with FleetServer(FleetConfig.of(mosquitto.url, db, "127.0.0.1:0")) as fleet:
        box_a = tmp_path / "a" / "outbox.db"
        epoch_a = run_device("shopA", box_a, range(0, 6), 2)
        run_device("shopB", tmp_path / "b" / "outbox.db", range(0, 6), 3)
        box_a.unlink()  # re-imaged: a new outbox, seq from 0 again
        for extra in ("-wal", "-shm"):
            Path(str(box_a) + extra).unlink(missing_ok=True)
        epoch_a2 = run_device("shopA", box_a, range(10, 15), 5)
        assert epoch_a2 != epoch_a
        # a conflicting redelivery of shopA's first stream (seq 0, other counts)
        liar = agg("shopA", "cam1", 0, 40, epoch=epoch_a, minute=0)
        publish(mosquitto.url, [(topic_for("shopA", "cam1", "agg"), to_json(liar), False)])
        assert fleet.ingestor.wait_until(lambda k: k.conflicts >= 1, 30)
        k = fleet.counters()
        assert (k.aggregates_new, k.conflicts, k.lost, k.loop_errors) == (17, 1, 0, 0)
        rows = httpx.get(f"{fleet.http_url}/api/v1/traffic", params={"interval": "day"}).json()[
            "rows"
        ]
        got: dict[tuple[str, str], int] = {}
        for r in rows:
            got[(r["site"], r["device"])] = got.get((r["site"], r["device"]), 0) + r["in"]
        assert got == counted == {("shopA", "cam1"): 6 * 2 + 5 * 5, ("shopB", "cam1"): 18}
        devices = httpx.get(f"{fleet.http_url}/api/v1/devices").json()["rows"]
        conflicts = {(d["site"], d["device"]): d["conflicts"] for d in devices}
        assert conflicts == {("shopA", "cam1"): 1, ("shopB", "cam1"): 0}
        letters = httpx.get(f"{fleet.http_url}/api/v1/dead-letters").json()["rows"]
        assert [d["reason"][:28] for d in letters] == ["conflict: agg shopA/cam1 epo"]


@pytest.mark.slow
def test_the_fleets_window_is_configurable(mosquitto: Any, tmp_path: Path) -> None:
    from edgetally.models.wire import TimeWindow

    old = agg("shop", "cam1", 0, 7).model_copy(update={"start": datetime(1995, 3, 1, tzinfo=UTC)})
    window = TimeWindow(earliest=datetime(1990, 1, 1, tzinfo=UTC))
    config = FleetConfig.of(mosquitto.url, str(tmp_path / "f.duckdb"), "127.0.0.1:0", window=window)
    with FleetServer(config) as fleet:
        publish(mosquitto.url, [(topic_for("shop", "cam1", "agg"), to_json(old), False)])
        assert fleet.ingestor.wait_until(lambda k: k.processed >= 1, 15)
        k = fleet.counters()
        assert (k.aggregates_new, k.dead_letters) == (1, 0)


def test_the_serve_command_takes_the_window(tmp_path: Path) -> None:
    """The flags reach the ingest's window (a bad date is a one-line error)."""
    import subprocess
    import sys

    bad = subprocess.run(
        [
            sys.executable,
            "-m",
            "edgetally",
            "fleet",
            "serve",
            "--db",
            str(tmp_path / "f.db"),
            "--earliest",
            "not-a-date",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert bad.returncode != 0 and "--earliest" in bad.stderr


@pytest.mark.slow
def test_a_write_that_breaks_unexpectedly_dead_letters_only_its_message(
    mosquitto: Any, tmp_path: Path
) -> None:
    """A store write that raises something unexpected for one message: the batch is written
    again one message at a time, that message is a dead letter, the rest are stored, and
    every message counts as processed."""
    from edgetally.fleet.addresses import parse_broker_url
    from edgetally.fleet.ingest.mqtt import IngestConfig, Ingestor

    real = open_store(str(tmp_path / "f.duckdb"))

    class Brittle:
        def __getattr__(self, name: str) -> Any:
            return getattr(real, name)

        def write(self, batch: IngestBatch) -> Any:
            if any(a.in_count == 13 for a in batch.aggregates):
                raise TypeError("a bug in the store")
            return real.write(batch)

    ingestor = Ingestor(
        Brittle(),  # a Store whose write raises for one message
        IngestConfig(broker=parse_broker_url(mosquitto.url), client_id="brittle"),
    )
    ingestor.start()
    try:
        messages = [agg("shop", "cam1", s, 13 if s == 2 else 1) for s in range(5)]
        publish(
            mosquitto.url, [(topic_for("shop", "cam1", "agg"), to_json(m), False) for m in messages]
        )
        assert ingestor.wait_until(lambda k: k.processed >= 5, 30)
        k = ingestor.counters()
        assert (k.processed, k.aggregates_new, k.dead_letters, k.lost) == (5, 4, 1, 0)
        assert k.loop_errors >= 1 and k.running
    finally:
        ingestor.stop()
    reasons = [str(d["reason"]) for d in to_records(queries.dead_letters(real))]
    assert reasons == ["unexpected error storing this message: TypeError: a bug in the store"]
    assert totals(real) == {("shop", "cam1"): 4}
    real.close()
