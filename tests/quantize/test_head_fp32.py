"""--keep-head-fp32 and --keep-depthwise-fp32: those ops stay FP32 in the saved IR."""

from __future__ import annotations

from pathlib import Path

import pytest
from edgetally.models.zoo import resolve_model
from edgetally.quantize.data import load_images
from edgetally.quantize.engines import quantize_openvino
from edgetally.runtime.backends import open_backend
from edgetally.runtime.counting.detectors import Detector

from tests.conftest import shared_path

Quantized = tuple[bool, bool]  # (activation input quantized, weights quantized)


def convolutions(xml: Path) -> tuple[dict[str, Quantized], dict[str, Quantized]]:
    """The prediction convolutions of a person-only YOLOX IR (4 box, 1 objectness and 1 class
    channel: nothing else in the network is that narrow) and its grouped convolutions."""
    import openvino as ov

    head: dict[str, Quantized] = {}
    grouped: dict[str, Quantized] = {}
    for op in ov.Core().read_model(str(xml)).get_ordered_ops():
        kind = op.get_type_name()
        if kind not in ("Convolution", "GroupConvolution"):
            continue
        data, weights = (port.get_source_output().get_node() for port in op.inputs())
        state = (
            data.get_type_name() == "FakeQuantize",
            not (weights.get_type_name() == "Constant" and weights.get_element_type().is_real()),
        )
        if kind == "GroupConvolution":
            grouped[op.get_friendly_name()] = state
        elif op.get_output_partial_shape(0)[1].get_length() <= 4:
            head[op.get_friendly_name()] = state
    return head, grouped


@pytest.mark.slow
def test_head_and_depthwise_convolutions_stay_fp32_unless_asked(tmp_path: Path) -> None:
    source = resolve_model(
        str(shared_path("models", "light_weight_person_detector.onnx")), family="yolox"
    )
    detector = Detector(source, open_backend(source.path, "onnx", "openvino"))
    images = load_images(shared_path("data", "calibration", "coco20"), 2)
    tensors = [detector.prepare(image).tensor for image in images]

    kept = quantize_openvino(source.path, tensors, tmp_path / "kept.xml")  # the defaults
    head, grouped = convolutions(kept)
    assert len(head) == 9  # box, objectness and class convolutions at 3 strides
    assert grouped
    assert all(value == (False, False) for value in head.values()), head
    assert all(value == (False, False) for value in grouped.values()), grouped
    assert "FakeQuantize" in kept.read_text()  # the rest of the network is quantized

    full = quantize_openvino(
        source.path, tensors, tmp_path / "full.xml", keep_head_fp32=False, keep_depthwise_fp32=False
    )
    head, grouped = convolutions(full)
    assert len(head) == 9
    assert all(value == (True, True) for value in head.values()), head
    assert all(value == (True, True) for value in grouped.values()), grouped
