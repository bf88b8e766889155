"""Value types that flow through the device pipeline.

Frozen, slotted dataclasses; boxes are numpy arrays in pixel xyxy, filtered by boolean masks.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal, NewType

import numpy as np
import numpy.typing as npt

TrackId = NewType("TrackId", int)
LineId = NewType("LineId", str)
ZoneId = NewType("ZoneId", str)
Direction = Literal["in", "out"]

FloatArray = npt.NDArray[np.float32]
IntArray = npt.NDArray[np.int32]

Progress = Callable[[str, float, float | None], None]
"""How far a long loop is, for whoever shows it: ``(what, done, total)``, the total None
when unknown (a live source). The runtime never draws anything itself."""


def iou_matrix(a: npt.NDArray[Any], b: npt.NDArray[Any]) -> npt.NDArray[np.float64]:
    """IoU of every box of ``a`` (N x 4, xyxy) with every box of ``b`` (M x 4): N x M."""
    if len(a) == 0 or len(b) == 0:
        return np.zeros((len(a), len(b)))
    a = np.asarray(a, np.float64)
    b = np.asarray(b, np.float64)
    tl = np.maximum(a[:, None, :2], b[None, :, :2])
    br = np.minimum(a[:, None, 2:], b[None, :, 2:])
    wh = np.clip(br - tl, 0, None)
    inter = wh[..., 0] * wh[..., 1]
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    union = area_a[:, None] + area_b[None, :] - inter
    return np.where(union > 0, inter / np.maximum(union, 1e-12), 0.0)


@dataclass(frozen=True, slots=True)
class Frame:
    """One decoded image (BGR, HxWx3 uint8) with its position in the source."""

    image: npt.NDArray[Any]  # BGR, HxWx3, uint8
    index: int
    timestamp: datetime  # UTC-aware

    @property
    def size(self) -> tuple[int, int]:
        """(width, height) in pixels."""
        h, w = self.image.shape[:2]
        return int(w), int(h)


@dataclass(frozen=True, slots=True)
class Detections:
    """N boxes in pixel xyxy with scores and class ids; filter with a boolean mask."""

    xyxy: FloatArray = field(default_factory=lambda: np.zeros((0, 4), np.float32))
    score: FloatArray = field(default_factory=lambda: np.zeros((0,), np.float32))
    class_id: IntArray = field(default_factory=lambda: np.zeros((0,), np.int32))

    def __post_init__(self) -> None:
        n = self.xyxy.shape[0]
        if self.xyxy.shape != (n, 4) or self.score.shape != (n,) or self.class_id.shape != (n,):
            raise ValueError(
                f"inconsistent detections: xyxy {self.xyxy.shape}, score {self.score.shape}, "
                f"class_id {self.class_id.shape}"
            )

    def __len__(self) -> int:
        return int(self.xyxy.shape[0])

    def __getitem__(self, mask: npt.NDArray[np.bool_] | npt.NDArray[np.intp]) -> Detections:
        return Detections(self.xyxy[mask], self.score[mask], self.class_id[mask])

    @staticmethod
    def empty() -> Detections:
        return Detections()


def foot_point(x1: float, y1: float, x2: float, y2: float) -> tuple[float, float]:
    """Where a person stands, from their box: its bottom centre (the one definition that the
    device's lines and zones and the truth made from annotated boxes share)."""
    return (x1 + x2) / 2.0, y2


@dataclass(frozen=True, slots=True)
class Track:
    """A confirmed track on the current frame."""

    track_id: TrackId
    xyxy: tuple[float, float, float, float]
    score: float

    @property
    def foot(self) -> tuple[float, float]:
        """Bottom-centre of the box: the point counted against lines and zones."""
        return foot_point(*self.xyxy)


@dataclass(frozen=True, slots=True)
class Crossing:
    """A track crossed a counting line."""

    line_id: LineId
    direction: Direction
    track_id: TrackId
    timestamp: datetime
    frame_index: int


@dataclass(frozen=True, slots=True)
class ZoneEntry:
    """A track stepped into a zone: a visit began."""

    zone_id: ZoneId
    track_id: TrackId
    timestamp: datetime


@dataclass(frozen=True, slots=True)
class Dwell:
    """A track left a zone (or was lost) after spending ``seconds`` in it."""

    zone_id: ZoneId
    track_id: TrackId
    seconds: float
    timestamp: datetime


@dataclass(frozen=True, slots=True)
class FrameResult:
    """What the pipeline learned from one frame: the input to analytics and aggregation."""

    frame_index: int
    timestamp: datetime
    tracks: tuple[Track, ...]
    crossings: tuple[Crossing, ...]
    occupancy: dict[ZoneId, int]  # people in each zone on this frame
    dwells: tuple[Dwell, ...]  # visits that ended on this frame
    inferred: bool  # False when the motion gate skipped inference on this frame
    entries: tuple[ZoneEntry, ...] = ()  # visits that began on this frame
