"""Footfall analytics on tracks: directed counting lines, zone occupancy and dwell.

Direction convention: for a line P1->P2, ``in`` is a crossing toward the side that the
vector (y2-y1, x1-x2) points to, in image coordinates (y down): for a line drawn top to
bottom that is moving right, for a line drawn left to right it is moving up.

Each track is counted at the bottom-centre of its box (the foot point). A line has a
hysteresis band: a track's side of the line changes only once its foot point is more than
``band`` pixels past it, so jitter on the line never counts, while a person who walks back
and forth across it counts each real crossing.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime

import cv2
import numpy as np
from edgetally.runtime.errors import ConfigError
from edgetally.runtime.types import Crossing, Direction, Dwell, LineId, Track, TrackId, ZoneId


@dataclass(frozen=True, slots=True)
class LineSpec:
    line_id: LineId
    x1: float
    y1: float
    x2: float
    y2: float
    band: float = 8.0  # hysteresis half-width, pixels
    margin: float = 0.1  # share of the line's length a crossing may fall beyond its ends

    def __post_init__(self) -> None:
        if math.hypot(self.x2 - self.x1, self.y2 - self.y1) < 1:
            raise ConfigError(f"line {self.line_id}: its two points are the same")

    @property
    def points(self) -> list[float]:
        return [self.x1, self.y1, self.x2, self.y2]

    @staticmethod
    def parse(text: str, line_id: str | None = None, band: float = 8.0) -> LineSpec:
        """``x1,y1,x2,y2`` as on the command line."""
        parts = text.replace(" ", "").split(",")
        try:
            values = [float(p) for p in parts]
        except ValueError:
            values = []
        if len(values) != 4 or not all(math.isfinite(v) for v in values):
            raise ConfigError(f"--line {text!r}: expected four numbers x1,y1,x2,y2")
        x1, y1, x2, y2 = values
        return LineSpec(LineId(line_id or text.replace(" ", "")), x1, y1, x2, y2, band=band)

    def check_inside(self, width: int, height: int) -> None:
        for x, y in ((self.x1, self.y1), (self.x2, self.y2)):
            if not (0 <= x <= width and 0 <= y <= height):
                raise ConfigError(
                    f"line {self.line_id}: point ({x:g},{y:g}) is outside the "
                    f"{width}x{height} frame"
                )

    def signed_distance(self, x: float, y: float) -> float:
        """Pixels from the line, positive on the ``in`` side."""
        nx, ny = self.y2 - self.y1, self.x1 - self.x2
        return ((x - self.x1) * nx + (y - self.y1) * ny) / math.hypot(nx, ny)

    def along(self, x: float, y: float) -> float:
        """Position of the point's projection along P1->P2: 0 at P1, 1 at P2."""
        dx, dy = self.x2 - self.x1, self.y2 - self.y1
        return ((x - self.x1) * dx + (y - self.y1) * dy) / (dx * dx + dy * dy)


@dataclass(frozen=True, slots=True)
class ZoneSpec:
    zone_id: ZoneId
    polygon: tuple[tuple[float, float], ...]

    def __post_init__(self) -> None:
        if len(self.polygon) < 3:
            raise ConfigError(f"zone {self.zone_id}: a polygon needs at least 3 points")

    def contains(self, x: float, y: float) -> bool:
        contour = np.asarray(self.polygon, dtype=np.float32).reshape(-1, 1, 2)
        return bool(cv2.pointPolygonTest(contour, (float(x), float(y)), False) >= 0)

    @staticmethod
    def parse(text: str, zone_id: str | None = None) -> ZoneSpec:
        """``x1,y1,x2,y2,x3,y3,...`` as on the command line."""
        try:
            values = [float(p) for p in text.replace(" ", "").split(",")]
        except ValueError:
            values = []
        if len(values) < 6 or len(values) % 2:
            raise ConfigError(f"--zone {text!r}: expected at least 3 points x1,y1,x2,y2,x3,y3")
        pts = tuple((values[i], values[i + 1]) for i in range(0, len(values), 2))
        return ZoneSpec(ZoneId(zone_id or "zone"), pts)


class LineCounter:
    """Counts crossings of one line by tracks, with hysteresis."""

    def __init__(self, spec: LineSpec) -> None:
        self.spec = spec
        self._side: dict[int, int] = {}  # track id -> -1 / +1, once known
        self.counts: dict[Direction, int] = {"in": 0, "out": 0}

    def update(self, tracks: tuple[Track, ...], ts: datetime, frame_index: int) -> list[Crossing]:
        crossings: list[Crossing] = []
        s = self.spec
        for tr in tracks:
            x, y = tr.foot
            d = s.signed_distance(x, y)
            if abs(d) <= s.band:
                continue  # inside the band: the side stays what it was
            side = 1 if d > 0 else -1
            before = self._side.get(tr.track_id)
            self._side[tr.track_id] = side
            if before is None or before == side:
                continue
            if not (-s.margin <= s.along(x, y) <= 1 + s.margin):
                continue  # passed beside the line, not across it
            direction: Direction = "in" if side > 0 else "out"
            self.counts[direction] += 1
            crossings.append(Crossing(s.line_id, direction, tr.track_id, ts, frame_index))
        return crossings

    def forget(self, live: set[TrackId]) -> None:
        for tid in [t for t in self._side if t not in live]:
            del self._side[tid]


@dataclass(slots=True)
class _Visit:
    entered: datetime
    last: datetime


@dataclass(slots=True)
class ZoneTracker:
    """Who is in a zone now, and how long each visit lasted."""

    spec: ZoneSpec
    visits: dict[TrackId, _Visit] = field(default_factory=dict)

    def update(
        self, tracks: tuple[Track, ...], ts: datetime, live: set[TrackId]
    ) -> tuple[int, list[Dwell]]:
        inside = {tr.track_id for tr in tracks if self.spec.contains(*tr.foot)}
        for tid in inside:
            visit = self.visits.get(tid)
            if visit is None:
                self.visits[tid] = _Visit(ts, ts)
            else:
                visit.last = ts
        ended: list[Dwell] = []
        # A visit ends when its track is seen outside the zone or is lost.
        seen = {tr.track_id for tr in tracks}
        for tid in list(self.visits):
            if tid in inside:
                continue
            if tid in seen or tid not in live:
                v = self.visits.pop(tid)
                ended.append(
                    Dwell(self.spec.zone_id, TrackId(tid), (v.last - v.entered).total_seconds(), ts)
                )
        # Occupancy counts every visit in progress, also people the detector briefly missed.
        return len(self.visits), ended

    def close(self, ts: datetime) -> list[Dwell]:
        ended = [
            Dwell(self.spec.zone_id, TrackId(tid), (v.last - v.entered).total_seconds(), ts)
            for tid, v in self.visits.items()
        ]
        self.visits.clear()
        return ended
