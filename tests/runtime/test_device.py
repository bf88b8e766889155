"""The device run loop with a scripted pipeline against a real Mosquitto, and its CLI."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import cast

import numpy as np
import pytest
from edgetally.models.wire import Aggregate, from_json
from edgetally.runtime import device as device_module
from edgetally.runtime.config import CameraConfig, DeviceConfig, parse_config
from edgetally.runtime.counting.analytics import LineSpec
from edgetally.runtime.counting.detectors import Detector
from edgetally.runtime.counting.pipeline import build_pipeline
from edgetally.runtime.device import Device
from edgetally.runtime.types import (
    Crossing,
    Dwell,
    Frame,
    FrameResult,
    LineId,
    TrackId,
    ZoneId,
)
from edgetally.runtime.uplink.outbox import Outbox, OutboxFullError

from tests.conftest import Broker
from tests.runtime.footfall_support import BlobDetector, painted
from tests.runtime.uplink.test_publisher import Recorder, wait_until

FRAMES = 120  # 12 s at 10 fps


class ScriptedSource:
    """``n`` tiny frames at 10 fps; raises at ``crash_at`` to stand in for a killed process."""

    live = False

    def __init__(self, start: datetime, n: int = FRAMES, crash_at: int | None = None) -> None:
        self.name, self.fps = "scripted", 10.0
        # Start on a whole even second: every 2 s bucket then holds 20 frames (a start just
        # before a bucket's end would leave it one frame, and its occupancy peak 0).
        self.start = start - timedelta(seconds=start.timestamp() % 2)
        self.n, self.crash_at = n, crash_at

    def __iter__(self) -> Iterator[Frame]:
        for i in range(self.n):
            if i == self.crash_at:
                raise RuntimeError("power cut")
            yield Frame(np.zeros((4, 4, 3), np.uint8), i, self.start + timedelta(seconds=i / 10))

    def close(self) -> None:
        pass


class ScriptedPipeline:
    """A crossing on every 7th frame (in) and every 11th (out); occupancy i % 3 in 'till'."""

    def process(self, frame: Frame) -> FrameResult:
        i, ts = frame.index, frame.timestamp
        crossings = []
        if i % 7 == 0:
            crossings.append(Crossing(LineId("door"), "in", TrackId(i), ts, i))
        if i % 11 == 0:
            crossings.append(Crossing(LineId("door"), "out", TrackId(i), ts, i))
        dwells = (Dwell(ZoneId("till"), TrackId(i), 2.5, ts),) if i % 13 == 0 else ()
        return FrameResult(i, ts, (), tuple(crossings), {ZoneId("till"): i % 3}, dwells, True)

    def finish(self, ts: datetime) -> list[Dwell]:
        return []


def config(tmp_path: Path, broker: str, **extra: object) -> DeviceConfig:
    data = {
        "site": "shop-1",
        "device": "dev-1",
        "broker": broker,
        "outbox": str(tmp_path / "outbox.db"),
        "bucket_seconds": 2,
        "drain_timeout_s": 20,
        "cameras": [
            {
                "id": "cam0",
                "source": "scripted",
                "lines": [{"id": "door", "points": [1, 0, 1, 4]}],
                "zones": [{"id": "till", "polygon": [[0, 0], [4, 0], [4, 4]]}],
            }
        ],
        **extra,
    }
    return parse_config(data)


def device(cfg: DeviceConfig, crash_at: int | None = None) -> Device:
    def source(cam: CameraConfig, start: datetime) -> ScriptedSource:
        return ScriptedSource(start, crash_at=crash_at)

    return Device(cfg, pipeline_factory=lambda c, d: ScriptedPipeline(), source_factory=source)


WANT_IN = len(range(0, FRAMES, 7))
WANT_OUT = len(range(0, FRAMES, 11))


def received(rec: Recorder) -> list[Aggregate]:
    return [from_json(Aggregate, p) for p in rec.payloads("/agg")]


def test_a_file_run_publishes_every_bucket(tmp_path: Path, mosquitto: Broker) -> None:
    rec = Recorder(mosquitto.port)
    try:
        report = device(config(tmp_path, mosquitto.url)).run()
        assert report.remaining == 0
        assert report.lines() == [{"line": "door", "in": WANT_IN, "out": WANT_OUT}]
        assert report.as_json()["aggregates"] == report.produced == report.next_seq
        assert wait_until(lambda: len(received(rec)) >= report.produced)
        msgs = received(rec)
        assert sorted(m.seq for m in msgs) == list(range(report.produced))
        doors = [m for m in msgs if m.line == "door"]
        assert sum(m.in_count for m in doors) == WANT_IN
        assert len({m.start for m in doors}) == len(doors)  # one aggregate per bucket
        tills = [m for m in msgs if m.line == "till"]
        assert all(m.occupancy_peak == 2 for m in tills)
        assert sum(m.dwell.count for m in tills if m.dwell) == len(range(0, FRAMES, 13))
    finally:
        rec.close()
    with Outbox(tmp_path / "outbox.db") as box:
        assert box.count() == 0
        assert box.checkpoint("cam0|scripted|1|None|2") is None  # completed


def test_a_crash_resumes_without_duplicates_or_gaps(tmp_path: Path, mosquitto: Broker) -> None:
    rec = Recorder(mosquitto.port)
    cfg = config(tmp_path, mosquitto.url)
    try:
        with pytest.raises(RuntimeError, match="power cut"):
            device(cfg, crash_at=53).run()
        second = device(cfg).run()
        cam = second.cameras[0]
        # The first frame of the bucket that was open (2 s buckets = 20 frames).
        assert cam.resumed_at is not None and 53 - 20 < cam.resumed_at <= 53
        assert cam.completed
        assert second.lines() == [{"line": "door", "in": WANT_IN, "out": WANT_OUT}]
        assert wait_until(lambda: len(received(rec)) >= second.next_seq)
        msgs = received(rec)
        assert sorted(m.seq for m in msgs) == list(range(second.next_seq))
        keys = [(m.line, m.start) for m in msgs]
        assert len(keys) == len(set(keys))  # no bucket twice
        assert second.as_json()["aggregates"] == second.next_seq
    finally:
        rec.close()


class WalkSource(ScriptedSource):
    """60 frames at 10 fps of one person (a bright box) walking right along y=200, 4 px a
    frame, whose foot point passes x=200 on frame 40, the first frame of a 2 s bucket."""

    def __iter__(self) -> Iterator[Frame]:
        for i in range(self.n):
            if i == self.crash_at:
                raise RuntimeError("power cut")
            feet = [(203 - 4 * (40 - i), 200)] if i >= 10 else []
            yield Frame(painted(feet), i, self.start + timedelta(seconds=i / 10))


def walk_device(cfg: DeviceConfig, crash_at: int | None = None) -> Device:
    return Device(
        cfg,
        pipeline_factory=lambda c, d: build_pipeline(
            cast(Detector, BlobDetector()),
            [LineSpec(LineId("door"), 200, 120, 200, 230)],
            gate=False,
        ),
        source_factory=lambda c, start: WalkSource(start, n=60, crash_at=crash_at),
    )


def walk_config(tmp_path: Path, broker: str) -> DeviceConfig:
    cfg = config(tmp_path, broker)
    line = cfg.cameras[0].lines[0].model_copy(update={"points": (200.0, 120.0, 200.0, 230.0)})
    cam = cfg.cameras[0].model_copy(update={"zones": (), "lines": (line,)})
    return cfg.model_copy(update={"cameras": (cam,)})


@pytest.mark.parametrize("warmup", [True, False])
def test_a_resumed_file_counts_a_crossing_at_its_checkpoint_once(
    tmp_path: Path, mosquitto: Broker, monkeypatch: pytest.MonkeyPatch, warmup: bool
) -> None:
    # The person's foot is 3 px past the line at the checkpoint (frame 40) and settles past
    # its 8 px band two frames later: only a tracker that saw them before knows they came
    # from the other side.
    whole = walk_device(walk_config(tmp_path / "whole", mosquitto.url)).run()
    assert whole.lines() == [{"line": "door", "in": 1, "out": 0}]
    if not warmup:
        monkeypatch.setattr(device_module, "RESUME_WARMUP_S", 0.0)
    cfg = walk_config(tmp_path / "cut", mosquitto.url)
    with pytest.raises(RuntimeError, match="power cut"):
        walk_device(cfg, crash_at=45).run()
    second = walk_device(cfg).run()
    assert second.cameras[0].resumed_at == 40
    # Without replaying the frames before the checkpoint the crossing is lost.
    assert second.lines() == [{"line": "door", "in": 1 if warmup else 0, "out": 0}]


def test_a_full_outbox_stops_collection_and_says_so(tmp_path: Path, mosquitto: Broker) -> None:
    mosquitto.stop()  # nothing is acknowledged, so the outbox fills
    cfg = config(tmp_path, mosquitto.url, outbox_max=5, drain_timeout_s=0)
    with pytest.raises(OutboxFullError, match=r"cap is 5"):
        device(cfg).run()
    with Outbox(tmp_path / "outbox.db") as box:
        assert box.count() == 4  # two buckets of two; the third did not fit and was refused
        assert box.next_seq() == 4


def edgetally(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "edgetally", *args], capture_output=True, text=True, timeout=120
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["device", "run", "x.mp4", "--line", "1,2,3,4", "--device-id", "d"], "--site is required"),
        (["device", "run", "x.mp4", "--site", "s", "--device-id", "d"], "at least one --line"),
        (
            ["device", "run", "x.mp4", "--line", "a,b", "--site", "s", "--device-id", "d"],
            "--line 'a,b': expected [ID=]x1,y1,x2,y2",
        ),
        (
            ["device", "run", "x.mp4", "--line", "1,2,3", "--site", "s", "--device-id", "d"],
            "cameras[0].lines[0].points: expected 4 numbers",
        ),
        (
            [
                "device",
                "run",
                "x.mp4",
                "--line",
                "1,2,3,4",
                "--site",
                "s",
                "--device-id",
                "d",
                "--broker",
                "ftp://x",
            ],
            "unsupported scheme",
        ),
        (
            [
                "device",
                "run",
                "/nonexistent.mp4",
                "--line",
                "1,2,3,4",
                "--site",
                "s",
                "--device-id",
                "d",
                "--model",
                "no-such-model",
            ],
            "unknown model",
        ),
    ],
)
def test_cli_bad_input_is_one_line(tmp_path: Path, args: list[str], message: str) -> None:
    out = edgetally(*args, "--outbox", str(tmp_path / "o.db"))
    assert out.returncode == 1, out.stderr
    assert out.stderr.startswith("edgetally: error: ")
    assert message in out.stderr
    assert "Traceback" not in out.stderr


def test_validate_config_cli(tmp_path: Path) -> None:
    good = tmp_path / "good.yaml"
    good.write_text(
        "site: s\ndevice: d\ncameras:\n  - id: c\n    source: x.mp4\n    lines:\n"
        "      - id: a\n        points: [1, 2, 3, 4]\n      - id: b\n        points: [1, 2]\n"
    )
    out = edgetally("validate-config", str(good))
    assert out.returncode == 1
    assert out.stderr.strip() == (
        f"edgetally: error: {good}: cameras[0].lines[1].points: "
        "expected 4 numbers [x1, y1, x2, y2], got 2"
    )
    good.write_text(good.read_text().replace("[1, 2]\n", "[5, 6, 7, 8]\n"))
    out = edgetally("validate-config", str(good))
    assert out.returncode == 0 and out.stdout.startswith(f"OK {good}: site s, device d")
