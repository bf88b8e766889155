"""Truth files: the true crossings of lines and the true visits of zones.

A reference is a JSON object ``{"line": [x1, y1, x2, y2], "events": [{"t": seconds,
"dir": "in" | "out"}, ...]}`` (or a list of them), or the JSON Lines that
``edgetally count --events`` writes (one crossing per row, with ``t``, ``line`` and
``dir``), reviewed and corrected by hand; its zone rows are skipped.

Zone visits are scored the same way: a visit is its entry, and each counted entry into a
zone is matched to at most one true entry into the same zone no more than ``tolerance_s``
apart (:func:`match_events`, every entry an ``in`` event). A zone reference is a JSON
object ``{"zone": [x1, y1, x2, y2, x3, y3, ...], "visits": [{"t": seconds of entry,
"exit_t": seconds (optional)}, ...]}`` (or a list of them), or the JSON Lines that
``edgetally count --events`` writes: its ``enter`` rows are the visits, an ``exit`` row
gives the open visit of the same track its ``exit_t``, and crossing rows are skipped.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgetally.runtime.errors import ConfigError
from edgetally.runtime.scoring.matching import DIRECTIONS, Event


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


def _line_of(value: Any, where: str) -> tuple[float, float, float, float]:
    if (
        not isinstance(value, list)
        or len(value) != 4
        or not all(isinstance(v, int | float) and not isinstance(v, bool) for v in value)
    ):
        raise ConfigError(f'{where}: "line" must be four numbers [x1, y1, x2, y2]')
    x1, y1, x2, y2 = (float(v) for v in value)
    return x1, y1, x2, y2


def _event_of(value: Any, where: str) -> Event:
    if not isinstance(value, dict):
        raise ConfigError(f'{where}: an event must be an object with "t" and "dir"')
    t, direction = value.get("t"), value.get("dir")
    if not isinstance(t, int | float) or isinstance(t, bool) or not math.isfinite(t) or t < 0:
        raise ConfigError(f'{where}: "t" must be seconds from the start, 0 or more')
    if direction not in DIRECTIONS:
        raise ConfigError(f'{where}: "dir" must be "in" or "out", not {direction!r}')
    return Event(float(t), direction)


def _reference_of(value: Any, where: str) -> ReferenceLine:
    if not isinstance(value, dict) or "line" not in value or "events" not in value:
        hint = " (a zone's visits go to --zone-reference)" if _is_zone(value) else ""
        raise ConfigError(f'{where}: expected an object with "line" and "events"{hint}')
    events = value["events"]
    if not isinstance(events, list):
        raise ConfigError(f'{where}: "events" must be a list')
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
    if _is_zone_row(whole) or _is_partial_mark(whole):
        return _read_jsonl(path, text)  # JSON Lines with a single zone row: no crossing
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
        if _is_zone_row(value) or _is_partial_mark(value):
            continue  # a zone's entry or exit, as count --events writes them beside crossings
        if not isinstance(value, dict) or "line" not in value:
            raise ConfigError(f'{where}: a crossing needs "line", "t" and "dir"')
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


def _is_zone(value: Any) -> bool:
    return isinstance(value, dict) and "zone" in value and "line" not in value


def _is_partial_mark(value: Any) -> bool:
    """The last row of an interrupted ``count --events``: ``{"partial": true, "frames": n}``."""
    return isinstance(value, dict) and value.get("partial") is True and "line" not in value


def _is_zone_row(value: Any) -> bool:
    """A zone's entry or exit row of ``count --events`` (not a zone reference object)."""
    return _is_zone(value) and "visits" not in value


@dataclass(frozen=True, slots=True)
class Visit:
    """One true visit of a zone: seconds from the start of the source at its entry, and at
    its exit when the reference says."""

    t: float
    exit_t: float | None = None


@dataclass(frozen=True, slots=True)
class ReferenceZone:
    """A zone (its polygon as x1, y1, x2, y2, ...) and its true visits."""

    zone: tuple[float, ...]
    visits: tuple[Visit, ...]

    @property
    def text(self) -> str:
        """The polygon as ``--zone`` takes it."""
        return ",".join(f"{v:.10g}" for v in self.zone)

    def entries(self) -> list[Event]:
        """The visits as events for :func:`match_events`: every entry an ``in``."""
        return [Event(v.t, "in") for v in self.visits]

    def dwells(self) -> list[float]:
        """Seconds from entry to exit of the visits with an ``exit_t``."""
        return [v.exit_t - v.t for v in self.visits if v.exit_t is not None]


def _zone_of(value: Any, where: str) -> tuple[float, ...]:
    if (
        not isinstance(value, list)
        or len(value) < 6
        or len(value) % 2
        or not all(
            isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)
            for v in value
        )
    ):
        raise ConfigError(
            f'{where}: "zone" must be at least 3 points as numbers [x1, y1, x2, y2, x3, y3, ...]'
        )
    return tuple(float(v) for v in value)


def _seconds_of(value: Any, where: str, key: str) -> float:
    if (
        not isinstance(value, int | float)
        or isinstance(value, bool)
        or not math.isfinite(value)
        or value < 0
    ):
        raise ConfigError(f'{where}: "{key}" must be seconds from the start, 0 or more')
    return float(value)


def _visit_of(value: Any, where: str) -> Visit:
    if not isinstance(value, dict) or "t" not in value:
        raise ConfigError(f'{where}: a visit must be an object with "t" (its entry)')
    t = _seconds_of(value["t"], where, "t")
    if value.get("exit_t") is None:
        return Visit(t)
    exit_t = _seconds_of(value["exit_t"], where, "exit_t")
    if exit_t < t:
        raise ConfigError(f'{where}: "exit_t" {exit_t:g} is before its entry "t" {t:g}')
    return Visit(t, exit_t)


def _zone_reference_of(value: Any, where: str) -> ReferenceZone:
    if not isinstance(value, dict) or "zone" not in value or "visits" not in value:
        hint = (
            " (a line's crossings go to --reference)"
            if isinstance(value, dict) and "line" in value
            else ""
        )
        raise ConfigError(f'{where}: expected an object with "zone" and "visits"{hint}')
    visits = value["visits"]
    if not isinstance(visits, list):
        raise ConfigError(f'{where}: "visits" must be a list')
    zone = _zone_of(value["zone"], where)
    parsed = [_visit_of(v, f"{where}: visit {i + 1}") for i, v in enumerate(visits)]
    return ReferenceZone(zone, tuple(sorted(parsed, key=lambda v: v.t)))


def read_zone_reference(path: Path) -> list[ReferenceZone]:
    """The reference zones in ``path``: a JSON object or list of them, or JSON Lines as
    ``edgetally count --events`` writes them (its zone rows, grouped by zone)."""
    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigError(f"zone reference {path}: {exc.strerror or exc}") from exc
    except UnicodeDecodeError as exc:
        raise ConfigError(f"zone reference {path}: not a text file") from exc
    try:
        whole: Any = json.loads(text)
    except json.JSONDecodeError:
        return _read_zone_jsonl(path, text)
    if isinstance(whole, dict) and "visits" not in whole and ("event" in whole or "dir" in whole):
        return _read_zone_jsonl(path, text)  # JSON Lines with a single row
    items = whole if isinstance(whole, list) else [whole]
    if not items:
        raise ConfigError(f"zone reference {path}: no zones in it")
    return [_zone_reference_of(item, f"zone reference {path}") for item in items]


def _read_zone_jsonl(path: Path, text: str) -> list[ReferenceZone]:
    by_zone: dict[tuple[float, ...], list[dict[str, Any]]] = {}
    for n, row in enumerate(text.splitlines(), 1):
        if not row.strip():
            continue
        where = f"zone reference {path}:{n}"
        try:
            value = json.loads(row)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"{where}: not JSON ({exc.msg})") from exc
        if (isinstance(value, dict) and "line" in value) or _is_partial_mark(value):
            continue  # a crossing, as count --events writes them beside the zone rows
        if not _is_zone_row(value) or value.get("event") not in ("enter", "exit"):
            raise ConfigError(
                f'{where}: a zone row needs "zone", "t" and "event" ("enter" or "exit")'
            )
        zone = _zone_of(value["zone"], where)
        _seconds_of(value.get("t"), where, "t")
        by_zone.setdefault(zone, []).append(value)
    visits_by_zone = {zone: _visits_of_rows(rows) for zone, rows in by_zone.items()}
    visits_by_zone = {zone: visits for zone, visits in visits_by_zone.items() if visits}
    if not visits_by_zone:
        raise ConfigError(f"zone reference {path}: no zone entries in it")
    return [ReferenceZone(zone, visits) for zone, visits in visits_by_zone.items()]


def _visits_of_rows(rows: list[dict[str, Any]]) -> tuple[Visit, ...]:
    """Entries in time order, each closed by the next exit of the same track after it."""
    visits: list[Visit] = []
    open_visit: dict[Any, int] = {}  # track -> index in visits
    for row in sorted(rows, key=lambda r: float(r["t"])):
        t, track = float(row["t"]), row.get("track")
        if not isinstance(track, int | str) or isinstance(track, bool):
            track = None  # no track (a row added by hand): an entry without an exit
        if row["event"] == "enter":
            visits.append(Visit(t))
            if track is not None:
                open_visit[track] = len(visits) - 1
        elif track is not None and track in open_visit:
            i = open_visit.pop(track)
            visits[i] = Visit(visits[i].t, t)
    return tuple(visits)


def read_zone_references(paths: Sequence[Path]) -> list[ReferenceZone]:
    """Every reference zone of ``paths``, in order; a zone given twice is an error."""
    zones: list[ReferenceZone] = []
    for path in paths:
        for ref in read_zone_reference(path):
            if any(other.zone == ref.zone for other in zones):
                raise ConfigError(f"zone reference {path}: zone {ref.text} is given twice")
            zones.append(ref)
    return zones
