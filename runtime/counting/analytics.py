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
from collections.abc import Iterable, Mapping, Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field
from datetime import datetime

import cv2
import numpy as np
from edgetally.runtime.counting.passage import Person
from edgetally.runtime.errors import ConfigError
from edgetally.runtime.types import (
    Crossing,
    Direction,
    Dwell,
    FrameResult,
    LineId,
    Track,
    TrackId,
    ZoneEntry,
    ZoneId,
)


@dataclass(frozen=True, slots=True)
class LineSpec:
    line_id: LineId
    x1: float
    y1: float
    x2: float
    y2: float
    band: float = 8.0  # hysteresis half-width, pixels
    margin: float = 0.0  # share of the line's length a crossing may fall beyond its ends

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

    @property
    def points(self) -> list[float]:
        """The polygon as one flat list, x1, y1, x2, y2, ... (as ``--zone`` takes it)."""
        return [v for point in self.polygon for v in point]

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


@dataclass(slots=True)
class _LineState:
    """One person's relation to one line."""

    side: int | None = None  # -1 / +1 once the foot point was seen past the band
    raw: int = 0  # the side of the last foot point, band or not
    flip: tuple[datetime, int] | None = None  # first sighting on the ``raw`` side
    flip_along: float = 0.5  # where along the line the foot point passed to that side
    last: tuple[float, float] | None = None  # the last foot point
    born: bool = False  # first seen by this counter as a new person: check where from


class LineCounter:
    """Counts crossings of one line by people, with hysteresis.

    Without ``people`` every track is its own person. With them (:class:`PassageBook`), the
    state is kept per person, so a track lost before the line and found again past it
    still counts once; and a person first seen just past the line, walking away from it,
    whose own velocity puts them on the other side ``birth_lookback_s`` earlier (came out
    from behind a door frame, another person, the picture's edge) counts as crossing.
    A crossing is stamped with the first frame its foot point was seen past the line.
    """

    def __init__(
        self,
        spec: LineSpec,
        *,
        birth_lookback_s: float = 0.8,
        birth_min_age_s: float = 0.3,
        first_side_in_band: bool = True,
    ) -> None:
        self.spec = spec
        self.birth_lookback_s = birth_lookback_s
        self.birth_min_age_s = birth_min_age_s
        self.first_side_in_band = first_side_in_band
        self._state: dict[int, _LineState] = {}  # person (or track) id -> state
        self.counts: dict[Direction, int] = {"in": 0, "out": 0}

    def update(
        self,
        tracks: tuple[Track, ...],
        ts: datetime,
        frame_index: int,
        people: Mapping[TrackId, Person] | None = None,
    ) -> list[Crossing]:
        crossings: list[Crossing] = []
        s = self.spec
        for tr in tracks:
            person = people.get(tr.track_id) if people is not None else None
            key = person.person_id if person is not None else tr.track_id
            x, y = tr.foot
            d = s.signed_distance(x, y)
            raw = 1 if d > 0 else -1
            st = self._state.get(key)
            if st is None:
                born = person is not None and person.alone
                st = self._state[key] = _LineState(born=born)
                if not born and self.first_side_in_band:
                    st.side = raw  # seen first inside the band: which side of the line, still
            if raw != st.raw:
                st.raw, st.flip = raw, (ts, frame_index)
                st.flip_along = (
                    s.along(x, y) if st.last is None else _along_where_crossed(s, st.last, (x, y))
                )
            st.last = (x, y)
            if st.born and person is not None and person.age_s >= self.birth_min_age_s:
                st.born = False
                crossing = self._from_beyond(person, tr.track_id, st)
                if crossing is not None:
                    crossings.append(crossing)
            if abs(d) <= s.band:
                continue  # inside the band: the side stays what it was
            before, st.side = st.side, raw
            if before is None or before == raw:
                continue
            if not (-s.margin <= st.flip_along <= 1 + s.margin):
                continue  # passed beside the line, not across it
            when, frame = st.flip if st.flip is not None else (ts, frame_index)
            crossings.append(self._count(raw, tr.track_id, when, frame))
        return crossings

    def _count(self, side: int, track: TrackId, ts: datetime, frame_index: int) -> Crossing:
        direction: Direction = "in" if side > 0 else "out"
        self.counts[direction] += 1
        return Crossing(self.spec.line_id, direction, track, ts, frame_index)

    def _from_beyond(self, person: Person, track: TrackId, st: _LineState) -> Crossing | None:
        """Where a person first seen near the line came from: ``birth_lookback_s`` before
        their first sighting, by their own velocity. From beyond the band on one side, to
        the other side now (first seen there: out from behind a door frame, another person,
        the picture's edge): a crossing nobody saw. Still in the band: that side becomes
        where they came from, so settling on the other side counts as usual."""
        s, first, last = self.spec, person.first, person.last
        dt = last.t - first.t
        if dt <= 0:
            return None
        vx, vy = (last.x - first.x) / dt, (last.y - first.y) / dt
        bx, by = first.x - vx * self.birth_lookback_s, first.y - vy * self.birth_lookback_s
        db = s.signed_distance(bx, by)
        if abs(db) <= s.band:
            return None  # stood still, or walked along the line
        origin = 1 if db > 0 else -1
        if st.side is None:
            st.side = origin  # still in the band: the side they came from
            return None
        if st.side == origin:
            return None
        # Where the path from the back point to the latest sighting meets the line.
        d1 = s.signed_distance(last.x, last.y)
        share = db / (db - d1)
        if not (
            -s.margin
            <= s.along(bx + share * (last.x - bx), by + share * (last.y - by))
            <= 1 + s.margin
        ):
            return None
        d0 = s.signed_distance(first.x, first.y)
        if (d0 > 0) == (st.side > 0) or st.flip is None:
            when, frame = first.timestamp, first.frame_index
        else:
            when, frame = st.flip
        return self._count(st.side, track, when, frame)

    def forget(self, gone: Iterable[int]) -> None:
        """Drop the state of people (or tracks) that are gone for good."""
        for key in gone:
            self._state.pop(key, None)


def _along_where_crossed(s: LineSpec, a: tuple[float, float], b: tuple[float, float]) -> float:
    """Where along the line (0 at P1, 1 at P2) the step a->b meets it."""
    da, db = s.signed_distance(*a), s.signed_distance(*b)
    share = da / (da - db) if da != db else 1.0
    return s.along(a[0] + share * (b[0] - a[0]), a[1] + share * (b[1] - a[1]))


@dataclass(slots=True)
class _Visit:
    entered: datetime
    last: datetime
    track: TrackId  # the track that entered: the visit's name in entries and exits


@dataclass(slots=True)
class ZoneTracker:
    """Who is in a zone now, when each visit began and how long it lasted.

    A visit begins on the first frame a person's foot point is inside the zone and ends when
    they are seen outside it or are gone; its dwell is from its first to its last frame
    inside. With ``people`` (:class:`PassageBook`), a person whose track breaks inside the
    zone and goes on under a new id stays one visit; without, each track is a person.
    """

    spec: ZoneSpec
    visits: dict[int, _Visit] = field(default_factory=dict)  # person (or track) id -> visit

    def update(
        self,
        tracks: tuple[Track, ...],
        ts: datetime,
        live: AbstractSet[int],
        people: Mapping[TrackId, Person] | None = None,
    ) -> tuple[int, list[ZoneEntry], list[Dwell]]:
        """(people inside now, visits that began, visits that ended); ``live``: the people
        (or tracks) not gone yet."""

        def key(tr: Track) -> int:
            return people[tr.track_id].person_id if people is not None else tr.track_id

        inside = {key(tr): tr.track_id for tr in tracks if self.spec.contains(*tr.foot)}
        began: list[ZoneEntry] = []
        for k in sorted(inside):
            visit = self.visits.get(k)
            if visit is None:
                self.visits[k] = _Visit(ts, ts, inside[k])
                began.append(ZoneEntry(self.spec.zone_id, inside[k], ts))
            else:
                visit.last = ts
        ended: list[Dwell] = []
        # A visit ends when its person is seen outside the zone or is gone.
        seen = {key(tr) for tr in tracks}
        for k in list(self.visits):
            if k in inside:
                continue
            if k in seen or k not in live:
                v = self.visits.pop(k)
                ended.append(
                    Dwell(self.spec.zone_id, v.track, (v.last - v.entered).total_seconds(), ts)
                )
        # Occupancy counts every visit in progress, also people the detector briefly missed.
        return len(self.visits), began, ended

    def close(self, ts: datetime) -> list[Dwell]:
        ended = [
            Dwell(self.spec.zone_id, v.track, (v.last - v.entered).total_seconds(), ts)
            for v in self.visits.values()
        ]
        self.visits.clear()
        return ended


@dataclass(slots=True)
class ZoneSummary:
    """One zone over a whole run: visits, occupancy frame by frame, how long visits lasted.

    ``visits`` counts the visits that began (entries). Occupancy is over every frame fed,
    a frame the motion gate skipped holding the visits in progress, which at a steady frame
    rate is the device's time-weighted mean. Dwell is over the visits that ended, those
    closed when the source ended included (:meth:`add_dwells`).
    """

    spec: ZoneSpec
    visits: int = 0
    frames: int = 0
    occupancy_total: int = 0
    occupancy_max: int = 0
    dwells: list[float] = field(default_factory=list)

    def add(self, result: FrameResult) -> None:
        zone_id = self.spec.zone_id
        n = result.occupancy.get(zone_id, 0)
        self.frames += 1
        self.occupancy_total += n
        self.occupancy_max = max(self.occupancy_max, n)
        self.visits += sum(1 for e in result.entries if e.zone_id == zone_id)
        self.add_dwells(result.dwells)

    def add_dwells(self, dwells: Iterable[Dwell]) -> None:
        self.dwells.extend(d.seconds for d in dwells if d.zone_id == self.spec.zone_id)

    @property
    def occupancy_mean(self) -> float:
        return self.occupancy_total / self.frames if self.frames else 0.0

    def dwell_percentile(self, q: float) -> float | None:
        """The ``q``-th percentile of the ended visits' dwell, seconds; None when none."""
        return dwell_percentile(self.dwells, q)


def dwell_percentile(seconds: Sequence[float], q: float) -> float | None:
    """The ``q``-th percentile (linear interpolation, as the device's bucket dwell) of
    visit lengths in seconds; None when there are none."""
    if not seconds:
        return None
    return float(np.percentile(np.asarray(seconds, dtype=np.float64), q))
