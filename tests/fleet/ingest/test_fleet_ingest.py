"""End to end through a real Mosquitto: a fleet keeps ingesting valid traffic while 1,000
malformed or hostile messages land in the dead-letter table."""

from __future__ import annotations

import json
import random
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import paho.mqtt.client as mqtt
import pytest
from edgetally.fleet.config import FleetConfig
from edgetally.fleet.http.export import to_records
from edgetally.fleet.server import FleetServer
from edgetally.fleet.store import queries
from edgetally.fleet.store.connect import open_store
from edgetally.fleet.store.records import Filters
from edgetally.models.topics import DeviceId, SiteId, topic_for
from edgetally.models.wire import Aggregate, CounterId, DeviceStatus, Seq, SourceId, to_json
from paho.mqtt.enums import CallbackAPIVersion

T0 = datetime(2024, 6, 1, 10, 0, tzinfo=UTC)


def publisher(url: str) -> mqtt.Client:
    host, port = url.removeprefix("mqtt://").split(":")
    c = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2, client_id="tester")
    c.max_inflight_messages_set(200)
    c.connect(host, int(port))
    c.loop_start()
    return c


def publish_all(c: mqtt.Client, messages: list[tuple[str, bytes]]) -> None:
    infos = [c.publish(t, p, qos=1) for t, p in messages]
    for info in infos:
        info.wait_for_publish(timeout=60)
        assert info.is_published()


def valid(device: str, seq: int, minute: int, n_in: int) -> tuple[str, bytes]:
    a = Aggregate(
        site=SiteId("shop"),
        device=DeviceId(device),
        source=SourceId("cam0"),
        line=CounterId("door"),
        seq=Seq(seq),
        start=T0 + timedelta(minutes=minute),
        seconds=60,
        in_count=n_in,
        out_count=1,
    )
    return topic_for("shop", device, "agg"), to_json(a)


def hostile(rng: random.Random, i: int) -> tuple[str, bytes]:
    base: dict[str, Any] = json.loads(valid("dev-h", i, 0, 1)[1])
    topic = topic_for("shop", "dev-h", "agg")
    kind = i % 10
    if kind == 0:
        return topic, rng.randbytes(rng.randint(0, 300))  # not JSON at all
    if kind == 1:
        return topic, json.dumps({**base, "in_count": "7"}).encode()  # wrong type
    if kind == 2:
        return topic, json.dumps({**base, "line": "x" * 5000}).encode()  # huge string
    if kind == 3:
        return topic, json.dumps({**base, "frame_jpeg": "/9j/4AAQ" * 100}).encode()  # unknown
    if kind == 4:
        return "edgetally/v1/shop/dev-h/video", json.dumps(base).encode()  # wrong topic kind
    if kind == 5:
        return "edgetally/v1/shop/other/agg", json.dumps(base).encode()  # device mismatch
    if kind == 6:
        return topic, b"[" * 10_000 + b"]" * 10_000  # deep nesting, too large
    if kind == 7:
        return topic, json.dumps({**base, "start": "2024-06-01T10:00:00"}).encode()  # naive
    if kind == 8:
        return topic, json.dumps({**base, "v": 99}).encode()  # future schema
    return "edgetally/v9/shop/dev-h/agg", json.dumps(base).encode()  # wrong version


@pytest.mark.slow
def test_hostile_payloads_are_dead_lettered_while_valid_traffic_flows(
    mosquitto: Any, tmp_path: Path
) -> None:
    db = tmp_path / "fleet.duckdb"
    rng = random.Random(7)
    good = [valid(f"dev-{d}", s, s, rng.randint(0, 5)) for d in range(3) for s in range(200)]
    bad = [hostile(rng, i) for i in range(1000)]
    mixed = good + bad
    rng.shuffle(mixed)
    replay = rng.sample(good, 100)  # redelivered: must not count twice
    status = DeviceStatus(
        site=SiteId("shop"), device=DeviceId("dev-0"), at=T0, state="online", model="m1"
    )
    config = FleetConfig.of(mosquitto.url, str(db), "127.0.0.1:0")
    with FleetServer(config) as fleet:
        c = publisher(mosquitto.url)
        try:
            publish_all(c, mixed + replay)
            publish_all(c, [(topic_for("shop", "dev-0", "status"), to_json(status))])
            # fleet's own commands are not dead-lettered
            publish_all(c, [("edgetally/v1/shop/dev-0/cmd", b"{}")])
        finally:
            c.loop_stop()
            c.disconnect()
        total = len(mixed) + len(replay) + 2
        assert fleet.ingestor.wait_until(lambda k: k.processed >= total, timeout=120)
        k = fleet.counters()
        assert k.aggregates_new == len(good)
        assert k.aggregates_duplicate == len(replay)
        # a payload sent again on the same topic is one dead letter (as a redelivery is)
        distinct_bad = len(set(bad))
        assert distinct_bad < len(bad)
        assert k.dead_letters == distinct_bad
        assert k.ignored == 1 and k.lost == 0
        # still running: the API answers, and new valid traffic is still stored
        api = fleet.http_url
        health = httpx.get(f"{api}/api/v1/health").json()
        assert health["tables"]["dead_letters"] == distinct_bad
        c = publisher(mosquitto.url)
        publish_all(c, [valid("dev-9", 0, 0, 42)])
        c.loop_stop()
        c.disconnect()
        assert fleet.ingestor.wait_until(lambda k: k.aggregates_new == len(good) + 1, 30)
        rows = httpx.get(f"{api}/api/v1/traffic", params={"interval": "day"}).json()["rows"]
        by_dev = {r["device"]: r["in"] for r in rows}
        for d in range(3):
            want = sum(json.loads(p)["in_count"] for t, p in good if f"/dev-{d}/" in t)
            assert by_dev[f"dev-{d}"] == want
        assert by_dev["dev-9"] == 42
        devices = httpx.get(f"{api}/api/v1/devices").json()["rows"]
        dev0 = next(d for d in devices if d["device"] == "dev-0")
        assert dev0["state"] == "online" and dev0["model"] == "m1" and dev0["online"] is True
        assert "dev-h" not in {d["device"] for d in devices}  # only valid messages count
        # the command line asks the running fleet through its API
        cli = subprocess.run(
            [
                sys.executable,
                "-m",
                "edgetally",
                "fleet",
                "query",
                "traffic",
                "--api",
                api,
                "--interval",
                "day",
                "--json",
            ],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert cli.returncode == 0, cli.stderr
        assert json.loads(cli.stdout)["rows"] == rows
    # after stop: everything is on disk, and reasons name the problems
    store = open_store(str(db), read_only=True)
    try:
        reasons = [r["reason"] for r in to_records(queries.dead_letters(store, limit=2000))]
        assert len(reasons) == distinct_bad
        joined = "\n".join(reasons)
        for needle in (
            "Invalid JSON",
            "in_count",
            "line",
            "frame_jpeg",
            "unknown topic kind",
            "too large",
            "timezone",
            "schema version",
            "not an edgetally topic",
            "came on the topic of",
        ):
            assert needle in joined, needle
        total_in = to_records(queries.traffic(store, Filters(interval="day")))
        assert (
            sum(int(r["in"]) for r in total_in)
            == sum(json.loads(p)["in_count"] for _, p in good) + 42
        )
    finally:
        store.close()


@pytest.mark.slow
def test_fleet_on_postgres_through_mosquitto(mosquitto: Any, pg_url: str) -> None:
    good = [valid("dev-1", s, s, s % 4) for s in range(120)]
    with FleetServer(FleetConfig.of(mosquitto.url, pg_url, "127.0.0.1:0")) as fleet:
        c = publisher(mosquitto.url)
        publish_all(c, good + good[:30] + [("edgetally/v1/shop/dev-1/agg", b"nope")])
        c.loop_stop()
        c.disconnect()
        assert fleet.ingestor.wait_until(lambda k: k.processed >= len(good) + 31, 60)
        k = fleet.counters()
        assert (k.aggregates_new, k.aggregates_duplicate, k.dead_letters) == (120, 30, 1)
        rows = httpx.get(
            f"{fleet.http_url}/api/v1/traffic", params={"interval": "hour", "device": "dev-1"}
        ).json()["rows"]
    assert [r["in"] for r in rows] == [
        sum(s % 4 for s in range(60)),
        sum(s % 4 for s in range(60, 120)),
    ]


def test_unreachable_broker_is_a_clear_error(tmp_path: Path) -> None:
    from edgetally.fleet.errors import FleetError

    config = FleetConfig.of("mqtt://127.0.0.1:1", str(tmp_path / "f.duckdb"), "127.0.0.1:0")
    with pytest.raises(FleetError, match="cannot reach the MQTT broker"):
        FleetServer(config).start()
    # the store was closed again: the file can be opened
    open_store(str(tmp_path / "f.duckdb")).close()
