from __future__ import annotations

import numpy as np
from edgetally.quantize.gate import iou_matrix, judge, matched
from edgetally.runtime.types import Detections


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
