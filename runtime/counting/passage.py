"""One person's passage through the picture, across the breaks in their track.

A tracker loses people: behind someone else, behind a lamp post, when the detector misses
them for a second. When it finds them again it starts a new track, and a line counter that
knows only track ids sees a track that vanished on one side of the line and a stranger
who appeared on the other: the crossing between them is lost. The book below joins such
pieces: a new track that starts where a recently lost one was heading (its foot point
moved on by the lost track's own velocity, within a fraction of the person's height, with a
similar box height) continues that person. The counters key their state by person, not by
track, so the crossing is counted when the continued person settles on the far side.

Counting with this look-ahead stays local: a new track is joined to a person lost at most
``join_s`` seconds ago, so a crossing is decided at most that much later than it happened,
and it is stamped with the time it happened (the first frame seen past the line).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime

from edgetally.runtime.types import Track, TrackId


@dataclass(frozen=True, slots=True)
class PassageConfig:
    join_s: float = 1.0  # how long a lost person may be joined by a new track
    join_radius: float = 0.6  # of the person's box height: predicted vs found foot point
    join_size_ratio: float = 1.6  # box heights may differ by this factor at most
    near_radius: float = 1.5  # of the height: a lost person this close makes a new one "not alone"
    velocity_s: float = 0.6  # window over which a person's velocity is measured


@dataclass(frozen=True, slots=True)
class Sighting:
    """Where a person's foot point was, and when."""

    t: float  # seconds since the stream's first inferred frame
    x: float
    y: float
    timestamp: datetime
    frame_index: int


@dataclass(slots=True)
class Person:
    """The pieces of track that are one person, as far as can be told."""

    person_id: int  # numbered by the book, in order of first sight
    track_id: TrackId  # the piece seen last
    first: Sighting
    last: Sighting
    height: float
    recent: deque[Sighting] = field(default_factory=lambda: deque(maxlen=32))
    joined: bool = False  # continued from an earlier track
    alone: bool = True  # when first seen, no lost person was anywhere near

    def velocity(self, window_s: float) -> tuple[float, float]:
        """Pixels per second over the last ``window_s`` seconds (0, 0 when unknown)."""
        last = self.last
        oldest = last
        for s in reversed(self.recent):
            if last.t - s.t > window_s:
                break
            oldest = s
        dt = last.t - oldest.t
        if dt <= 0:
            return 0.0, 0.0
        return (last.x - oldest.x) / dt, (last.y - oldest.y) / dt

    @property
    def age_s(self) -> float:
        return self.last.t - self.first.t


class PassageBook:
    """Track ids to people, joining a new track to the person it continues."""

    def __init__(self, config: PassageConfig | None = None) -> None:
        self.config = config or PassageConfig()
        self._by_track: dict[TrackId, Person] = {}
        self._people: dict[int, Person] = {}
        self._started = False  # people on the first frame were there before the stream
        self._next_id = 0

    def observe(
        self, tracks: Iterable[Track], t: float, timestamp: datetime, frame_index: int
    ) -> dict[TrackId, Person]:
        """The person of each track seen on this frame; new tracks joined where they fit."""
        seen: dict[TrackId, Person] = {}
        new: list[tuple[Track, Sighting]] = []
        for tr in tracks:
            x, y = tr.foot
            sighting = Sighting(t, x, y, timestamp, frame_index)
            person = self._by_track.get(tr.track_id)
            if person is None:
                new.append((tr, sighting))
                continue
            self._see(person, tr, sighting)
            seen[tr.track_id] = person
        for tr, sighting, person, alone in self._join(new, t, set(map(id, seen.values()))):
            if person is None:
                self._next_id += 1
                person = Person(self._next_id, tr.track_id, sighting, sighting, _height(tr))
                person.alone = alone and self._started
                person.recent.append(sighting)
                self._people[person.person_id] = person
            else:
                person.joined = True
                # One track per person: the earlier piece, if it comes back, is someone else.
                self._by_track.pop(person.track_id, None)
                self._see(person, tr, sighting)
            self._by_track[tr.track_id] = person
            seen[tr.track_id] = person
        self._started = True
        return seen

    def expire(self, t: float, live: set[TrackId]) -> set[int]:
        """Forget people whose tracks are gone and who can no longer be joined; their ids."""
        gone = {
            pid
            for pid, p in self._people.items()
            if p.track_id not in live and t - p.last.t > self.config.join_s
        }
        for pid in gone:
            del self._people[pid]
        self._by_track = {k: p for k, p in self._by_track.items() if p.person_id not in gone}
        return gone

    @property
    def present(self) -> set[int]:
        """The people not gone yet: seen, or lost recently enough to be joined."""
        return set(self._people)

    def _see(self, person: Person, tr: Track, sighting: Sighting) -> None:
        person.track_id = tr.track_id
        person.last = sighting
        person.recent.append(sighting)
        person.height = 0.7 * person.height + 0.3 * _height(tr)

    def _join(
        self, new: list[tuple[Track, Sighting]], t: float, taken: set[int]
    ) -> list[tuple[Track, Sighting, Person | None, bool]]:
        """Each new track with the lost person it continues (None: a new person), and
        whether no lost person was near it at all. Closest pairs first, each joined once."""
        cfg = self.config
        lost = [
            p
            for p in self._people.values()
            if id(p) not in taken and 0 < t - p.last.t <= cfg.join_s
        ]
        pairs: list[tuple[float, int, Person]] = []
        crowded: set[int] = set()
        for i, (tr, s) in enumerate(new):
            h = _height(tr)
            for p in lost:
                gap = s.t - p.last.t
                vx, vy = p.velocity(cfg.velocity_s)
                px, py = p.last.x + vx * gap, p.last.y + vy * gap
                scale = max(p.height, h)
                distance = ((s.x - px) ** 2 + (s.y - py) ** 2) ** 0.5 / scale
                near = ((s.x - p.last.x) ** 2 + (s.y - p.last.y) ** 2) ** 0.5 / scale
                if min(distance, near) <= cfg.near_radius:
                    crowded.add(i)
                if max(h, p.height) / max(min(h, p.height), 1.0) > cfg.join_size_ratio:
                    continue
                if distance <= cfg.join_radius:
                    pairs.append((distance, i, p))
        pairs.sort(key=lambda item: item[0])
        chosen: dict[int, Person] = {}
        used: set[int] = set()
        for _, i, p in pairs:
            if i in chosen or id(p) in used:
                continue
            chosen[i] = p
            used.add(id(p))
        return [(tr, s, chosen.get(i), i not in crowded) for i, (tr, s) in enumerate(new)]


def _height(tr: Track) -> float:
    return max(tr.xyxy[3] - tr.xyxy[1], 1.0)
