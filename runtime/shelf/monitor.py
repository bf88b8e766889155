"""Facing state over time: debounced fill states, events, gated by people in front.

Per facing, each frame either shows it (no person box overlaps it) or not. While a person
overlaps a facing, its state is frozen: an arm or a body in front of the shelf is not an
empty facing. A new state (empty or full) must hold for ``confirm_frames`` unoccluded frames
in a row before it counts; then ``facing_empty`` or ``restocked`` is emitted. When a person
that overlapped a facing has left and the facing has been seen for ``confirm_frames`` frames,
its emptiness is compared with what it was just before the person came: a rise of
``taken_delta`` or more emits ``product_taken`` (one product out of several, or all of them).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal

import numpy as np
import numpy.typing as npt
from edgetally.runtime.shelf.config import Facing, ShelfConfig
from edgetally.runtime.shelf.errors import ShelfError
from edgetally.runtime.shelf.scorers import FacingScorer, Image

EventKind = Literal["facing_empty", "restocked", "product_taken"]
EVENT_KINDS: tuple[EventKind, ...] = ("facing_empty", "restocked", "product_taken")


@dataclass(frozen=True, slots=True)
class ShelfEvent:
    kind: EventKind
    region_id: str
    facing_id: str
    frame_index: int
    timestamp: datetime


@dataclass(frozen=True, slots=True)
class FacingState:
    region_id: str
    facing_id: str
    empty: bool
    occluded: bool
    emptiness: float  # last unoccluded score


@dataclass(frozen=True, slots=True)
class ShelfFrame:
    """What the shelf logic learned from one frame."""

    frame_index: int
    timestamp: datetime
    events: tuple[ShelfEvent, ...]
    facings: tuple[FacingState, ...]


@dataclass(slots=True)
class _Track:
    empty: bool = False
    pending: int = 0  # unoccluded frames in a row that disagree with `empty`
    occluded: bool = False
    touched: bool = False  # a person overlapped it; waiting to compare before/after
    before: float = 0.0
    after: list[float] = field(default_factory=list)
    recent: deque[float] = field(default_factory=lambda: deque(maxlen=8))
    last: float = 0.0


def overlap_share(box: npt.NDArray[np.float32], bbox: tuple[int, int, int, int]) -> float:
    """Share of the facing's bbox covered by a person box."""
    x1, y1, x2, y2 = bbox
    iw = min(float(box[2]), x2) - max(float(box[0]), x1)
    ih = min(float(box[3]), y2) - max(float(box[1]), y1)
    if iw <= 0 or ih <= 0:
        return 0.0
    return iw * ih / float((x2 - x1) * (y2 - y1))


class ShelfMonitor:
    """Feeds frames and person boxes through a scorer; emits debounced shelf events.

    ``occlusion_min`` is the share of a facing's box that a person box must cover to hide it.
    The facings start full (the reference shows the shelf full).
    """

    def __init__(
        self, config: ShelfConfig, scorer: FacingScorer, occlusion_min: float = 0.02
    ) -> None:
        self.config = config
        self.scorer = scorer
        self.occlusion_min = occlusion_min
        self.facings: tuple[Facing, ...] = config.facings
        self._tracks = [_Track() for _ in self.facings]

    def update(
        self,
        image: Image,
        persons: npt.NDArray[np.float32],
        frame_index: int,
        timestamp: datetime,
    ) -> ShelfFrame:
        """One frame: ``persons`` is an (N, 4) array of person boxes in pixel xyxy."""
        if timestamp.tzinfo is None:
            raise ShelfError("shelf timestamps must be timezone-aware (UTC)")
        persons = np.asarray(persons, np.float32).reshape(-1, 4)
        cfg = self.config
        occluded = [
            any(overlap_share(b, f.bbox) >= self.occlusion_min for b in persons)
            for f in self.facings
        ]
        visible = [f for f, o in zip(self.facings, occluded, strict=True) if not o]
        scores = iter(self.scorer.score(image, visible) if visible else np.zeros(0, np.float32))
        events: list[ShelfEvent] = []

        def emit(kind: EventKind, f: Facing) -> None:
            events.append(ShelfEvent(kind, f.region_id, f.facing_id, frame_index, timestamp))

        for f, t, occ in zip(self.facings, self._tracks, occluded, strict=True):
            if occ:
                if not t.occluded and not t.touched:
                    t.before = float(np.median(t.recent)) if t.recent else t.last
                t.occluded, t.touched, t.pending = True, True, 0
                t.after.clear()
                continue
            t.occluded = False
            e = float(next(scores))
            t.last = e
            t.recent.append(e)
            reads_empty = e >= cfg.empty_above if not t.empty else e > cfg.full_below
            if reads_empty != t.empty:
                t.pending += 1
                if t.pending >= cfg.confirm_frames:
                    t.empty, t.pending = reads_empty, 0
                    t.recent.clear()
                    t.recent.append(e)
                    emit("facing_empty" if t.empty else "restocked", f)
            else:
                t.pending = 0
            if t.touched:
                t.after.append(e)
                if len(t.after) >= cfg.confirm_frames:
                    if float(np.median(t.after)) - t.before >= cfg.taken_delta:
                        emit("product_taken", f)
                    t.touched = False
                    t.after.clear()
        # product_taken before facing_empty on the same frame and facing: it explains it
        order = {"product_taken": 0, "facing_empty": 1, "restocked": 2}
        events.sort(key=lambda ev: order[ev.kind])
        states = tuple(
            FacingState(f.region_id, f.facing_id, t.empty, t.occluded, t.last)
            for f, t in zip(self.facings, self._tracks, strict=True)
        )
        return ShelfFrame(frame_index, timestamp, tuple(events), states)
