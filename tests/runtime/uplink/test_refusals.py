"""The bookkeeping of refused rows, on a clock the test moves: one probe per cause after a
backoff that doubles, at once after a reconnect, and a cause whose row is taken opens."""

from __future__ import annotations

from edgetally.runtime.uplink.refusals import Refusals

CAM1 = "edgetally/v1/shop1/cam1/agg"
POWER = "edgetally/v1/shop1/cam1/power"
NOT_AUTHORIZED = 0x87


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_one_probe_per_cause_with_a_backoff_that_doubles() -> None:
    clock = Clock()
    r = Refusals(1.0, 4.0, clock=clock)
    assert r.refused(1, CAM1, NOT_AUTHORIZED, "not authorized")  # a new cause: say it
    assert not r.refused(2, CAM1, NOT_AUTHORIZED, "not authorized")  # the same cause
    assert r.refused(3, POWER, NOT_AUTHORIZED, "not authorized")  # another topic
    assert len(r) == 3
    assert r.probes_due(set(), 10) == []  # not before the backoff
    clock.now += 1.0
    assert sorted(r.probes_due(set(), 10)) == [1, 3]  # the oldest row of each cause
    assert r.probes_due(set(), 10) == []  # a probe is in flight for each
    for delay in (2.0, 4.0, 4.0):  # refused again: twice as long, up to the most
        assert not r.refused(1, CAM1, NOT_AUTHORIZED, "not authorized")
        clock.now += delay - 0.01
        assert 1 not in r.probes_due({3}, 10)
        clock.now += 0.01
        assert r.probes_due({3}, 10) == [1]
    assert r.summary() == [
        (CAM1, NOT_AUTHORIZED, "not authorized", 2),
        (POWER, NOT_AUTHORIZED, "not authorized", 1),
    ]


def test_a_probe_in_flight_is_not_sent_twice_and_busy_rows_are_skipped() -> None:
    clock = Clock()
    r = Refusals(1.0, 8.0, clock=clock)
    r.refused(5, CAM1, NOT_AUTHORIZED, "not authorized")
    r.refused(6, CAM1, NOT_AUTHORIZED, "not authorized")
    clock.now += 1.0
    assert r.probes_due({5}, 10) == [6]  # 5 is in flight (sent again by paho on reconnect)


def test_a_reconnect_probes_at_once() -> None:
    clock = Clock()
    r = Refusals(1.0, 60.0, clock=clock)
    r.refused(1, CAM1, NOT_AUTHORIZED, "not authorized")
    assert r.probes_due(set(), 10) == []
    r.reconnected()
    assert r.probes_due(set(), 10) == [1]


def test_a_taken_probe_opens_its_cause_and_a_refusal_closes_it() -> None:
    clock = Clock()
    r = Refusals(1.0, 60.0, clock=clock)
    for row in (1, 2, 3):
        r.refused(row, CAM1, NOT_AUTHORIZED, "not authorized")
    clock.now += 1.0
    assert r.probes_due(set(), 10) == [1]
    assert not r.goes_again(2)
    assert r.taken(1)  # opened: send the rest
    assert r.goes_again(2) and r.goes_again(3) and 1 not in r
    assert not r.refused(2, CAM1, NOT_AUTHORIZED, "not authorized")  # closed again
    assert not r.goes_again(3)
    assert r.probes_due(set(), 10) == []  # after the backoff, which started again at 1 s
    clock.now += 1.0
    assert r.probes_due(set(), 10) == [2]
    assert r.taken(2) and r.goes_again(3)
    assert not r.taken(3)  # already open
    assert len(r) == 0 and r.summary() == []
    assert not r.taken(3)  # not refused (any more): nothing to open
