"""--format onnx: which QDQ form onnxruntime fuses into integer kernels (see the README)."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest
from edgetally.quantize.errors import QuantizeError
from edgetally.quantize.pipeline import quantize_model

from tests.conftest import shared_path


def optimized_ops(model: Path, scratch: Path) -> Counter[str]:
    """The op types of ``model`` after onnxruntime's full graph optimization (what the
    runtime's onnxruntime backend runs)."""
    import onnx
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.optimized_model_filepath = str(scratch)
    options.log_severity_level = 3
    ort.InferenceSession(str(model), options, providers=["CPUExecutionProvider"])
    return Counter(node.op_type for node in onnx.load(str(scratch)).graph.node)


@pytest.mark.slow
def test_onnxruntime_quantizer_runs_every_convolution_as_qlinearconv(tmp_path: Path) -> None:
    import onnx
    from onnx import numpy_helper

    model = shared_path("models", "light_weight_person_detector.onnx")
    calib = shared_path("data", "calibration", "coco20")
    # --force: whether 6 images calibrate above the gate is not the point here.
    result = quantize_model(
        str(model),
        calib,
        "onnx",
        tmp_path / "out",
        calib_limit=6,
        force=True,
        onnx_quantizer="onnxruntime",
    )
    assert result.out is not None
    saved = onnx.load(str(result.out))
    initializers = {i.name: numpy_helper.to_array(i) for i in saved.graph.initializer}
    convs = [n for n in saved.graph.node if n.op_type == "Conv"]
    assert convs
    producers = {out: n for n in saved.graph.node for out in n.output}
    for conv in convs:
        # Every convolution has a quantized output (the Q that lets onnxruntime fuse it).
        consumers = [n.op_type for n in saved.graph.node if conv.output[0] in n.input]
        assert consumers == ["QuantizeLinear"], (conv.name, consumers)
        data, weight = (producers[conv.input[i]] for i in (0, 1))
        assert data.op_type == weight.op_type == "DequantizeLinear"
        weights = initializers[weight.input[0]]
        assert weights.dtype.name == "int8"
        assert initializers[weight.input[1]].size == weights.shape[0]  # per-channel scales
    act_zero_points = {
        initializers[n.input[2]].dtype.name
        for n in saved.graph.node
        if n.op_type == "QuantizeLinear"
    }
    assert act_zero_points == {"uint8"}  # U8 activations: onnxruntime's x86 U8S8 kernels

    ops = optimized_ops(result.out, tmp_path / "optimized.onnx")
    assert ops["QLinearConv"] == len(convs)
    assert ops["Conv"] == 0 and ops["FusedConv"] == 0
    # Only the model's input is quantized and its output dequantized in float.
    assert ops["QuantizeLinear"] <= 1 and ops["DequantizeLinear"] <= 1


@pytest.mark.slow
def test_nncf_default_leaves_convolutions_unfused(tmp_path: Path) -> None:
    """NNCF's QDQ has no Q after the convolutions (their SiLU comes first), so onnxruntime
    fuses none of them: the reason the default ONNX INT8 model runs slower than FP32."""
    model = shared_path("models", "light_weight_person_detector.onnx")
    calib = shared_path("data", "calibration", "coco20")
    result = quantize_model(str(model), calib, "onnx", tmp_path / "out", calib_limit=4, force=True)
    assert result.out is not None
    ops = optimized_ops(result.out, tmp_path / "optimized.onnx")
    assert ops["QLinearConv"] == 0
    assert ops["Conv"] + ops["FusedConv"] > 0 and ops["DequantizeLinear"] > 100


def test_unknown_onnx_quantizer_is_refused(tmp_path: Path) -> None:
    from edgetally.quantize.engines import quantize_onnx

    model = shared_path("models", "light_weight_person_detector.onnx")
    with pytest.raises(QuantizeError, match="quantizer"):
        quantize_onnx(model, [], tmp_path / "m.onnx", quantizer="tensorrt")
