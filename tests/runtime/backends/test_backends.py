"""Backends: the three runtimes agree, explicit requests fail loudly, auto falls back."""

from __future__ import annotations

import logging
from pathlib import Path

import cv2
import numpy as np
import pytest
from edgetally.models.errors import ModelFileError, UnknownModelError
from edgetally.models.zoo import resolve_model, write_sidecar
from edgetally.runtime.backends import open_backend
from edgetally.runtime.backends.litert_backend import LiteRtBackend
from edgetally.runtime.backends.onnxruntime_backend import OnnxRuntimeBackend
from edgetally.runtime.counting.detectors import load_detector
from edgetally.runtime.errors import BackendError
from edgetally.runtime.types import iou_matrix

from tests.conftest import shared_path
from tests.runtime.footfall_support import use_shared_models


@pytest.fixture
def street() -> np.ndarray:
    """Frame 50 of TUD-Stadtmitte: several people at eye level."""
    video = shared_path("data", "footfall", "tud_stadtmitte", "TUD-Stadtmitte.mp4")
    cap = cv2.VideoCapture(str(video))
    for _ in range(50):
        ok, image = cap.read()
    cap.release()
    assert ok
    return image


def test_default_model_ships_with_the_install_and_finds_people(street: np.ndarray) -> None:
    detector = load_detector()  # yolox-nano from inside the package, no shared data
    assert (detector.info.model, detector.info.backend) == ("yolox-nano", "onnxruntime")
    assert "models/weights" in detector.model.path.as_posix()
    found = detector.detect(street)
    assert len(found) >= 3
    assert (found.score >= 0.25).all()


@pytest.mark.parametrize(
    ("model", "backends"),
    [("yolox-nano", ("onnxruntime", "openvino")), ("lwpd", ("onnxruntime", "openvino"))],
)
def test_onnxruntime_and_openvino_find_the_same_people(
    model: str, backends: tuple[str, str], street: np.ndarray, monkeypatch: pytest.MonkeyPatch
) -> None:
    use_shared_models(monkeypatch)
    a, b = (load_detector(model, backend).detect(street) for backend in backends)
    assert len(a) >= 3
    assert len(a) == len(b)
    assert (iou_matrix(a.xyxy.astype(float), b.xyxy.astype(float)).max(axis=1) > 0.95).all()


def test_litert_runs_the_tflite_ssd(street: np.ndarray, monkeypatch: pytest.MonkeyPatch) -> None:
    use_shared_models(monkeypatch)
    detector = load_detector("ssd-mobilenet-v1-coco-quant", "litert")
    assert detector.info.backend == "litert"
    found = detector.detect(street)
    assert len(found) >= 2
    assert set(found.class_id.tolist()) == {0}  # people only


def test_explicit_backend_that_cannot_run_the_format_is_an_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    use_shared_models(monkeypatch)
    with pytest.raises(BackendError, match="litert cannot run onnx"):
        load_detector("yolox-nano", "litert")
    with pytest.raises(BackendError, match="unknown backend"):
        load_detector("yolox-nano", "tensorrt")
    with pytest.raises(BackendError, match="OpenVINO device NPU not available"):
        load_detector("yolox-nano", "openvino", device="NPU")


def test_auto_falls_back_and_says_so(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    use_shared_models(monkeypatch)
    # A missing onnxruntime provider makes the first choice fail; auto moves on to OpenVINO.
    path = resolve_model("yolox-nano").path
    with caplog.at_level(logging.WARNING):
        backend = open_backend(path, "onnx", "auto", device="CUDA")
    assert backend.info.name == "openvino"
    assert "falling back" in caplog.text


def test_corrupt_model_file_is_a_one_line_error(tmp_path: Path) -> None:
    bad = tmp_path / "broken.onnx"
    bad.write_bytes(b"\x08\x01garbage" * 100)
    with pytest.raises(UnknownModelError, match="--family"):
        load_detector(str(bad))
    # a broken file is the model's fault: no fallback to another runtime hides it
    with pytest.raises(ModelFileError, match=r"corrupt model file broken\.onnx") as info:
        load_detector(str(bad), family="yolox")
    assert "\n" not in str(info.value)


def test_a_zoo_file_is_known_by_hash_and_a_changed_one_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    original = shared_path("models", "light_weight_person_detector.onnx")
    copy = tmp_path / "renamed.onnx"
    copy.write_bytes(original.read_bytes())
    assert resolve_model(str(copy)).manifest.name == "lwpd"
    # The same file name in a model directory, one byte flipped: the zoo name is refused.
    # (A model not shipped in the package: the shipped ones are found there first.)
    tflite = shared_path("models", "ssd_mobilenet_v1_coco_quant.tflite")
    models = tmp_path / "models"
    models.mkdir()
    data = bytearray(tflite.read_bytes())
    data[len(data) // 2] ^= 0xFF
    (models / tflite.name).write_bytes(bytes(data))
    monkeypatch.setenv("EDGETALLY_MODEL_DIRS", str(models))
    with pytest.raises(ModelFileError, match="does not match the sha256 of ssd-mobilenet"):
        resolve_model("ssd-mobilenet-v1-coco-quant")


def test_a_sidecar_manifest_describes_an_unknown_file(tmp_path: Path) -> None:
    original = shared_path("models", "light_weight_person_detector.onnx")
    resolved = resolve_model(str(original))
    copy = tmp_path / "person-int8.onnx"
    copy.write_bytes(original.read_bytes() + b"")
    write_sidecar(
        copy, resolved.manifest.model_copy(update={"name": "person-int8", "precision": "int8"})
    )
    again = resolve_model(str(copy))
    assert (again.manifest.name, again.manifest.precision) == ("person-int8", "int8")


def test_unknown_zoo_name_lists_the_zoo() -> None:
    with pytest.raises(UnknownModelError, match="pedestrian-ssdlite"):
        resolve_model("no-such-model")


AUDIO_DATA = Path(__file__).parent.parent / "audio" / "data"


def test_litert_specs_say_dynamic_dimensions_and_quantization() -> None:
    wave = open_backend(AUDIO_DATA / "tiny_wave.tflite", "tflite", "litert")
    assert wave.inputs[0].shape == (1, None) and wave.inputs[0].scale == 0.0
    # A dynamic dimension takes any size, run after run.
    for n in (8000, 4000, 8000):
        [out] = wave.run([np.zeros((1, n), np.float32)])
        assert out.shape == (1, 2)
    int8 = open_backend(AUDIO_DATA / "tiny_logmel_int8.tflite", "tflite", "litert")
    spec = int8.inputs[0]
    assert spec.dtype == "int8" and spec.scale > 0 and int8.outputs[0].scale > 0
    assert isinstance(int8, LiteRtBackend)
    assert int8.input_quantization == (spec.scale, spec.zero_point)


def test_litert_quantizes_real_inputs_and_dequantizes_integer_outputs() -> None:
    backend = open_backend(AUDIO_DATA / "tiny_logmel_int8.tflite", "tflite", "litert")
    spec = backend.inputs[0]
    x = np.random.default_rng(0).normal(-3.0, 2.0, (1, 96, 64)).astype(np.float32)
    q = np.clip(np.round(x / spec.scale) + spec.zero_point, -128, 127).astype(np.int8)
    [real] = backend.run([x])
    [given] = backend.run([q])  # already quantized: passed as it is
    assert real.dtype == np.float32 and real.shape == (1, 3)
    np.testing.assert_array_equal(real, given)
    out = backend.outputs[0]
    steps = (np.asarray(real, np.float32) / out.scale) + out.zero_point
    np.testing.assert_allclose(steps, np.round(steps), atol=1e-3)  # whole int8 steps


def test_threads_reach_the_backend_auto_picks() -> None:
    from edgetally.runtime.audio.vad import default_vad_model

    backend = open_backend(default_vad_model(), "onnx", "auto", threads=1)
    assert backend.info.name == "onnxruntime"
    assert isinstance(backend, OnnxRuntimeBackend)
    options = backend._session.get_session_options()
    assert options.intra_op_num_threads == 1
