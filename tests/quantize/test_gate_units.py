from __future__ import annotations

from typing import cast

import numpy as np
from edgetally.quantize.gate import compare, judge, matched
from edgetally.runtime.counting.detectors import Detector
from edgetally.runtime.types import Detections, iou_matrix


def dets(boxes: list[list[float]], classes: list[int] | None = None) -> Detections:
    n = len(boxes)
    return Detections(
        np.asarray(boxes, np.float32).reshape(n, 4),
        np.ones(n, np.float32),
        np.asarray(classes if classes is not None else [0] * n, np.int32),
    )


def test_iou_of_identical_and_disjoint_boxes() -> None:
    a = np.asarray([[0, 0, 10, 10], [20, 20, 30, 30]], np.float32)
    ious = iou_matrix(a, a[:1])
    assert ious.shape == (2, 1)
    assert ious[0, 0] == 1.0 and ious[1, 0] == 0.0


def test_matching_is_one_to_one_same_class_and_iou_at_least_half() -> None:
    ref = dets([[0, 0, 10, 10], [0, 0, 10, 10], [50, 50, 60, 60], [100, 100, 110, 110]])
    got = dets(
        [[0, 0, 10, 10], [50, 50, 60, 66], [100, 100, 110, 110]],  # 2nd: IoU 10/16 = 0.625
        classes=[0, 0, 1],  # the 3rd has the wrong class
    )
    assert matched(ref, got) == 2
    assert matched(ref, dets([[0, 0, 10, 21]])) == 0  # IoU 10/21 < 0.5
    assert matched(ref, Detections.empty()) == 0
    assert matched(Detections.empty(), got) == 0


def test_judge() -> None:
    assert judge(0.97, None, None).passed
    assert judge(0.97, 0.80, 0.79).passed
    v = judge(0.90, 0.80, 0.70)
    assert not v.passed and len(v.reasons) == 2
    assert not judge(None, None, None).passed  # nothing to agree on is not a pass


class ScoredBox:
    """Stands in for a Detector: one fixed box with a fixed score, cut at its threshold."""

    def __init__(self, score: float, threshold: float) -> None:
        self.score = score
        self.score_threshold = threshold

    def prepare(self, image: np.ndarray) -> np.ndarray:
        return image

    def infer(self, prepared: np.ndarray) -> list[np.ndarray]:
        return [np.asarray([self.score], np.float32)]

    def postprocess(self, outputs: list[np.ndarray], prepared: np.ndarray) -> Detections:
        keep = outputs[0] >= self.score_threshold
        n = int(keep.sum())
        return Detections(
            np.tile(np.asarray([[0, 0, 10, 10]], np.float32), (n, 1)),
            outputs[0][keep],
            np.zeros(n, np.int32),
        )


def test_compare_cuts_both_models_at_the_fp32_threshold() -> None:
    fp32 = ScoredBox(0.30, threshold=0.25)
    int8 = ScoredBox(0.22, threshold=0.10)  # its own lower threshold must not count
    frames = [np.zeros((4, 4, 3), np.uint8)] * 3
    result = compare(cast(Detector, fp32), cast(Detector, int8), frames)
    assert result.reference_boxes == 3 and result.matched_boxes == 0
    assert result.agreement == 0.0 and result.score_threshold == 0.25
    assert result.agreement_lower == 1.0  # 0.22 is within the diagnostic 0.05 below 0.25
    assert int8.score_threshold == 0.10  # restored
    result = compare(cast(Detector, fp32), cast(Detector, int8), frames, diagnostic_drop=0.01)
    assert result.agreement_lower == 0.0
