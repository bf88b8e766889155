"""Audio and shelf messages in the fleet store, on DuckDB and PostgreSQL: written once per
(device, seq), queried as energy means and per-facing sums, refused when malformed."""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime, timedelta

import pytest
from edgetally.fleet.addresses import BrokerAddress
from edgetally.fleet.ingest.mqtt import IngestConfig, Ingestor
from edgetally.fleet.store.connect import open_store
from edgetally.fleet.store.records import Filters
from edgetally.fleet.store.sensors import SensorBatch, audio, shelf, write_sensors
from edgetally.models.topics import DeviceId, SiteId, topic_for
from edgetally.models.wire import (
    AudioLevels,
    CounterId,
    FacingCounts,
    Seq,
    ShelfState,
    SourceId,
    to_json,
)

T0 = datetime(2024, 3, 1, 9, 0, tzinfo=UTC)


def levels(seq: int, minute: int, leq: float, dur: float = 60.0, **kw: object) -> AudioLevels:
    base: dict[str, object] = dict(
        site="shop-1",
        device="dev-1",
        source="mic0",
        seq=seq,
        start=T0 + timedelta(minutes=minute),
        seconds=60,
        duration_s=dur,
        leq_dbfs=leq,
        laeq_dbfs=leq - 3.0,
        speech_ratio=0.1 * (seq % 5),
        events={"dog": seq % 3},
    )
    base.update(kw)
    return AudioLevels.model_validate(base)


def state(seq: int, minute: int, empty: int, end: bool) -> ShelfState:
    return ShelfState(
        site=SiteId("shop-1"),
        device=DeviceId("dev-1"),
        source=SourceId("cam0"),
        seq=Seq(seq),
        start=T0 + timedelta(minutes=minute),
        seconds=60,
        facings=(
            FacingCounts(
                region=CounterId("top"),
                facing=CounterId("f0"),
                facing_empty=empty,
                restocked=1,
                product_taken=2,
                empty_at_end=end,
            ),
            FacingCounts(region=CounterId("top"), facing=CounterId("f1"), empty_at_end=False),
        ),
    )


def test_write_is_idempotent_and_queries_answer(store_db: str) -> None:
    store = open_store(store_db)
    try:
        loud = [levels(i, i, -20.0 - 2 * i, dur=60.0 if i < 9 else 15.0) for i in range(10)]
        shelves = [state(100 + i, i, i % 2, end=i == 9) for i in range(10)]
        first = write_sensors(store, SensorBatch(tuple(loud[:6]), tuple(shelves[:4])))
        assert (first.audio_new, first.shelf_new) == (6, 4)
        # A redelivery of some with the rest: only the new ones count.
        again = write_sensors(store, SensorBatch(tuple(loud), tuple(shelves)))
        assert (again.audio_new, again.audio_duplicate) == (4, 6)
        assert (again.shelf_new, again.shelf_duplicate) == (6, 4)

        rows = audio(store, Filters(interval="hour")).rows
        assert len(rows) == 1
        row = dict(zip(audio(store, Filters()).columns, rows[0], strict=True))
        d = [m.duration_s for m in loud]
        power = sum(w * 10 ** (m.leq_dbfs / 10) for m, w in zip(loud, d, strict=True))
        want = 10 * math.log10(power / sum(d))
        assert row["leq_dbfs"] == pytest.approx(want, abs=1e-9)
        assert row["laeq_dbfs"] == pytest.approx(want - 3.0, abs=1e-9)
        assert row["leq_dbfs"] > sum(m.leq_dbfs for m in loud) / 10 + 1.0  # not a dB mean
        speech = sum((m.speech_ratio or 0) * w for m, w in zip(loud, d, strict=True)) / sum(d)
        assert row["speech_ratio"] == pytest.approx(speech)
        assert row["events"] == {"dog": sum(m.events.get("dog", 0) for m in loud)}
        assert row["leq_dbspl"] is None and float(row["seconds"]) == pytest.approx(sum(d))
        # Per minute: one row per message, its own level back.
        per_minute = audio(store, Filters(interval="minute"), source="mic0").rows
        assert [r[5] for r in per_minute] == pytest.approx([m.leq_dbfs for m in loud])
        assert audio(store, Filters(interval="hour"), source="other").rows == []

        table = shelf(store, Filters(interval="hour"))
        got = {r[5]: dict(zip(table.columns, r, strict=True)) for r in table.rows}
        assert set(got) == {"f0", "f1"}
        assert got["f0"]["facing_empty"] == 5 and got["f0"]["restocked"] == 10
        assert got["f0"]["product_taken"] == 20 and got["f0"]["empty_at_end"] is True
        assert got["f1"]["facing_empty"] == 0 and got["f1"]["empty_at_end"] is False
        early = shelf(store, Filters(interval="hour", end=T0 + timedelta(minutes=5)), facing="f0")
        assert [(r[6], r[9]) for r in early.rows] == [(2, False)]
        assert shelf(store, Filters(), region="bottom").rows == []
        events = store.fetch(
            "SELECT family, event, sum(count) FROM events GROUP BY 1, 2 ORDER BY 1, 2"
        ).rows
        assert [(f, e, int(n)) for f, e, n in events] == [
            ("audio", "dog", sum(m.events.get("dog", 0) for m in loud)),
            ("shelf", "facing_empty", 5),
            ("shelf", "product_taken", 20),
            ("shelf", "restocked", 10),
        ]
    finally:
        store.close()


def test_ingest_sorts_kinds_and_dead_letters_malformed() -> None:
    ingest = Ingestor(open_store(":memory:"), IngestConfig(BrokerAddress("127.0.0.1", 1)))
    at = datetime.now(UTC)
    good_audio = to_json(levels(1, 0, -30.0))
    good_shelf = to_json(state(2, 0, 1, True))
    nan = good_audio.replace(b'"leq_dbfs":-30.0', b'"leq_dbfs":NaN')
    extra = json.loads(good_shelf)
    extra["image"] = "AAAA"
    items = [
        (topic_for("shop-1", "dev-1", "audio"), good_audio, at),
        (topic_for("shop-1", "dev-1", "shelf"), good_shelf, at),
        (topic_for("shop-1", "dev-1", "audio"), nan, at),
        (topic_for("shop-1", "dev-1", "shelf"), json.dumps(extra).encode(), at),
        (topic_for("shop-1", "dev-1", "audio"), good_shelf, at),
    ]
    batch, sensors, ignored = ingest.build_batch(items)
    assert ignored == 0 and len(sensors.audio) == 1 and len(sensors.shelf) == 1
    assert [d.reason.split(":")[0] for d in batch.dead] == [
        "invalid AudioLevels payload",
        "invalid ShelfState payload",
        "invalid AudioLevels payload",
    ]
    assert "image" in batch.dead[1].reason
    assert len(batch.seen) == 2
