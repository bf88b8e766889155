"""An :class:`IngestBatch` as columns, ready for a bulk load (Arrow for DuckDB, COPY for PG).

Duplicates inside one batch are dropped here (first wins); duplicates of rows already stored
are dropped by the database (primary key on device + seq).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from edgetally.fleet.records import IngestBatch
from edgetally.fleet.sql import (
    AGG_COLUMNS,
    DEAD_COLUMNS,
    EVENT_COLUMNS,
    POWER_COLUMNS,
    SEEN_COLUMNS,
    STATUS_COLUMNS,
)

Columns = dict[str, list[Any]]


def naive_utc(value: datetime) -> datetime:
    """The stored form of a time: UTC without tzinfo."""
    if value.tzinfo is None:
        return value
    return value.astimezone(UTC).replace(tzinfo=None)


def _empty(names: tuple[str, ...]) -> Columns:
    return {n: [] for n in names}


@dataclass(slots=True)
class StagedBatch:
    """Column lists per staged table, plus how many in-batch duplicates were dropped."""

    aggregates: Columns = field(default_factory=lambda: _empty(AGG_COLUMNS))
    events: Columns = field(default_factory=lambda: _empty(EVENT_COLUMNS))
    power: Columns = field(default_factory=lambda: _empty(POWER_COLUMNS))
    seen: Columns = field(default_factory=lambda: _empty(SEEN_COLUMNS))
    status: Columns = field(default_factory=lambda: _empty(STATUS_COLUMNS))
    dead: Columns = field(default_factory=lambda: _empty(DEAD_COLUMNS))
    aggregates_in_batch_duplicates: int = 0
    power_in_batch_duplicates: int = 0


def _add(cols: Columns, values: tuple[Any, ...]) -> None:
    for name, value in zip(cols, values, strict=True):
        cols[name].append(value)


def stage(batch: IngestBatch) -> StagedBatch:
    """Turn a batch into columns; dedupe (device, seq) within it."""
    now = naive_utc(batch.received_at or datetime.now(UTC))
    out = StagedBatch()
    keys: set[tuple[str, int]] = set()
    for a in batch.aggregates:
        key = (a.device, a.seq)
        if key in keys:
            out.aggregates_in_batch_duplicates += 1
            continue
        keys.add(key)
        start = naive_utc(a.start)
        d = a.dwell
        _add(
            out.aggregates,
            (
                a.device,
                a.seq,
                a.site,
                a.source,
                a.line,
                start,
                a.seconds,
                a.in_count,
                a.out_count,
                a.occupancy_mean,
                a.occupancy_peak,
                None if d is None else d.count,
                None if d is None else d.median_s,
                None if d is None else d.p90_s,
                now,
            ),
        )
        for family, counts in (("shelf", a.shelf_events), ("audio", a.audio_events)):
            for event, count in counts.items():
                _add(
                    out.events,
                    (a.device, a.seq, family, event, a.site, a.line, start, a.seconds, count),
                )
    keys = set()
    for p in batch.power:
        key = (p.device, p.seq)
        if key in keys:
            out.power_in_batch_duplicates += 1
            continue
        keys.add(key)
        _add(
            out.power,
            (
                p.device,
                p.seq,
                p.site,
                p.source,
                naive_utc(p.start),
                p.seconds,
                p.wh,
                p.mean_w,
                p.measured,
                now,
            ),
        )
    seen: dict[str, tuple[str, datetime, datetime, int]] = {}
    for s in batch.seen:
        at = naive_utc(s.at)
        prev = seen.get(s.device)
        if prev is None:
            seen[s.device] = (s.site, at, at, 1)
        else:
            seen[s.device] = (s.site, min(prev[1], at), max(prev[2], at), prev[3] + 1)
    for device, (site, first, last, n) in seen.items():
        _add(out.seen, (device, site, first, last, n))
    latest = {st.device: st for st in batch.statuses}  # the last one received wins
    for st in latest.values():
        _add(
            out.status,
            (
                st.device,
                st.state,
                naive_utc(st.at),
                st.model,
                st.backend,
                st.fps,
                st.uptime_s,
                st.errors,
                st.last_error,
            ),
        )
    for dl in batch.dead:
        _add(
            out.dead,
            (naive_utc(dl.received_at), dl.topic, dl.reason, dl.payload_size, dl.payload_head),
        )
    return out
