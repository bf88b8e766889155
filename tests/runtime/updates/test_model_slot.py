"""Model swaps under a running camera loop: at a frame boundary, confirmed after N clean
frames, back to the old detector (which counts the failing frame) when the new one raises;
the updater's rollback around it; the health check's power step fed by the power sampler."""

from __future__ import annotations

import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from edgetally.firmware_bridge.power import PowerReading
from edgetally.models.bundle import BundleFile, BundleManifest, load_public_key
from edgetally.runtime.config import parse_config
from edgetally.runtime.counting.detectors import DetectorInfo, load_detector
from edgetally.runtime.errors import ConfigError
from edgetally.runtime.power import PowerSampler
from edgetally.runtime.types import Detections, Dwell, Frame, FrameResult
from edgetally.runtime.updates.health import HealthResult
from edgetally.runtime.updates.model_slot import (
    ModelSlot,
    ReferenceClip,
    SwappableDetector,
    TrialError,
)
from edgetally.runtime.updates.updater import Updater, rebase_url
from edgetally.runtime.uplink.outbox import Outbox

from tests.runtime.updates.test_updater import Fleet, fleet  # noqa: F401 (a fixture)
from tests.runtime.updates.updater_support import TARGET, make_bundle
from tests.runtime.uplink.test_publisher import wait_until

RUNNING = {"model": "old"}  # which fake model ran last (what the fake meter "measures")


class FakeDetector:
    def __init__(self, name: str, *, fail_after: int | None = None) -> None:
        self.name = name
        self.fail_after = fail_after
        self.calls = 0
        self.score_threshold = 0.5
        self.info = DetectorInfo(name, "tf-ssd", "onnxruntime", "cpu", "fp32")

    def detect(self, image: Any) -> str:
        self.calls += 1
        if self.fail_after is not None and self.calls > self.fail_after:
            raise RuntimeError(f"{self.name} broke")
        RUNNING["model"] = self.name
        return self.name


class FakePipeline:
    def __init__(self, detector: Any) -> None:
        self.detector = detector

    def process(self, frame: Frame) -> FrameResult:
        raise NotImplementedError("the tests call the detector directly")

    def finish(self, ts: datetime) -> list[Dwell]:
        return []


# What a pipeline factory is given (the fake one reads neither).
CONFIG = parse_config(
    {
        "site": "s",
        "device": "d",
        "broker": "mqtt://127.0.0.1:1",
        "cameras": [
            {"id": "cam0", "source": "none", "lines": [{"id": "l", "points": [0, 0, 1, 1]}]}
        ],
    }
)


class Camera:
    """A camera thread calling the (wrapped) detector frame after frame."""

    def __init__(self, slot: ModelSlot, detector: FakeDetector) -> None:
        make = slot.wrap(lambda cam, cfg: FakePipeline(detector))
        pipeline = make(CONFIG.cameras[0], CONFIG)
        assert isinstance(pipeline, FakePipeline)
        self.proxy: SwappableDetector = pipeline.detector
        self.outputs: list[str] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        image = np.zeros((4, 4, 3), np.uint8)
        while not self.stop.is_set():
            self.outputs.append(self.proxy.detect(image))

    def close(self) -> list[str]:
        self.stop.set()
        self.thread.join()
        return self.outputs


def _manifest(version: str, file: str) -> BundleManifest:
    return BundleManifest(
        name="m",
        version=version,
        created_at=datetime.now(UTC),
        key_id="0" * 16,
        targets=(TARGET,),
        files=(BundleFile(path=file, sha256="0" * 64, size=1),),
    )


def _loader(broken: set[str]) -> Any:
    return lambda path: FakeDetector(path.name, fail_after=3 if path.name in broken else None)


def test_the_new_model_takes_over_between_two_frames_and_is_confirmed(tmp_path: Path) -> None:
    changes: list[tuple[str, str | None]] = []
    slot = ModelSlot(
        _loader(set()),
        device_class="sim",
        confirm_frames=5,
        on_change=lambda m, b: changes.append((m, b)),
    )
    cam = Camera(slot, FakeDetector("old"))
    assert wait_until(lambda: len(cam.outputs) > 3)
    slot.trial_run(tmp_path, _manifest("2", "new.onnx"))
    outputs = cam.close()
    switch = outputs.index("new.onnx")
    assert switch > 0 and set(outputs[:switch]) == {"old"}
    assert set(outputs[switch:]) == {"new.onnx"}  # one boundary, no frame without a result
    assert len(outputs) - switch >= 5
    assert changes == [("m@2", "onnxruntime")] and cam.proxy.info.model == "m@2"
    assert slot.target().device_class == "sim" and slot.target().backend == "onnxruntime"


def test_a_new_model_that_raises_gives_the_frame_back_to_the_old_one(tmp_path: Path) -> None:
    slot = ModelSlot(_loader({"bad.onnx"}), device_class="sim", confirm_frames=50, label="m@1")
    cam = Camera(slot, FakeDetector("old"))
    assert wait_until(lambda: len(cam.outputs) > 3)
    with pytest.raises(TrialError, match=r"bad\.onnx broke"):
        slot.trial_run(tmp_path, _manifest("2", "bad.onnx"))
    assert wait_until(lambda: cam.outputs[-1] == "old")
    outputs = cam.close()
    first = outputs.index("bad.onnx")
    assert outputs[first : first + 3] == ["bad.onnx"] * 3  # ran three frames, then raised
    assert set(outputs[first + 3 :]) == {"old"}  # the failing frame and all after: old model
    assert cam.proxy.info.model == "m@1" and slot.swaps == 0 and len(slot.failures) == 1


def test_a_device_that_stops_during_the_trial_does_not_confirm(tmp_path: Path) -> None:
    slot = ModelSlot(_loader(set()), device_class="sim", confirm_frames=10**9)
    cam = Camera(slot, FakeDetector("old"))
    errors: list[BaseException] = []

    def trial() -> None:
        try:
            slot.trial_run(tmp_path, _manifest("2", "new.onnx"))
        except TrialError as exc:
            errors.append(exc)

    t = threading.Thread(target=trial)
    t.start()
    assert wait_until(lambda: "new.onnx" in cam.outputs)
    slot.close()
    t.join()
    cam.close()
    assert "stopped before the new model was confirmed" in str(errors[0])
    assert cam.proxy.info.model == "old"


@pytest.mark.parametrize("provisioned", [True, False])
def test_updater_switches_back_when_the_trial_fails(
    fleet: Fleet,  # noqa: F811
    provisioned: bool,
) -> None:
    slot = ModelSlot(
        _loader({"model.onnx"}), device_class="sim", confirm_frames=20, start_timeout_s=30
    )
    up = Updater(
        fleet.tmp / "device",
        load_public_key(fleet.keys[1]),
        slot.target,
        lambda slot_dir, manifest, old: HealthResult(True),
        token=fleet.device_token,
        trial_run=slot.trial_run,
        fleet_host="127.0.0.1",
    )
    cam = Camera(slot, FakeDetector("old"))  # the target is known once a camera runs
    v1 = up.install_first(make_bundle(fleet.tmp, fleet.keys[0], "v1")) if provisioned else None
    v2 = make_bundle(fleet.tmp, fleet.keys[0], "v2", scale=2.0, version="2")
    result = up.apply(fleet.publish(v2))
    cam.close()
    assert not result.ok and "new model failed after the switch" in str(result.reason)
    assert up.current == v1  # without a first slot: no current, the configured model runs
    assert not up.trial_marker.exists() and cam.outputs[-1] == "old"


class ModelMeter:
    """A measured meter whose power depends on the model that ran last."""

    source = "rapl"
    measured = True

    def __init__(self, watts: dict[str, float]) -> None:
        self.watts = watts

    def read(self) -> PowerReading:
        return PowerReading(datetime.now(UTC), self.watts.get(RUNNING["model"], 2.0))

    def close(self) -> None:
        pass


@pytest.mark.parametrize(("new_w", "ok"), [(4.0, False), (2.2, True), (None, True)])
def test_power_step_compares_the_sampled_mean_watts(
    tmp_path: Path, new_w: float | None, ok: bool
) -> None:
    """4 W after 2 W is more than the default 30% rise; None: no sampler, the step is skipped
    (the new model would draw 9 W)."""
    meter = ModelMeter({"old.onnx": 2.0, "new.onnx": new_w or 9.0})
    with Outbox(tmp_path / "o.db") as box:
        sampler = PowerSampler(meter, box, site="s", device="d", bucket_seconds=60, interval=0.01)
        sampler.start()
        slot = ModelSlot(
            _loader(set()),
            device_class="sim",
            power_window_s=0.3,
            sampler=lambda: sampler if new_w is not None else None,
        )
        make = slot.wrap(lambda cam, cfg: FakePipeline(FakeDetector("old")))
        make(CONFIG.cameras[0], CONFIG)
        check = slot.health_check(runs=2)
        check = type(check)(
            load=check.load,
            frames=check.frames,
            in_use=lambda: tmp_path / "old.onnx",
            runs=2,
            power=check.power,
        )
        result = check(tmp_path, _manifest("2", "new.onnx"), None)
        sampler.stop()
    assert result.ok is ok, result.reason
    if not ok:
        assert "power rose" in str(result.reason) and "2.00 W -> 4.00 W" in str(result.reason)


def test_mean_watts_covers_only_the_window(tmp_path: Path) -> None:
    meter = ModelMeter({"a": 1.0, "b": 5.0})
    with Outbox(tmp_path / "o.db") as box:
        sampler = PowerSampler(meter, box, site="s", device="d", bucket_seconds=60, interval=0.01)
        RUNNING["model"] = "a"
        sampler.start()
        import time

        assert wait_until(lambda: sampler.mean_watts(0.0) is not None)
        RUNNING["model"] = "b"
        since = time.monotonic()
        assert wait_until(lambda: sampler.mean_watts(since) is not None)
        assert sampler.mean_watts(since) == 5.0
        assert 1.0 <= (sampler.mean_watts(0.0) or 0) < 5.0
        sampler.stop()
    assert sampler.mean_watts(time.monotonic() + 10) is None


def test_bundle_urls_are_rebased_on_the_fleet_url() -> None:
    url = "http://10.0.0.5:8080/bundles/abc?x=1"
    assert rebase_url(url, None) == url
    assert (
        rebase_url(url, "https://fleet.example/base/")
        == "https://fleet.example/base/bundles/abc?x=1"
    )


class BlindDetector:
    """A model that loads and runs but finds nobody."""

    score_threshold = 0.1
    info = DetectorInfo("blind", "tf-ssd", "openvino", "cpu", "fp32")

    def detect(self, image: Any) -> Detections:
        return Detections.empty()


@pytest.mark.slow
def test_count_step_runs_both_models_on_the_reference_clip(tmp_path: Path, vtest_avi: Path) -> None:
    """The real default model counts crossings on the first frames of vtest.avi; a model that
    finds nobody is refused by the count step, the same model passes, and the model in use
    is counted once however many candidates are checked."""
    real = load_detector("pedestrian-ssdlite", "openvino")
    loads: list[str] = []

    def load(path: Path) -> Any:
        loads.append(path.name)
        return BlindDetector() if path.name == "blind.onnx" else real

    for name in ("old.onnx", "blind.onnx", "same.onnx"):
        (tmp_path / name).write_bytes(b"")
    reference = ReferenceClip(vtest_avi, ("560,180,560,430",), max_frames=120)
    slot = ModelSlot(load, device_class="sim", reference=reference)
    old = slot.count_probe(tmp_path / "old.onnx")
    assert old is not None and old >= 1

    def check(candidate: str) -> HealthResult:
        probe = slot.health_check(runs=1)
        probe = type(probe)(
            load=probe.load,
            frames=lambda: [np.zeros((64, 64, 3), np.uint8)],
            in_use=lambda: tmp_path / "old.onnx",
            runs=1,
            counter=probe.counter,
        )
        return probe(tmp_path, _manifest("2", candidate), tmp_path)

    blind = check("blind.onnx")
    assert not blind.ok and "counts on the reference clip moved 100%" in str(blind.reason)
    assert check("same.onnx").ok
    counted = [n for n in loads if n == "old.onnx"]
    assert len(counted) == 1  # the old model's count is kept, not redone per candidate


def test_reference_clip_refuses_bad_lines_and_missing_files(tmp_path: Path) -> None:
    clip = tmp_path / "clip.mp4"
    clip.write_bytes(b"")
    with pytest.raises(ConfigError, match="at least one line"):
        ReferenceClip(clip, ())
    with pytest.raises(ConfigError, match="not found"):
        ReferenceClip(tmp_path / "nope.mp4", ("1,2,3,4",))
    with pytest.raises(ConfigError):
        ReferenceClip(clip, ("1,2,3",))
    assert ModelSlot(_loader(set()), device_class="sim").count_probe(clip) is None
