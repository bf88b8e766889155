"""Counted events matched one by one to the truth's, and counts scored against true counts.

Net counts hide errors that cancel (a missed ``in`` and a false ``in`` score as perfect).
Here each counted crossing is matched to at most one true crossing of the same line and
direction no more than ``tolerance_s`` seconds apart; what is matched is a true positive,
a counted crossing left over a false positive, a true one left over a false negative.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

from edgetally.runtime.errors import ConfigError
from edgetally.runtime.types import Direction

DIRECTIONS: tuple[Direction, ...] = ("in", "out")


@dataclass(frozen=True, slots=True)
class Event:
    """One crossing: seconds from the start of the source, and its direction."""

    t: float
    dir: Direction


@dataclass(frozen=True, slots=True)
class EventScore:
    tp: int
    fp: int
    fn: int

    @property
    def precision(self) -> float:
        counted = self.tp + self.fp
        return self.tp / counted if counted else (1.0 if self.fn == 0 else 0.0)

    @property
    def recall(self) -> float:
        true = self.tp + self.fn
        return self.tp / true if true else (1.0 if self.fp == 0 else 0.0)

    @property
    def f1(self) -> float:
        denominator = 2 * self.tp + self.fp + self.fn
        return 2 * self.tp / denominator if denominator else 1.0

    def __add__(self, other: EventScore) -> EventScore:
        return EventScore(self.tp + other.tp, self.fp + other.fp, self.fn + other.fn)

    def as_dict(self) -> dict[str, float | int]:
        return {
            "tp": self.tp,
            "fp": self.fp,
            "fn": self.fn,
            "precision": round(self.precision, 4),
            "recall": round(self.recall, 4),
            "f1": round(self.f1, 4),
        }


def check_tolerance(tolerance_s: float) -> None:
    """A matching tolerance must be a finite number of seconds, 0 or more."""
    if not (tolerance_s >= 0 and math.isfinite(tolerance_s)):
        raise ConfigError(f"--tolerance-s {tolerance_s}: give a number of seconds, 0 or more")


def match_events(
    counted: Iterable[Event], truth: Iterable[Event], tolerance_s: float
) -> EventScore:
    """The most one-to-one pairs of the same direction at most ``tolerance_s`` apart.

    For points on a line with one tolerance, taking the true events in time order and
    pairing each with the earliest unpaired counted event within reach is a maximum
    matching: an earlier counted event can only help a later true event less.
    """
    check_tolerance(tolerance_s)
    counted = list(counted)
    truth = list(truth)
    tp = 0
    for direction in DIRECTIONS:
        mine = sorted(e.t for e in counted if e.dir == direction)
        true = sorted(e.t for e in truth if e.dir == direction)
        i = 0
        for t in true:
            while i < len(mine) and mine[i] < t - tolerance_s:
                i += 1  # too early for this true event, so for every later one too
            if i < len(mine) and mine[i] <= t + tolerance_s:
                tp += 1
                i += 1
    return EventScore(tp, len(counted) - tp, len(truth) - tp)


def count_accuracy(results: list[tuple[int, int, int, int]]) -> float:
    """1 - sum |count - truth| / sum truth, over lines and directions.

    ``results`` holds (in, out, true_in, true_out) per line.
    """
    error = sum(abs(i - ti) + abs(o - to) for i, o, ti, to in results)
    truth = sum(ti + to for _, _, ti, to in results)
    if truth == 0:
        return 1.0 if error == 0 else 0.0
    return 1.0 - error / truth
