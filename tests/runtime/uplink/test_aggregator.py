"""Aggregator: buckets by frame time, per-line in/out, time-weighted occupancy, dwell."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Literal

import pytest
from edgetally.models.wire import Aggregate, from_json, to_json
from edgetally.runtime.errors import ConfigError
from edgetally.runtime.types import (
    Crossing,
    Direction,
    Dwell,
    FrameResult,
    LineId,
    TrackId,
    ZoneId,
)
from edgetally.runtime.uplink.aggregator import Aggregator, dwell_stats
from hypothesis import given, settings
from hypothesis import strategies as st

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


def frame(
    i: int,
    t: float,
    *,
    cross: tuple[tuple[str, Direction], ...] = (),
    occ: dict[str, int] | None = None,
    dwell: tuple[tuple[str, float], ...] = (),
) -> FrameResult:
    ts = T0 + timedelta(seconds=t)
    return FrameResult(
        frame_index=i,
        timestamp=ts,
        tracks=(),
        crossings=tuple(
            Crossing(LineId(line), d, TrackId(k), ts, i) for k, (line, d) in enumerate(cross)
        ),
        occupancy={ZoneId(z): n for z, n in (occ or {}).items()},
        dwells=tuple(Dwell(ZoneId(z), TrackId(0), s, ts) for z, s in dwell),
        inferred=True,
    )


def test_crossings_land_in_the_bucket_of_their_frame() -> None:
    agg = Aggregator(["door", "side"], bucket_seconds=10)
    closed = []
    closed += agg.add(frame(0, 0.0, cross=(("door", "in"),)))
    closed += agg.add(frame(1, 5.0, cross=(("door", "in"), ("door", "out"))))
    closed += agg.add(frame(2, 12.0, cross=(("door", "out"),)))
    assert len(closed) == 1
    b = closed[0]
    assert b.start == T0 and b.seconds == 10 and b.first_frame == 0 and b.next_frame == 2
    by = {d.counter: d for d in b.drafts}
    assert (by["door"].in_count, by["door"].out_count) == (2, 1)
    assert (by["side"].in_count, by["side"].out_count) == (0, 0)  # zeros are emitted
    last = agg.flush(next_frame=3)
    assert last is not None and last.start == T0 + timedelta(seconds=10)
    assert {d.counter: d.out_count for d in last.drafts}["door"] == 1
    assert agg.totals == {"door": [2, 2], "side": [0, 0]}
    assert agg.flush(next_frame=3) is None


def test_buckets_are_aligned_to_the_epoch() -> None:
    agg = Aggregator(["l"], bucket_seconds=60)
    agg.add(frame(0, 37.5))
    b = agg.flush(1)
    assert b is not None and b.start == T0


def test_occupancy_is_time_weighted_and_split_at_boundaries() -> None:
    agg = Aggregator([], ["till"], bucket_seconds=10)
    agg.add(frame(0, 0.0, occ={"till": 0}))
    agg.add(frame(1, 5.0, occ={"till": 2}))  # 0 for 5 s
    closed = agg.add(frame(2, 15.0, occ={"till": 1}))  # 2 from 5 s to 15 s, split at 10 s
    (b,) = closed
    (z,) = b.drafts
    assert z.occupancy_mean == pytest.approx(1.0)  # (0*5 + 2*5) / 10
    assert z.occupancy_peak == 2
    nxt = agg.add(frame(3, 20.0, occ={"till": 0}))
    (b2,) = nxt
    (z2,) = b2.drafts
    # 2 for 10-15 s, 1 for 15-20 s; the carried-in 2 counts towards the peak.
    assert z2.occupancy_mean == pytest.approx(1.5)
    assert z2.occupancy_peak == 2


def test_a_single_frame_bucket_uses_its_occupancy() -> None:
    agg = Aggregator([], ["z"], bucket_seconds=10)
    agg.add(frame(0, 3.0, occ={"z": 4}))
    b = agg.flush(1)
    assert b is not None
    assert (b.drafts[0].occupancy_mean, b.drafts[0].occupancy_peak) == (4.0, 4)


def test_a_gap_in_the_source_emits_no_empty_buckets() -> None:
    agg = Aggregator(["l"], ["z"], bucket_seconds=10)
    agg.add(frame(0, 1.0, occ={"z": 3}))
    closed = agg.add(frame(1, 55.0, occ={"z": 0}))
    assert [b.start for b in closed] == [T0]
    last = agg.flush(2)
    assert last is not None and last.start == T0 + timedelta(seconds=50)
    zone = next(d for d in last.drafts if d.counter == "z")
    # Not carried across the gap: the source was not looking.
    assert zone.occupancy_peak == 0 and zone.occupancy_mean == 0.0


def test_dwell_stats() -> None:
    agg = Aggregator([], ["z"], bucket_seconds=60)
    agg.add(frame(0, 0.0, dwell=(("z", 4.0), ("z", 10.0))))
    agg.add(frame(1, 1.0, dwell=(("z", 2.0),)))
    b = agg.flush(2)
    assert b is not None
    d = b.drafts[0].dwell
    assert d is not None and d.count == 3 and d.median_s == 4.0
    assert d.p90_s == pytest.approx(8.8)
    assert dwell_stats([]) is None


def test_drafts_become_valid_wire_messages() -> None:
    agg = Aggregator(["door"], ["till"], bucket_seconds=60)
    agg.add(frame(0, 0.0, cross=(("door", "in"),), occ={"till": 1}, dwell=(("till", 3.0),)))
    b = agg.flush(1)
    assert b is not None
    for seq, draft in enumerate(b.drafts):
        msg = draft.to_message(site="shop-1", device="dev-1", source="cam0", seq=seq)
        assert from_json(Aggregate, to_json(msg)) == msg


def test_bad_bucket_seconds() -> None:
    with pytest.raises(ConfigError, match="bucket seconds"):
        Aggregator(["l"], bucket_seconds=0)


def test_unknown_line_is_counted_not_lost() -> None:
    agg = Aggregator(["a"], bucket_seconds=60)
    agg.add(frame(0, 0.0, cross=(("b", "in"),)))
    b = agg.flush(1)
    assert b is not None and {d.counter for d in b.drafts} == {"a", "b"}


events = st.lists(
    st.tuples(
        st.floats(0.0, 3.0),  # time step
        st.sampled_from(["", "in", "out"]),
        st.integers(0, 9),  # occupancy
    ),
    min_size=1,
    max_size=60,
)


@settings(max_examples=60, deadline=None)
@given(events, st.integers(1, 20))
def test_nothing_is_lost_and_mean_never_exceeds_peak(
    steps: list[tuple[float, Literal["", "in", "out"], int]], bucket: int
) -> None:
    agg = Aggregator(["l"], ["z"], bucket_seconds=bucket)
    t, buckets, want = 0.0, [], [0, 0]
    for i, (dt, d, occ) in enumerate(steps):
        t += dt
        cross: tuple[tuple[str, Direction], ...] = ()
        if d in ("in", "out"):
            cross = (("l", d),)
            want[0 if d == "in" else 1] += 1
        buckets += agg.add(frame(i, t, cross=cross, occ={"z": occ}))
    last = agg.flush(len(steps))
    assert last is not None
    buckets.append(last)
    starts = [b.start for b in buckets]
    assert starts == sorted(set(starts))
    lines = [d for b in buckets for d in b.drafts if d.kind == "line"]
    assert [sum(d.in_count for d in lines), sum(d.out_count for d in lines)] == want
    for b in buckets:
        for draft in b.drafts:
            draft.to_message(site="s", device="d", source="c", seq=0)  # validates mean <= peak
