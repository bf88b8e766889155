"""Calibration from stills or from footage (a video or MOT sequence, every N-th frame)."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
from edgetally.quantize.data import load_calibration
from edgetally.quantize.errors import QuantizeError

from tests.conftest import shared_path


def test_calibration_from_a_sequence_takes_every_nth_frame() -> None:
    seq = shared_path("data", "footfall", "tud_campus")  # 71 frames
    frames = load_calibration(seq, limit=300, stride=10)
    assert len(frames) == len(range(0, 71, 10))
    assert frames[0].shape == (480, 640, 3) and frames[0].dtype == np.uint8
    assert len(load_calibration(seq, limit=3, stride=10)) == 3
    every = load_calibration(seq, limit=11, stride=1)
    assert np.array_equal(every[10], frames[1])  # frame 10 is the second of stride 10


def test_calibration_from_stills_and_bad_paths(tmp_path: Path) -> None:
    for i in range(3):
        cv2.imwrite(str(tmp_path / f"{i}.png"), np.full((8, 8, 3), i, np.uint8))
    stills = load_calibration(tmp_path, limit=2, stride=5)  # the stride is for footage only
    assert [int(s[0, 0, 0]) for s in stills] == [0, 1]
    with pytest.raises(QuantizeError, match="--calib"):
        load_calibration(tmp_path / "missing")
    broken = tmp_path / "clip.mp4"
    broken.write_bytes(b"not a video")
    with pytest.raises(QuantizeError, match="--calib"):
        load_calibration(broken)
