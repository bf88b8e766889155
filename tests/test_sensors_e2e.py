"""Audio and shelf end to end: a device run on a short WAV and the rendered shelf scene,
through a real Mosquitto into the fleet, and back out of /api/v1/audio and /api/v1/shelf
with the numbers the device computed."""

from __future__ import annotations

import csv
import io
import json
import math
import urllib.request
from collections import Counter
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile
from edgetally.fleet.config import FleetConfig
from edgetally.fleet.server import FleetServer
from edgetally.models.wire import AudioLevels, ShelfState, from_json
from edgetally.runtime.audio.pipeline import analyze_file
from edgetally.runtime.audio.vad import SileroVad
from edgetally.runtime.config import DeviceConfig, parse_config
from edgetally.runtime.device import Device
from edgetally.runtime.shelf.synthetic import ShelfScene, default_script, scene_config_data
from edgetally.runtime.types import Dwell, Frame, FrameResult, Track, TrackId

from tests.conftest import Broker
from tests.runtime.shelf.test_shelf_events import TRUTH
from tests.runtime.uplink.test_publisher import Recorder, wait_until

pytestmark = pytest.mark.slow

RATE = 16000
FPS = 10
BUCKET_S = 2


def write_wav(path: Path) -> np.ndarray[Any, Any]:
    """7 s at 16 kHz: a loud tone, quiet noise, a soft low tone; returns what a reader gets."""
    t = np.arange(3 * RATE) / RATE
    rng = np.random.default_rng(5)
    x = np.concatenate(
        [
            0.5 * np.sin(2 * np.pi * 1000 * t),
            0.01 * rng.standard_normal(2 * RATE),
            0.05 * np.sin(2 * np.pi * 250 * t[: 2 * RATE]),
        ]
    )
    soundfile.write(str(path), x, RATE, subtype="PCM_16")
    data, _ = soundfile.read(str(path), dtype="float32")
    return np.asarray(data, np.float64)


class SceneSource:
    """The rendered shelf scene at 10 fps (the first frame shows the shelf full)."""

    live = False
    name = "scene"

    def __init__(self, start: datetime) -> None:
        self.start = start
        self.scene = ShelfScene()

    def __iter__(self) -> Iterator[Frame]:
        for i, step in enumerate(default_script()):
            img = self.scene.render(np.array(step.stock), step.people)
            yield Frame(img, i, self.start + timedelta(seconds=i / FPS))

    def close(self) -> None:
        pass


class ScenePipeline:
    """A person detector that sees exactly the script's figures."""

    def __init__(self) -> None:
        self.script = default_script()

    def process(self, frame: Frame) -> FrameResult:
        people = self.script[frame.index].people
        tracks = tuple(Track(TrackId(k), p.box, 0.9) for k, p in enumerate(people))
        return FrameResult(frame.index, frame.timestamp, tracks, (), {}, (), True)

    def finish(self, ts: datetime) -> list[Dwell]:
        return []


def device_config(tmp_path: Path, broker: str, wav: Path) -> DeviceConfig:
    return parse_config(
        {
            "site": "shop-1",
            "device": "dev-1",
            "broker": broker,
            "outbox": str(tmp_path / "outbox.db"),
            "bucket_seconds": BUCKET_S,
            "drain_timeout_s": 20,
            "audio": {"id": "mic0", "source": str(wav), "spl_offset_db": 100.0},
            "cameras": [{"id": "shelfcam", "source": "scene", "shelf": scene_config_data()}],
        }
    )


def get(fleet: FleetServer, path: str) -> bytes:
    with urllib.request.urlopen(f"{fleet.http_url}{path}", timeout=30) as r:
        body: bytes = r.read()
        return body


def energy_mean(levels: list[float], weights: list[float]) -> float:
    power = sum(w * 10 ** (lv / 10) for lv, w in zip(levels, weights, strict=True))
    return 10 * math.log10(power / sum(weights))


def test_audio_and_shelf_reach_the_fleet_api(tmp_path: Path, mosquitto: Broker) -> None:
    wav = tmp_path / "shop.wav"
    signal = write_wav(wav)
    rec = Recorder(mosquitto.port)
    fleet_cfg = FleetConfig.of(mosquitto.url, str(tmp_path / "fleet.duckdb"), "127.0.0.1:0")
    try:
        with FleetServer(fleet_cfg) as fleet:
            dev = Device(
                device_config(tmp_path, mosquitto.url, wav),
                pipeline_factory=lambda c, d: ScenePipeline(),
                source_factory=lambda cam, start: SceneSource(start),
            )
            report = dev.run()
            assert report.remaining == 0
            audio = report.audio
            assert audio is not None and audio.completed
            n_shelf = report.cameras[0].shelf_messages
            assert wait_until(lambda: len(rec.payloads("/audio")) >= audio.buckets)
            assert wait_until(lambda: len(rec.payloads("/shelf")) >= n_shelf)
            sent_audio = [from_json(AudioLevels, p) for p in rec.payloads("/audio")]
            sent_shelf = [from_json(ShelfState, p) for p in rec.payloads("/shelf")]
            assert len(sent_shelf) == n_shelf >= 10  # 20 s of frames in 2 s buckets
            assert len(sent_audio) == audio.buckets == 4  # 7 s in 2 s buckets

            # One sequence for every kind: no number twice, none skipped.
            seqs = sorted(m.seq for m in [*sent_audio, *sent_shelf])
            assert seqs == list(range(report.next_seq))
            assert fleet.ingestor.wait_until(
                lambda c: c.audio_new == 4 and c.shelf_new == n_shelf, 30
            )

            # The device's buckets are the offline analyzer's, calibrated by the offset.
            offline = analyze_file(wav, BUCKET_S, SileroVad())
            assert [m.leq_dbfs for m in sent_audio] == pytest.approx(
                [b.leq_dbfs for b in offline], abs=1e-6
            )
            assert [m.leq_dbspl for m in sent_audio] == pytest.approx(
                [b.leq_dbfs + 100.0 for b in offline], abs=1e-6
            )
            assert [m.duration_s for m in sent_audio] == pytest.approx([2, 2, 2, 1])

            # /api/v1/audio over the whole run: energy mean, not the mean of decibels.
            rows = json.loads(get(fleet, "/api/v1/audio?site=shop-1&source=mic0&interval=day"))
            rows = rows["rows"]
            assert len(rows) in (1, 2)  # 2 only if the run straddled midnight (UTC)
            by_day: dict[str, list[AudioLevels]] = {}
            for m in sent_audio:
                by_day.setdefault(m.start.date().isoformat(), []).append(m)
            for row in rows:
                mine = by_day[row["bucket"][:10]]
                d = [m.duration_s for m in mine]
                assert row["leq_dbfs"] == pytest.approx(
                    energy_mean([m.leq_dbfs for m in mine], d), abs=1e-3
                )
                assert row["laeq_dbfs"] == pytest.approx(
                    energy_mean([m.laeq_dbfs for m in mine], d), abs=1e-3
                )
                speech = [m.speech_ratio or 0.0 for m in mine]
                assert row["speech_ratio"] == pytest.approx(
                    sum(s * w for s, w in zip(speech, d, strict=True)) / sum(d), abs=1e-3
                )
                assert row["seconds"] == pytest.approx(sum(d))
            if len(rows) == 1:
                # By hand from the samples: the Leq of the whole file.
                by_hand = 10 * math.log10(2 * float(np.mean(signal**2)))
                assert rows[0]["leq_dbfs"] == pytest.approx(by_hand, abs=0.01)
                assert rows[0]["leq_dbspl"] == pytest.approx(by_hand + 100.0, abs=0.01)
                naive = float(np.mean([m.leq_dbfs for m in sent_audio]))
                assert abs(rows[0]["leq_dbfs"] - naive) > 3.0

            # /api/v1/shelf: the scene's true events, per facing, and the state at the end.
            shelf = json.loads(get(fleet, "/api/v1/shelf?device=dev-1&interval=day"))["rows"]
            got: Counter[tuple[str, str]] = Counter()
            for row in shelf:
                for kind in ("facing_empty", "restocked", "product_taken"):
                    got[(row["facing"], kind)] += row[kind]
            want = Counter((facing, kind) for _frame, kind, facing in TRUTH)
            assert +got == want
            assert {r["facing"] for r in shelf} == {f"f{i}" for i in range(8)}
            assert not any(r["empty_at_end"] for r in shelf)  # everything restocked
            one = json.loads(get(fleet, "/api/v1/shelf?region=shelf0&facing=f1&interval=day"))
            assert sum(r["product_taken"] for r in one["rows"]) == 1
            assert {r["facing"] for r in one["rows"]} == {"f1"}

            # The same as CSV, and the events also in /api/v1/events.
            text = get(fleet, "/api/v1/shelf?interval=day&format=csv").decode()
            table = list(csv.DictReader(io.StringIO(text)))
            assert (
                sum(int(r["restocked"]) for r in table)
                == want[("f1", "restocked")] + want[("f7", "restocked")]
            )
            events = json.loads(get(fleet, "/api/v1/events?interval=day"))["rows"]
            shelf_events = {e["event"]: 0 for e in events if e["family"] == "shelf"}
            for e in events:
                if e["family"] == "shelf":
                    shelf_events[e["event"]] += e["count"]
            assert shelf_events == dict(Counter(kind for _f, kind, _fc in TRUTH))
    finally:
        rec.close()
