"""--keep-head-fp32: the detection head's prediction convolutions stay FP32 in the saved IR."""

from __future__ import annotations

from pathlib import Path

import pytest
from edgetally.models.zoo import resolve_model
from edgetally.quantize.data import load_images
from edgetally.quantize.engines import quantize_openvino
from edgetally.runtime.backends import open_backend
from edgetally.runtime.detectors import Detector

from tests.conftest import shared_path


def head_convolutions(xml: Path) -> dict[str, tuple[bool, bool]]:
    """The prediction convolutions of a person-only YOLOX IR (4 box, 1 objectness and 1 class
    channel, nothing else in the network is that narrow): name -> (activation quantized,
    weights quantized)."""
    import openvino as ov

    found = {}
    for op in ov.Core().read_model(str(xml)).get_ordered_ops():
        channels = op.get_output_partial_shape(0)[1].get_length()
        if op.get_type_name() != "Convolution" or channels > 4:
            continue
        data, weights = (port.get_source_output().get_node() for port in op.inputs())
        found[op.get_friendly_name()] = (
            data.get_type_name() == "FakeQuantize",
            not (weights.get_type_name() == "Constant" and weights.get_element_type().is_real()),
        )
    return found


@pytest.mark.slow
def test_keep_head_fp32_leaves_the_prediction_convolutions_unquantized(tmp_path: Path) -> None:
    source = resolve_model(str(shared_path("models", "light_weight_person_detector.onnx")),
                           family="yolox")
    detector = Detector(source, open_backend(source.path, "onnx", "openvino"))
    images = load_images(shared_path("data", "calibration", "coco20"), 2)
    tensors = [detector.prepare(image).tensor for image in images]

    kept = quantize_openvino(source.path, tensors, tmp_path / "kept.xml", keep_head_fp32=True)
    head = head_convolutions(kept)
    assert len(head) == 9  # box, objectness and class convolutions at 3 strides
    assert all(value == (False, False) for value in head.values()), head
    text = kept.read_text()
    assert "FakeQuantize" in text  # the rest of the network is quantized

    full = quantize_openvino(source.path, tensors, tmp_path / "full.xml", keep_head_fp32=False)
    head = head_convolutions(full)
    assert len(head) == 9
    assert all(value == (True, True) for value in head.values()), head
