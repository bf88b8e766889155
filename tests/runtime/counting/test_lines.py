"""Line crossing: the direction convention, the hysteresis band, the segment's ends."""

from __future__ import annotations

from collections.abc import Sequence

import pytest
from edgetally.runtime.counting.analytics import LineCounter, LineSpec, ZoneSpec, ZoneTracker
from edgetally.runtime.errors import ConfigError
from edgetally.runtime.types import TrackId, ZoneId

from tests.runtime.footfall_support import at, person


def walk(
    counter: LineCounter, points: Sequence[tuple[float, float]], track_id: int = 1
) -> list[str]:
    dirs: list[str] = []
    for i, (x, y) in enumerate(points):
        dirs += [c.direction for c in counter.update((person(track_id, x, y),), at(i), i)]
    return dirs


def test_top_to_bottom_line_counts_moving_right_as_in() -> None:
    counter = LineCounter(LineSpec.parse("100,0,100,200"))
    assert walk(counter, [(60 + 5 * i, 100) for i in range(20)]) == ["in"]
    assert walk(counter, [(160 - 5 * i, 100) for i in range(20)], track_id=2) == ["out"]
    assert counter.counts == {"in": 1, "out": 1}


def test_left_to_right_line_counts_moving_up_as_in() -> None:
    counter = LineCounter(LineSpec.parse("0,100,200,100"))
    assert walk(counter, [(100, 150 - 5 * i) for i in range(20)]) == ["in"]
    assert walk(counter, [(100, 50 + 5 * i) for i in range(20)], track_id=2) == ["out"]


def test_jitter_on_the_line_does_not_count() -> None:
    counter = LineCounter(LineSpec.parse("100,0,100,200", band=8))
    # Start well left, then wobble +-6 px around the line for a long time.
    path = [(60.0, 100.0), (80.0, 100.0)] + [(100 + (6 if i % 2 else -6), 100) for i in range(50)]
    assert walk(counter, path) == []


def test_back_and_forth_counts_each_real_crossing() -> None:
    counter = LineCounter(LineSpec.parse("100,0,100,200"))
    path = [(70, 100), (130, 100), (70, 100), (130, 100), (70, 100)]
    assert walk(counter, path) == ["in", "out", "in", "out"]
    assert counter.counts == {"in": 2, "out": 2}


def test_passing_beside_the_line_does_not_count() -> None:
    counter = LineCounter(LineSpec.parse("100,0,100,200"))
    assert walk(counter, [(60 + 5 * i, 400) for i in range(20)]) == []


def test_line_parsing_and_frame_check() -> None:
    with pytest.raises(ConfigError, match="four numbers"):
        LineSpec.parse("1,2,3")
    with pytest.raises(ConfigError, match="same"):
        LineSpec.parse("5,5,5,5")
    with pytest.raises(ConfigError, match="outside"):
        LineSpec.parse("0,0,900,100").check_inside(640, 480)


def test_zone_occupancy_and_dwell() -> None:
    zone = ZoneTracker(ZoneSpec(ZoneId("z"), ((0, 0), (100, 0), (100, 100), (0, 100))))
    live = {TrackId(1), TrackId(2)}
    n, began, ended = zone.update((person(1, 50, 50), person(2, 300, 50)), at(0), live)
    assert (n, [e.track_id for e in began], ended) == (1, [1], [])
    n, began, ended = zone.update((person(1, 60, 50), person(2, 50, 50)), at(25), live)
    assert n == 2 and [e.track_id for e in began] == [2] and ended == []
    # Track 1 leaves after 2 s inside; track 2 is lost after 1 s.
    n, began, ended = zone.update((person(1, 300, 50),), at(50), {TrackId(1)})
    assert n == 0 and began == []
    assert sorted((d.track_id, d.seconds) for d in ended) == [(1, 1.0), (2, 0.0)]
