"""The motion gate: skip inference on frames where nothing moves.

Each frame is shrunk to a small grey image and compared with the last frame that was sent
to the detector. When the share of changed pixels stays under ``threshold``, inference is
skipped and the tracks stay as they were; a frame is still inferred at least every
``max_skip`` frames, so a person who stands still is not forgotten.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np
import numpy.typing as npt


@dataclass(frozen=True, slots=True)
class GateConfig:
    enabled: bool = True
    width: int = 160  # the comparison runs on an image about this wide
    pixel_delta: int = 18  # grey levels a pixel must change by to count as moving
    threshold: float = 0.002  # share of moving pixels that wakes the detector
    max_skip: int = 25  # infer at least every n-th frame


class MotionGate:
    def __init__(self, config: GateConfig | None = None) -> None:
        self.config = config or GateConfig()
        self._reference: npt.NDArray[Any] | None = None
        self._since = 0
        self.frames = 0
        self.skipped = 0

    def _small(self, image: npt.NDArray[Any]) -> npt.NDArray[Any]:
        # Shrink by a whole factor (about ``width`` wide): OpenCV's area averaging is several
        # times faster for integer factors, and the few pixels cropped at the edge do not
        # matter to a motion test. Grey first: a third of the pixels to average.
        h, w = image.shape[:2]
        k = max(1, round(w / self.config.width))
        grey = cv2.cvtColor(image[: h - h % k, : w - w % k], cv2.COLOR_BGR2GRAY)
        if k > 1:
            grey = cv2.resize(grey, (w // k, h // k), interpolation=cv2.INTER_AREA)
        return np.asarray(cv2.GaussianBlur(grey, (5, 5), 0), dtype=np.uint8)

    def should_infer(self, image: npt.NDArray[Any]) -> bool:
        self.frames += 1
        if not self.config.enabled:
            return True
        small = self._small(image)
        if self._reference is None or self._reference.shape != small.shape:
            self._reference, self._since = small, 0
            return True
        moving = np.count_nonzero(cv2.absdiff(small, self._reference) > self.config.pixel_delta)
        self._since += 1
        if moving / small.size >= self.config.threshold or self._since >= self.config.max_skip:
            self._reference, self._since = small, 0
            return True
        self.skipped += 1
        return False

    @property
    def skipped_share(self) -> float:
        return self.skipped / self.frames if self.frames else 0.0
