"""Crossing events scored one by one: the truth's events matched to the counted ones.

Net counts hide errors that cancel (a missed ``in`` and a false ``in`` score as perfect).
Here each counted crossing is matched to at most one true crossing of the same line and
direction no more than ``tolerance_s`` seconds apart; what is matched is a true positive,
a counted crossing left over a false positive, a true one left over a false negative.

A reference is a JSON object ``{"line": [x1, y1, x2, y2], "events": [{"t": seconds,
"dir": "in" | "out"}, ...]}`` (or a list of them), or the JSON Lines that
``edgetally count --events`` writes (one crossing per row, with ``t``, ``line`` and
``dir``), reviewed and corrected by hand.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgetally.runtime.errors import ConfigError
from edgetally.runtime.types import Direction

DIRECTIONS: tuple[Direction, ...] = ("in", "out")


@dataclass(frozen=True, slots=True)
class Event:
    """One crossing: seconds from the start of the source, and its direction."""

    t: float
    dir: Direction


@dataclass(frozen=True, slots=True)
class ReferenceLine:
    """A line and its true crossings."""

    line: tuple[float, float, float, float]
    events: tuple[Event, ...]

    @property
    def text(self) -> str:
        return ",".join(f"{v:g}" for v in self.line)

    def counts(self) -> tuple[int, int]:
        n_in = sum(1 for e in self.events if e.dir == "in")
        return n_in, len(self.events) - n_in


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


def _line_of(value: Any, where: str) -> tuple[float, float, float, float]:
    if (
        not isinstance(value, list)
        or len(value) != 4
        or not all(isinstance(v, int | float) and not isinstance(v, bool) for v in value)
    ):
        raise ConfigError(f"{where}: \"line\" must be four numbers [x1, y1, x2, y2]")
    x1, y1, x2, y2 = (float(v) for v in value)
    return x1, y1, x2, y2


def _event_of(value: Any, where: str) -> Event:
    if not isinstance(value, dict):
        raise ConfigError(f"{where}: an event must be an object with \"t\" and \"dir\"")
    t, direction = value.get("t"), value.get("dir")
    if not isinstance(t, int | float) or isinstance(t, bool) or not math.isfinite(t) or t < 0:
        raise ConfigError(f"{where}: \"t\" must be seconds from the start, 0 or more")
    if direction not in DIRECTIONS:
        raise ConfigError(f"{where}: \"dir\" must be \"in\" or \"out\", not {direction!r}")
    return Event(float(t), direction)


def _reference_of(value: Any, where: str) -> ReferenceLine:
    if not isinstance(value, dict) or "line" not in value or "events" not in value:
        raise ConfigError(f"{where}: expected an object with \"line\" and \"events\"")
    events = value["events"]
    if not isinstance(events, list):
        raise ConfigError(f"{where}: \"events\" must be a list")
    line = _line_of(value["line"], where)
    parsed = [_event_of(e, f"{where}: event {i + 1}") for i, e in enumerate(events)]
    return ReferenceLine(line, tuple(sorted(parsed, key=lambda e: e.t)))


def read_reference(path: Path) -> list[ReferenceLine]:
    """The reference lines in ``path``: a JSON object or list of them, or JSON Lines of
    crossings as ``edgetally count --events`` writes them (grouped by line)."""
    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigError(f"reference {path}: {exc.strerror or exc}") from exc
    except UnicodeDecodeError as exc:
        raise ConfigError(f"reference {path}: not a text file") from exc
    try:
        whole: Any = json.loads(text)
    except json.JSONDecodeError:
        return _read_jsonl(path, text)
    if isinstance(whole, dict) and "events" not in whole and "line" in whole:
        return _read_jsonl(path, text)  # JSON Lines with a single crossing
    items = whole if isinstance(whole, list) else [whole]
    if not items:
        raise ConfigError(f"reference {path}: no lines in it")
    return [_reference_of(item, f"reference {path}") for item in items]


def _read_jsonl(path: Path, text: str) -> list[ReferenceLine]:
    by_line: dict[tuple[float, float, float, float], list[Event]] = {}
    for n, row in enumerate(text.splitlines(), 1):
        if not row.strip():
            continue
        where = f"reference {path}:{n}"
        try:
            value = json.loads(row)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"{where}: not JSON ({exc.msg})") from exc
        if not isinstance(value, dict) or "line" not in value:
            raise ConfigError(f"{where}: a crossing needs \"line\", \"t\" and \"dir\"")
        line = _line_of(value["line"], where)
        by_line.setdefault(line, []).append(_event_of(value, where))
    if not by_line:
        raise ConfigError(f"reference {path}: no crossings in it")
    return [
        ReferenceLine(line, tuple(sorted(events, key=lambda e: e.t)))
        for line, events in by_line.items()
    ]


def read_references(paths: Sequence[Path]) -> list[ReferenceLine]:
    """Every reference line of ``paths``, in order; a line given twice is an error."""
    lines: list[ReferenceLine] = []
    for path in paths:
        for ref in read_reference(path):
            if any(other.line == ref.line for other in lines):
                raise ConfigError(f"reference {path}: line {ref.text} is given twice")
            lines.append(ref)
    return lines
