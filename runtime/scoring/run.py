"""A run's crossings scored line by line and in total, and its zone visits.

One place for what ``edgetally eval``, ``benchmarks/accuracy.py`` and the quantize gate all
report: per line the counts against the true counts and the events matched one by one
(:func:`~edgetally.runtime.scoring.matching.match_events`), and over all lines the count
accuracy and the summed event score.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from edgetally.runtime.scoring.matching import Event, EventScore, count_accuracy, match_events
from edgetally.runtime.scoring.references import ReferenceLine, ReferenceZone


@dataclass(frozen=True, slots=True)
class LineScore:
    """One line: what was counted, what is true, and the events matched."""

    counted_in: int
    counted_out: int
    true_in: int
    true_out: int
    events: EventScore

    def as_dict(self) -> dict[str, Any]:
        """``true_in``, ``true_out`` and the event score's fields (the counts are the
        caller's: ``eval`` prints them with the line as typed)."""
        return {"true_in": self.true_in, "true_out": self.true_out, **self.events.as_dict()}


@dataclass(frozen=True, slots=True)
class RunScore:
    lines: tuple[LineScore, ...]
    count_accuracy: float  # 1 - sum |count - truth| / sum truth, rounded to 4 places
    events: EventScore  # over all lines


def score_run(
    truth: Sequence[ReferenceLine], counted: Sequence[Sequence[Event]], tolerance_s: float
) -> RunScore:
    """``counted[i]`` (the crossings of line i) against ``truth[i]``."""
    if len(truth) != len(counted):
        raise ValueError(f"{len(counted)} lines counted, {len(truth)} with truth")
    lines = []
    total = EventScore(0, 0, 0)
    for ref, mine in zip(truth, counted, strict=True):
        score = match_events(mine, ref.events, tolerance_s)
        total = total + score
        n_in = sum(1 for e in mine if e.dir == "in")
        t_in, t_out = ref.counts()
        lines.append(LineScore(n_in, len(mine) - n_in, t_in, t_out, score))
    accuracy = count_accuracy(
        [(ls.counted_in, ls.counted_out, ls.true_in, ls.true_out) for ls in lines]
    )
    return RunScore(tuple(lines), round(accuracy, 4), total)


@dataclass(frozen=True, slots=True)
class ZoneScore:
    counted_visits: int
    true_visits: int
    entries: EventScore
    true_dwells: tuple[float, ...]  # seconds, of the true visits with an exit

    @property
    def visit_count_accuracy(self) -> float:
        return round(count_accuracy([(self.counted_visits, 0, self.true_visits, 0)]), 4)


def score_zones(
    truth: Sequence[ReferenceZone],
    counted_visits: Sequence[int],
    entries: Sequence[Sequence[float]],
    tolerance_s: float,
) -> tuple[list[ZoneScore], EventScore, float]:
    """Each zone's counted entries (seconds) against its true visits, matched as crossings
    are (every entry an ``in``); the summed entry score and the visit count accuracy over
    all zones."""
    scores = []
    total = EventScore(0, 0, 0)
    for ref, n, mine in zip(truth, counted_visits, entries, strict=True):
        score = match_events([Event(t, "in") for t in mine], ref.entries(), tolerance_s)
        total = total + score
        scores.append(ZoneScore(n, len(ref.visits), score, tuple(ref.dwells())))
    accuracy = count_accuracy([(z.counted_visits, 0, z.true_visits, 0) for z in scores])
    return scores, total, round(accuracy, 4)
