"""Frame sources and the motion gate."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import cv2
import numpy as np
import pytest
from edgetally.runtime.counting.gate import GateConfig, MotionGate
from edgetally.runtime.counting.sources import LiveSource, SourceOptions, open_source
from edgetally.runtime.errors import SourceError

from tests.conftest import shared_path


def test_mot_folder_with_a_video_uses_its_frame_rate_and_start_time() -> None:
    seq = shared_path("data", "footfall", "tud_campus")
    start = datetime(2026, 11, 1, 9, tzinfo=UTC)
    frames = list(open_source(seq, SourceOptions(start=start, stride=5)))
    assert len(frames) == 15  # 71 frames, every 5th
    assert frames[1].index == 5
    assert frames[1].timestamp - start == timedelta(seconds=5 / 25)
    assert frames[0].image.shape == (480, 640, 3)


def test_image_folder_is_read_in_order(tmp_path: Path) -> None:
    for i in (2, 0, 1):
        cv2.imwrite(str(tmp_path / f"{i:03d}.png"), np.full((40, 60, 3), i * 50, np.uint8))
    frames = list(open_source(tmp_path))
    assert [int(f.image[0, 0, 0]) for f in frames] == [0, 50, 100]


def test_missing_and_unreadable_sources_are_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match="not found"):
        open_source(tmp_path / "nope.mp4")
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(np.random.default_rng(0).bytes(5000))
    with pytest.raises(SourceError, match=r"junk\.mp4"):
        open_source(junk)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(SourceError, match="no images"):
        open_source(empty)


def test_an_unplugged_camera_gives_up_after_its_retries() -> None:
    # The real adapter (cv2.VideoCapture) on an index with no camera behind it.
    with pytest.raises(SourceError, match="camera camera99 cannot be opened after 1 retries"):
        LiveSource(99, SourceOptions(max_retries=1, backoff_s=0.01))


class _FlakyCapture:
    """A stream that delivers 3 frames, drops, and comes back on the second reconnect."""

    opens = 0

    def __init__(self) -> None:
        type(self).opens += 1
        self._left = 3 if type(self).opens in (1, 3) else 0
        self._ok = type(self).opens != 2

    def isOpened(self) -> bool:
        return self._ok

    def read(self) -> tuple[bool, np.ndarray | None]:
        if self._left <= 0:
            return False, None
        self._left -= 1
        return True, np.zeros((8, 8, 3), np.uint8)

    def get(self, _prop: int) -> float:
        return 10.0

    def release(self) -> None:
        pass


def test_a_stream_that_drops_is_reopened_with_backoff() -> None:
    source = LiveSource(
        "rtsp://user:secret@cam.local/stream",
        SourceOptions(max_frames=6, backoff_s=0.01, max_retries=3),
        opener=lambda _t: _FlakyCapture(),
    )
    assert "secret" not in source.name
    assert len(list(source)) == 6
    assert _FlakyCapture.opens == 3


def test_the_gate_skips_still_frames_and_wakes_on_motion() -> None:
    gate = MotionGate(GateConfig(max_skip=10))
    still = np.full((240, 320, 3), 90, np.uint8)
    decisions = [gate.should_infer(still) for _ in range(8)]
    assert decisions == [True] + [False] * 7
    moved = still.copy()
    cv2.rectangle(moved, (100, 60), (140, 180), (20, 20, 20), -1)  # someone walks in
    assert gate.should_infer(moved)
    # Nothing moves for long: inferred again every max_skip frames all the same.
    decisions = [gate.should_infer(moved) for _ in range(20)]
    assert decisions.count(True) == 2
    assert gate.skipped_share > 0.8
