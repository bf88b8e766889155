"""One person across the breaks in their track: joined pieces, people first seen past a
line, boxes cut by the picture's border; the detector on a region of the picture."""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import Any, cast

import numpy as np
import pytest
from edgetally.runtime.counting.analytics import LineCounter, LineSpec, ZoneSpec, ZoneTracker
from edgetally.runtime.counting.detectors import Detector
from edgetally.runtime.counting.passage import PassageBook
from edgetally.runtime.counting.pipeline import build_pipeline, parse_roi
from edgetally.runtime.counting.tracker import ByteTracker
from edgetally.runtime.errors import ConfigError
from edgetally.runtime.types import Detections, Frame, Track, ZoneId

from tests.runtime.footfall_support import BlobDetector, at, painted, person

FPS = 25


def run(
    counter: LineCounter, frames: Sequence[Sequence[Track]], book: PassageBook | None = None
) -> list[tuple[str, int]]:
    """Each frame's tracks through the book (a fresh one by default) and the counter: the
    crossings as (direction, frame index)."""
    book = book or PassageBook()
    out: list[tuple[str, int]] = []
    for i, tracks in enumerate(frames):
        t = i / FPS
        people = book.observe(tracks, t, at(i), i)
        crossings = counter.update(tuple(tracks), at(i), i, people)
        out += [(c.direction, c.frame_index) for c in crossings]
        counter.forget(book.expire(t, {tr.track_id for tr in tracks}))
    return out


def walk_x(x0: float, step: float, frames: range, track_id: int) -> dict[int, Track]:
    return {i: person(track_id, x0 + step * i, 100) for i in frames}


def scene(n: int, *pieces: dict[int, Track]) -> list[list[Track]]:
    return [[p[i] for p in pieces if i in p] for i in range(n)]


def test_a_track_lost_before_the_line_and_found_past_it_counts_once() -> None:
    # Walks right at 4 px a frame; the tracker loses them at x=96 and finds them again
    # at x=140 under a new id, half a second later.
    frames = scene(40, walk_x(40, 4, range(0, 15), 1), walk_x(40, 4, range(25, 40), 2))
    assert run(LineCounter(LineSpec.parse("100,0,100,200")), frames) == [("in", 25)]
    # Without the book the same pieces count nothing: the crossing fell in the gap.
    plain = LineCounter(LineSpec.parse("100,0,100,200"))
    crossings = [c for i, tr in enumerate(frames) for c in plain.update(tuple(tr), at(i), i)]
    assert crossings == []


def test_a_new_track_far_from_where_the_lost_one_was_heading_is_someone_else() -> None:
    # Lost at x=96 walking right; a track starts at x=140 walking right, but 200 px lower,
    # beside the line's lower end: not the lost person, and not across the line.
    first = walk_x(40, 4, range(0, 15), 1)
    other = {i: person(2, 40 + 4 * i, 300) for i in range(25, 40)}
    assert run(LineCounter(LineSpec.parse("100,0,100,200")), scene(40, first, other)) == []


def test_a_person_first_seen_past_the_line_walking_away_counts() -> None:
    # Someone steps out from behind a door frame at x=110 and walks right: on the other side
    # of the line a moment before, by their own pace. Someone standing there does not count.
    walker = walk_x(110 - 4 * 10, 4, range(10, 40), 1)
    stander = {i: person(2, 130, 300) for i in range(10, 40)}
    frames = scene(40, {0: person(9, 600, 300)}, walker, stander)
    assert run(LineCounter(LineSpec.parse("100,0,100,400")), frames) == [("in", 10)]


def test_people_on_the_first_frame_were_there_before() -> None:
    frames = scene(30, walk_x(110, 4, range(0, 30), 1))
    assert run(LineCounter(LineSpec.parse("100,0,100,200")), frames) == []


def test_a_crossing_is_stamped_with_the_first_frame_past_the_line() -> None:
    # Foot at x = 82, 86, ..., frame 5 at 102 (past the line, inside the 8 px band).
    frames = scene(20, walk_x(82, 4, range(0, 20), 1))
    assert run(LineCounter(LineSpec.parse("100,0,100,200")), frames) == [("in", 5)]


def test_a_box_cut_by_the_border_keeps_its_whole_size() -> None:
    tracker = ByteTracker()
    bounds = (0.0, 0.0, 640.0, 480.0)
    # A person 100 px tall walks down out of the picture's bottom edge.
    feet = []
    for i in range(30):
        top = 300 + 5 * i
        box = np.array([[200, top, 240, min(top + 100, 480)]], np.float32)
        tracks = tracker.update(
            Detections(box, np.array([0.9], np.float32), np.zeros(1, np.int32)), i / FPS, bounds
        )
        feet += [tr.foot[1] for tr in tracks]
    assert feet[0] == 400
    # Without the correction the foot would stop at the border (480); it keeps moving.
    assert feet[-1] == 300 + 5 * 29 + 100
    assert all(b > a for a, b in itertools.pairwise(feet))


def test_without_the_frame_size_boxes_stay_as_detected() -> None:
    tracker = ByteTracker()
    box = np.array([[200, 430, 240, 480]], np.float32)
    tracks = tracker.update(
        Detections(box, np.array([0.9], np.float32), np.zeros(1, np.int32)), 0.0
    )
    assert tracks[0].foot == (220.0, 480.0)


class _SeenShapes(BlobDetector):
    """The blob detector, noting the shape of every image it was given."""

    def __init__(self) -> None:
        self.shapes: list[tuple[int, ...]] = []

    def detect(self, image: Any) -> Detections:
        self.shapes.append(tuple(np.asarray(image).shape))
        return super().detect(image)


def test_a_region_of_interest_is_all_the_detector_sees_and_counts_stay_in_the_frame() -> None:
    # A person walks right along y=200 across x=160; a second one walks back and forth
    # outside the region (x 10..40): the detector never sees them.
    detector = _SeenShapes()
    pipeline = build_pipeline(
        cast(Detector, detector), ["160,120,160,230"], gate=False, roi=(100.0, 100.0, 300.0, 240.0)
    )
    crossings = []
    for i in range(40):
        image = painted([(110 + 4 * i, 200), (20 + (i % 2) * 20, 200)])
        result = pipeline.process(Frame(image, i, at(i)))
        crossings += [(c.direction, c.frame_index) for c in result.crossings]
        assert all(tr.xyxy[0] > 60 for tr in result.tracks)  # frame pixels, not the region's
    assert set(detector.shapes) == {(140, 200, 3)}
    assert crossings == [("in", 13)]  # foot x 110 + 4 * 13 = 162: first frame past 160


def test_a_region_outside_the_picture_is_one_error() -> None:
    pipeline = build_pipeline(
        cast(Detector, BlobDetector()), ["160,120,160,230"], roi=(100.0, 100.0, 400.0, 240.0)
    )
    with pytest.raises(ConfigError, match="roi 100,100,400,240: outside the 320x240 frame"):
        pipeline.process(Frame(painted([]), 0, at(0)))
    with pytest.raises(ConfigError, match="four numbers"):
        parse_roi("1,2,3")


def test_a_track_broken_inside_a_zone_is_one_visit() -> None:
    # Walks right through the zone x 100..200; lost at x=136, found again at x=160 under a
    # new id half a second later: one visit (two without the book).
    zone = ZoneSpec(ZoneId("z"), ((100, 0), (200, 0), (200, 200), (100, 200)))
    frames = scene(60, walk_x(40, 4, range(0, 25), 1), walk_x(40, 4, range(30, 60), 2))

    names: list[tuple[str, int]] = []

    def visits(with_book: bool) -> tuple[int, list[float]]:
        tracker, book, entries, dwells = ZoneTracker(zone), PassageBook(), 0, []
        names.clear()
        for i, tracks in enumerate(frames):
            live = {tr.track_id for tr in tracks}
            if with_book:
                people = book.observe(tracks, i / FPS, at(i), i)
                book.expire(i / FPS, live)
                _, began, ended = tracker.update(tuple(tracks), at(i), book.present, people)
            else:
                _, began, ended = tracker.update(tuple(tracks), at(i), set(live))
            entries += len(began)
            dwells += [d.seconds for d in ended]
            names.extend([("enter", e.track_id) for e in began])
            names.extend([("exit", d.track_id) for d in ended])
        return entries, dwells

    entries, dwells = visits(with_book=True)
    assert entries == 1 and dwells == pytest.approx([(40 - 15) / FPS])
    assert names == [("enter", 1), ("exit", 1)]  # the visit keeps the name it entered with
    assert visits(with_book=False)[0] == 2
