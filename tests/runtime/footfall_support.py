"""Helpers for the footfall tests: synthetic tracks and the shared models."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
from edgetally.runtime.counting.detectors import DetectorInfo
from edgetally.runtime.types import Detections, Track, TrackId

from tests.conftest import shared_path

T0 = datetime(2026, 11, 1, 9, 0, tzinfo=UTC)


def at(i: int) -> datetime:
    return T0 + timedelta(seconds=i / 25)


def person(track_id: int, foot_x: float, foot_y: float, w: float = 20, h: float = 60) -> Track:
    """A track whose foot point (bottom-centre) is at (foot_x, foot_y)."""
    return Track(TrackId(track_id), (foot_x - w / 2, foot_y - h, foot_x + w / 2, foot_y), 0.9)


def use_shared_models(monkeypatch: pytest.MonkeyPatch) -> None:
    models = shared_path("models")
    monkeypatch.setenv("EDGETALLY_MODEL_DIRS", str(models))


class BlobDetector:
    """A stand-in person detector for synthetic frames: every bright blob is a person, its
    box the blob's bounding box."""

    score_threshold = 0.1
    info = DetectorInfo("blob", "yolox", "synthetic", "cpu", "fp32")

    def detect(self, image: Any) -> Detections:
        mask = (np.asarray(image)[..., 0] > 127).astype(np.uint8)
        _, _, stats, _ = cv2.connectedComponentsWithStats(mask)
        boxes = np.asarray([[x, y, x + w, y + h] for x, y, w, h, _ in stats[1:]], np.float32)
        n = len(boxes)
        return Detections(boxes.reshape(n, 4), np.full(n, 0.9, np.float32), np.zeros(n, np.int32))


def painted(feet: Sequence[tuple[int, int]], size: tuple[int, int] = (320, 240)) -> Any:
    """A dark BGR frame with a bright 20x60 person standing on each foot point."""
    image = np.zeros((size[1], size[0], 3), np.uint8)
    for x, y in feet:
        image[y - 60 : y, x - 10 : x + 10] = 255
    return image


def write_frames(folder: Path, frames: Sequence[Any]) -> Path:
    """``frames`` as a folder of PNG images (a source at 25 frames per second)."""
    folder.mkdir(parents=True, exist_ok=True)
    for i, image in enumerate(frames):
        cv2.imwrite(str(folder / f"{i:04d}.png"), image)
    return folder
