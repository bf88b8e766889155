"""The quantizer and its gate on real models and images from ../shared."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from edgetally.models.zoo import ResolvedModel, resolve_model
from edgetally.quantize.pipeline import quantize_model
from edgetally.runtime.counting.detectors import load_detector

from tests.conftest import shared_path
from tests.quantize.test_head_fp32 import convolutions

KEYS = {
    "format",
    "out",
    "size_fp32",
    "size_int8",
    "fp32_ms",
    "int8_ms",
    "agreement",
    "count_accuracy_fp32",
    "count_accuracy_int8",
}


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "edgetally", *args], capture_output=True, text=True
    )


def minmax_quantize_static(source: ResolvedModel, tensors: list[np.ndarray], target: Path) -> None:
    """onnxruntime's plain MinMax quantize_static, per tensor, on the raw 0..255 input: the
    activation ranges it picks wipe out these detectors' boxes."""
    import onnx
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )

    name = onnx.load(str(source.path)).graph.input[0].name

    class Reader(CalibrationDataReader):  # type: ignore[misc]  # onnxruntime ships no type information
        def __init__(self) -> None:
            self.it = iter([{name: t} for t in tensors])

        def get_next(self) -> dict[str, np.ndarray] | None:
            return next(self.it, None)

    quantize_static(
        str(source.path),
        str(target),
        Reader(),
        quant_format=QuantFormat.QDQ,
        activation_type=QuantType.QUInt8,
        weight_type=QuantType.QInt8,
        per_channel=False,
        calibrate_method=CalibrationMethod.MinMax,
    )


@pytest.mark.slow
def test_gate_refuses_a_model_that_lost_its_detections(tmp_path: Path) -> None:
    model = shared_path("models", "light_weight_person_detector.onnx")
    calib = shared_path("data", "calibration", "coco20")
    out = tmp_path / "out"
    result = quantize_model(
        str(model), calib, "onnx", out, engine=minmax_quantize_static, calib_limit=10
    )
    assert not result.passed
    assert result.comparison.agreement is not None and result.comparison.agreement < 0.5
    assert result.comparison.reference_boxes > 0
    assert any("agreement" in r for r in result.reasons)
    assert result.out is None and not out.exists()  # nothing written
    data = result.as_json()
    assert set(data) == KEYS and data["out"] is None


@pytest.mark.slow
def test_cli_writes_a_model_that_count_accepts(tmp_path: Path) -> None:
    model = shared_path("models", "light_weight_person_detector.onnx")
    calib = shared_path("data", "calibration", "coco20")
    out = tmp_path / "int8"
    # --force: whether 8 images calibrate this model above the gate is not the point here.
    proc = cli(
        "quantize",
        str(model),
        "--calib",
        str(calib),
        "--format",
        "openvino",
        "--out",
        str(out),
        "--max-images",
        "8",
        "--force",
        "--json",
    )
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert set(data) == KEYS
    assert data["format"] == "openvino" and data["count_accuracy_fp32"] is None
    assert data["size_int8"] < data["size_fp32"]
    assert data["fp32_ms"] > 0 and data["int8_ms"] > 0 and 0 <= data["agreement"] <= 1
    written = Path(data["out"])
    assert written == out / "light_weight_person_detector-int8.xml"
    assert written.with_suffix(".bin").is_file()
    head, grouped = convolutions(written)  # the defaults reach the quantizer
    assert len(head) == 9 and all(q == (False, False) for q in [*head.values(), *grouped.values()])
    assert (out / (written.name + ".model.json")).is_file()
    resolved = resolve_model(str(written))  # through the sidecar, as `count --model` does
    assert resolved.manifest.precision == "int8" and resolved.manifest.family == "yolox"
    detector = load_detector(str(written))
    assert detector.info.precision == "int8" and detector.info.backend == "openvino"
    image = np.full((480, 640, 3), 114, np.uint8)
    detector.detect(image)  # runs through the family's post-processing


def test_cli_bad_input_is_one_line_without_traceback(tmp_path: Path) -> None:
    model = shared_path("models", "light_weight_person_detector.onnx")
    cases = [
        (["--calib", str(tmp_path / "missing"), "--format", "openvino"], "--calib"),
        (["--calib", str(tmp_path), "--format", "tflite8"], "--format"),
        (["--calib", str(tmp_path), "--format", "onnx", "--eval", str(tmp_path)], "--line"),
        (["--calib", str(tmp_path), "--format", "onnx"], "no images"),
        (["--calib", str(tmp_path), "--format", "openvino", "--preset", "fast"], "--preset"),
    ]
    for args, needle in cases:
        proc = cli("quantize", str(model), *args, "--out", str(tmp_path / "o"))
        assert proc.returncode == 1, (args, proc.stderr)
        assert "Traceback" not in proc.stderr
        assert proc.stderr.startswith("edgetally: error:") and needle in proc.stderr
        assert not (tmp_path / "o").exists()


def test_already_quantized_model_is_refused(tmp_path: Path) -> None:
    model = shared_path("models", "ssd_mobilenet_v1_coco_quant.tflite")
    (tmp_path / "a.jpg").write_bytes(b"")
    proc = cli(
        "quantize",
        str(model),
        "--calib",
        str(tmp_path),
        "--format",
        "tflite",
        "--out",
        str(tmp_path / "o"),
    )
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert "already" in proc.stderr or "fp32" in proc.stderr.lower()
