"""Full-integer TFLite: the optional extra, its one-line error when absent, and a model that
loads in LiteRT through the device's detector."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from edgetally.models.errors import EdgetallyError
from edgetally.models.zoo import resolve_model
from edgetally.quantize.errors import QuantizeError
from edgetally.quantize.pipeline import quantize_model
from edgetally.quantize.tflite import to_nhwc
from edgetally.runtime.backends.litert_backend import LiteRtBackend
from edgetally.runtime.counting.detectors import load_detector

from tests.conftest import shared_path

HAS_EXTRA = all(importlib.util.find_spec(m) is not None for m in ("onnx2tf", "tensorflow"))
needs_extra = pytest.mark.skipif(not HAS_EXTRA, reason="pip install 'edgetally[tflite]'")

# Runs the CLI with onnx2tf made unimportable, as on a machine without the extra.
WITHOUT_EXTRA = (
    "import sys; sys.modules['onnx2tf'] = None; sys.modules['tensorflow'] = None\n"
    "from edgetally.main import main\n"
    "sys.argv = ['edgetally', *sys.argv[1:]]\n"
    "main()\n"
)


def test_nchw_calibration_tensors_become_nhwc() -> None:
    nchw = np.arange(3 * 4 * 5, dtype=np.float32).reshape(1, 3, 4, 5)
    nhwc = to_nhwc(nchw)
    assert nhwc.shape == (1, 4, 5, 3)
    assert nhwc[0, 2, 1, 0] == nchw[0, 0, 2, 1] and nhwc[0, 3, 4, 2] == nchw[0, 2, 3, 4]
    already = np.zeros((1, 8, 8, 3), np.uint8)
    assert to_nhwc(already).shape == (1, 8, 8, 3) and to_nhwc(already).dtype == np.float32


def test_without_the_extra_tflite_is_a_one_line_error_naming_it(tmp_path: Path) -> None:
    model = shared_path("models", "light_weight_person_detector.onnx")
    calib = shared_path("data", "calibration", "coco20")
    out = tmp_path / "o"
    proc = subprocess.run(
        [
            sys.executable,
            "-c",
            WITHOUT_EXTRA,
            "quantize",
            str(model),
            "--calib",
            str(calib),
            "--format",
            "tflite",
            "--out",
            str(out),
            "--max-images",
            "1",
        ],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("edgetally: error:") and "edgetally[tflite]" in last
    assert not out.exists()


@needs_extra
def test_tflite_needs_an_onnx_source(tmp_path: Path) -> None:
    try:
        resolve_model("pedestrian-ssdlite")
    except EdgetallyError:
        pytest.skip("pedestrian-ssdlite is not installed")
    calib = shared_path("data", "calibration", "coco20")
    with pytest.raises(QuantizeError, match="ONNX source"):
        quantize_model("pedestrian-ssdlite", calib, "tflite", tmp_path / "o", calib_limit=1)
    assert not (tmp_path / "o").exists()


@needs_extra
@pytest.mark.slow
def test_full_integer_tflite_runs_in_litert_through_the_detector(tmp_path: Path) -> None:
    model = shared_path("models", "light_weight_person_detector.onnx")
    calib = shared_path("data", "calibration", "coco20")
    out = tmp_path / "int8"
    # --force: the point is the format and its loading, not whether it passes the gate.
    result = quantize_model(str(model), calib, "tflite", out, force=True, calib_limit=8)
    assert result.out == out / "light_weight_person_detector-int8.tflite"
    assert result.size_int8 < result.size_fp32 / 2  # int8 weights
    c = result.comparison
    assert c.reference_boxes > 0 and c.agreement is not None and 0 <= c.agreement <= 1
    assert c.int8_ms > 0 and result.as_json()["agreement"] == round(c.agreement, 4)

    resolved = resolve_model(str(result.out))  # through the sidecar, as `count --model` does
    assert resolved.manifest.format == "tflite" and resolved.manifest.precision == "int8"
    assert resolved.manifest.input.layout == "NHWC" and resolved.manifest.input.dtype == "int8"
    detector = load_detector(str(result.out))
    assert detector.info.backend == "litert" and detector.info.precision == "int8"
    # Integer input and output, as integer-only NPUs need them.
    assert detector.backend.inputs[0].dtype == "int8"
    assert detector.backend.inputs[0].shape == (1, 192, 192, 3)
    assert [o.dtype for o in detector.backend.outputs] == ["int8"]
    assert isinstance(detector.backend, LiteRtBackend)
    scale, zero = detector.backend.input_quantization
    assert scale > 0
    image = np.full((480, 640, 3), 114, np.uint8)
    prepared = detector.prepare(image)
    assert prepared.tensor.dtype == np.int8 and prepared.tensor.shape == (1, 192, 192, 3)
    # The grey pad value 114 is quantized with the input's own parameters.
    expected = np.clip(np.round(114 / scale + zero), -128, 127)
    assert int(prepared.tensor[0, 0, 0, 0]) == int(expected)
    raw = detector.infer(prepared)
    assert raw[0].dtype == np.float32  # dequantized before the post-processing
    detector.postprocess(raw, prepared)
