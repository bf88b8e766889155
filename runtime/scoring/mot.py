"""MOTChallenge ground truth, and line-crossing truth derived from it.

The truth uses the same convention as the device: the foot point (bottom-centre) of each
annotated box, a crossing when it moves from one side of the line to the other between two
annotations of the same person, ``in`` toward the side (y2-y1, x1-x2) points to, and only
when the path passes between the line's two ends.
"""

from __future__ import annotations

import itertools
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

from edgetally.runtime.counting.analytics import LineSpec
from edgetally.runtime.errors import SourceError
from edgetally.runtime.scoring.matching import Event
from edgetally.runtime.scoring.references import ReferenceLine
from edgetally.runtime.types import foot_point


@dataclass(frozen=True, slots=True)
class GtBox:
    frame: int
    track: int
    x: float
    y: float
    w: float
    h: float

    @property
    def foot(self) -> tuple[float, float]:
        return foot_point(self.x, self.y, self.x + self.w, self.y + self.h)


def read_gt(seq_dir: Path) -> list[GtBox]:
    path = seq_dir / "gt" / "gt.txt"
    if not path.is_file():
        raise SourceError(f"not a MOT sequence: {path} is missing")
    boxes = []
    for n, row in enumerate(path.read_text().splitlines(), 1):
        if not row.strip():
            continue
        parts = row.split(",")
        try:
            frame, track = int(float(parts[0])), int(float(parts[1]))
            x, y, w, h = (float(v) for v in parts[2:6])
            flag = float(parts[6]) if len(parts) > 6 else 1.0
        except (ValueError, IndexError) as exc:
            raise SourceError(f"{path}:{n}: not a MOT row ({exc})") from exc
        if flag == 0:  # MOT16+: an annotation to ignore
            continue
        boxes.append(GtBox(frame, track, x, y, w, h))
    return boxes


def _segments_cross(line: LineSpec, a: tuple[float, float], b: tuple[float, float]) -> bool:
    """Whether the step a->b passes between the line's two ends."""
    da, db = line.signed_distance(*a), line.signed_distance(*b)
    if da == db:
        return False
    t = da / (da - db)
    x = a[0] + t * (b[0] - a[0])
    y = a[1] + t * (b[1] - a[1])
    return 0.0 <= line.along(x, y) <= 1.0


def true_events(boxes: list[GtBox], line: LineSpec, fps: float) -> list[Event]:
    """Each crossing of ``line`` by the annotated people, at the time of the first frame past
    it (seconds from the sequence's first frame, frame 1)."""
    by_track: dict[int, list[GtBox]] = defaultdict(list)
    for box in boxes:
        by_track[box.track].append(box)
    events: list[Event] = []
    for track in by_track.values():
        track.sort(key=lambda b: b.frame)
        for prev, cur in itertools.pairwise(track):
            a, b = prev.foot, cur.foot
            da, db = line.signed_distance(*a), line.signed_distance(*b)
            if (da < 0 <= db or db < 0 <= da) and da != db and _segments_cross(line, a, b):
                events.append(Event((cur.frame - 1) / fps, "in" if db >= 0 else "out"))
    return sorted(events, key=lambda e: e.t)


def true_counts(boxes: list[GtBox], line: LineSpec) -> tuple[int, int]:
    """(in, out) crossings of ``line`` by the annotated people."""
    events = true_events(boxes, line, 1.0)
    n_in = sum(1 for e in events if e.dir == "in")
    return n_in, len(events) - n_in


def true_lines(boxes: list[GtBox], lines: list[LineSpec], fps: float) -> list[ReferenceLine]:
    """Each line with its true crossings from the annotations: a reference, as a file gives."""
    return [
        ReferenceLine((s.x1, s.y1, s.x2, s.y2), tuple(true_events(boxes, s, fps))) for s in lines
    ]
