"""Zones over a whole run: visits (entries), occupancy on every frame, dwell percentiles."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any, cast

import pytest
from edgetally.runtime.counting.analytics import (
    ZoneSpec,
    ZoneSummary,
    ZoneTracker,
    dwell_percentile,
)
from edgetally.runtime.counting.detectors import Detector
from edgetally.runtime.counting.pipeline import build_pipeline, run_count
from edgetally.runtime.types import Dwell, Frame, FrameResult, TrackId, ZoneEntry, ZoneId

from tests.runtime.footfall_support import BlobDetector, at, painted, person

ZONE = "100,150,200,150,200,230,100,230"
# One person walking right along y 200, 5 px a frame at 25 frames per second: the foot
# point is inside the zone (x 100..200) from frame 14 (x 100) to frame 34 (x 200).
WALK = [(30 + 5 * i, 200) for i in range(55)]
ENTRY, LAST_INSIDE = 14, 34


class Frames:
    """A source of synthetic frames at 25 frames per second."""

    name = "walk"
    fps = 25.0
    live = False

    def __init__(self, images: Sequence[Any]) -> None:
        self.images = images

    def __iter__(self) -> Iterator[Frame]:
        for i, image in enumerate(self.images):
            yield Frame(image, i, at(i))

    def close(self) -> None:
        pass


def count_walk(feet: Sequence[tuple[int, int]]) -> tuple[Any, list[FrameResult]]:
    pipeline = build_pipeline(cast(Detector, BlobDetector()), zones=[ZONE], gate=False)
    results: list[FrameResult] = []
    report = run_count(
        Frames([painted([f]) for f in feet]),
        pipeline,
        lambda _frame, result: results.append(result),
    )
    return report, results


def test_a_walk_into_and_out_of_a_zone_is_one_visit_with_its_dwell() -> None:
    report, results = count_walk(WALK)
    (zone,) = report.zones
    dwell = (LAST_INSIDE - ENTRY) / 25  # first to last frame inside: 0.8 s
    assert zone == {
        "zone": [100, 150, 200, 150, 200, 230, 100, 230],
        "zone_id": "zone1",
        "visits": 1,
        "occupancy_mean": round((LAST_INSIDE - ENTRY + 1) / len(WALK), 4),
        "occupancy_max": 1,
        "dwell_p50_s": dwell,
        "dwell_p90_s": dwell,
    }
    assert report.as_json()["zones"] == [zone]
    entries = [(r.frame_index, e) for r in results for e in r.entries]
    assert [(i, e.zone_id) for i, e in entries] == [(ENTRY, "zone1")]
    assert entries[0][1].timestamp == at(ENTRY)
    # The visit ends on the first frame seen outside; its dwell is to the last inside.
    exits = [(r.frame_index, d) for r in results for d in r.dwells]
    assert [(i, d.seconds) for i, d in exits] == [(LAST_INSIDE + 1, dwell)]
    assert entries[0][1].track_id == exits[0][1].track_id
    assert [r.occupancy[ZoneId("zone1")] for r in results].count(1) == LAST_INSIDE - ENTRY + 1
    assert report.closed == ()


def test_a_visit_in_progress_when_the_source_ends_is_closed_and_counted() -> None:
    report, results = count_walk(WALK[:25])  # stops at x 150, inside
    (zone,) = report.zones
    assert zone["visits"] == 1
    assert zone["dwell_p50_s"] == zone["dwell_p90_s"] == (24 - ENTRY) / 25
    assert [d.seconds for d in report.closed] == [(24 - ENTRY) / 25]
    assert report.closed[0].timestamp == at(24)
    assert not any(r.dwells for r in results)


def test_nobody_in_the_zone_reports_zeros_and_no_dwell() -> None:
    report, _ = count_walk([(30, 200)] * 10)  # standing left of the zone
    assert report.zones[0]["visits"] == 0
    assert report.zones[0]["occupancy_mean"] == 0.0
    assert report.zones[0]["dwell_p50_s"] is None and report.zones[0]["dwell_p90_s"] is None


def _result(i: int, occupancy: int, inferred: bool, **kw: Any) -> FrameResult:
    return FrameResult(i, at(i), (), (), {ZoneId("z"): occupancy}, (), inferred, **kw)


def test_occupancy_is_over_every_frame_the_skipped_ones_holding_the_visits() -> None:
    summary = ZoneSummary(ZoneSpec(ZoneId("z"), ((0, 0), (9, 0), (9, 9))))
    entry = ZoneEntry(ZoneId("z"), TrackId(1), at(0))
    other = ZoneEntry(ZoneId("other"), TrackId(2), at(0))
    summary.add(_result(0, 1, True, entries=(entry, other)))
    for i in range(1, 4):  # the motion gate skipped these: the visit in progress holds
        summary.add(_result(i, 1, False))
    summary.add(_result(4, 3, True))
    summary.add(_result(5, 0, True))
    assert summary.visits == 1  # the other zone's entry is not this zone's
    assert summary.frames == 6
    assert summary.occupancy_mean == 7 / 6 and summary.occupancy_max == 3
    summary.add_dwells(
        [Dwell(ZoneId("z"), TrackId(1), 2.0, at(5)), Dwell(ZoneId("other"), TrackId(2), 9.0, at(5))]
    )
    assert summary.dwells == [2.0]


def test_dwell_percentiles_interpolate_as_the_device_buckets_do() -> None:
    assert dwell_percentile([], 50) is None
    assert dwell_percentile([1.0, 2.0, 3.0, 4.0, 10.0], 50) == 3.0
    assert dwell_percentile([1.0, 2.0, 3.0, 4.0, 10.0], 90) == pytest.approx(4.0 + 0.6 * 6.0)


def test_the_tracker_says_which_visits_began() -> None:
    zone = ZoneTracker(ZoneSpec(ZoneId("z"), ((0, 0), (100, 0), (100, 100), (0, 100))))
    live = {TrackId(1), TrackId(2)}
    n, began, ended = zone.update((person(2, 50, 50), person(1, 60, 50)), at(0), live)
    assert n == 2 and ended == []
    assert [(e.zone_id, e.track_id, e.timestamp) for e in began] == [
        ("z", 1, at(0)),
        ("z", 2, at(0)),
    ]
    n, began, ended = zone.update((person(1, 61, 50), person(2, 51, 50)), at(1), live)
    assert (n, began, ended) == (2, [], [])  # still inside: no new visit
