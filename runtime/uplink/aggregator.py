"""Time buckets of what the pipeline saw: the only thing about people that leaves the device.

Buckets are aligned to the epoch (a 60 s bucket starts on the minute) and placed by the
frame's timestamp, not by the wall clock, so a file replays into the same buckets however
fast it is decoded. For every bucket that saw at least one frame, the aggregator emits one
draft per counting line (``in``/``out`` crossings, zeros included: a zero is information)
and one per zone:

- occupancy mean: time-weighted. Each frame's occupancy holds until the next frame; an
  interval that straddles a bucket boundary is split between the two buckets (and the
  value carried into a bucket counts towards its peak too, so mean <= peak always holds);
- occupancy peak: the largest count seen in the bucket;
- dwell: visits that ended in the bucket, as count, median and 90th percentile (seconds).

A bucket with no frame at all (the source was not running) is not emitted: that is "not
observed", which is different from zero. Drafts carry no sequence number: the outbox gives
one when it stores them (:meth:`AggregateDraft.to_message`).
"""

from __future__ import annotations

import logging
import math
import statistics
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

import numpy as np
from edgetally.models.clock import bucket_start_s
from edgetally.models.wire import MAX_BUCKET_SECONDS, Aggregate, DwellStats
from edgetally.runtime.errors import ConfigError
from edgetally.runtime.types import Dwell, FrameResult, ZoneId

log = logging.getLogger(__name__)

DEFAULT_BUCKET_SECONDS = 60
_MAX_DWELL_S = 7 * 86_400.0


@dataclass(frozen=True, slots=True)
class AggregateDraft:
    """One bucket of one line or zone, before it gets its sequence number."""

    counter: str
    kind: str  # "line" or "zone"
    start: datetime
    seconds: int
    in_count: int = 0
    out_count: int = 0
    occupancy_mean: float | None = None
    occupancy_peak: int | None = None
    dwell: DwellStats | None = None

    def to_message(
        self, *, site: str, device: str, source: str, seq: int, epoch: str | None = None
    ) -> Aggregate:
        return Aggregate(
            site=site,  # type: ignore[arg-type]  # pydantic validates it
            device=device,  # type: ignore[arg-type]  # pydantic validates it
            source=source,  # type: ignore[arg-type]  # pydantic validates it
            line=self.counter,  # type: ignore[arg-type]  # pydantic validates it
            seq=seq,  # type: ignore[arg-type]  # pydantic validates it
            epoch=epoch,  # type: ignore[arg-type]  # pydantic validates it
            start=self.start,
            seconds=self.seconds,
            in_count=self.in_count,
            out_count=self.out_count,
            occupancy_mean=self.occupancy_mean,
            occupancy_peak=self.occupancy_peak,
            dwell=self.dwell,
        )


@dataclass(frozen=True, slots=True)
class ClosedBucket:
    """A finished bucket: its drafts and the first frame index that is not in it."""

    start: datetime
    seconds: int
    drafts: tuple[AggregateDraft, ...]
    first_frame: int
    next_frame: int  # frames with a smaller index are all in closed buckets


@dataclass(slots=True)
class _Open:
    start: float  # epoch seconds
    first_frame: int
    ins: dict[str, int] = field(default_factory=dict)
    outs: dict[str, int] = field(default_factory=dict)
    occ_area: dict[str, float] = field(default_factory=dict)  # person-seconds
    occ_time: float = 0.0
    peak: dict[str, int] = field(default_factory=dict)
    dwells: dict[str, list[float]] = field(default_factory=dict)
    last_occ: dict[str, int] = field(default_factory=dict)


def dwell_stats(seconds: Sequence[float]) -> DwellStats | None:
    """Count, median and 90th percentile (linear interpolation) of visit lengths."""
    values = [min(max(float(s), 0.0), _MAX_DWELL_S) for s in seconds if math.isfinite(s)]
    if not values:
        return None
    median = round(float(statistics.median(values)), 3)
    p90 = round(float(np.percentile(np.asarray(values, dtype=np.float64), 90)), 3)
    return DwellStats(count=len(values), median_s=median, p90_s=max(p90, median))


class Aggregator:
    """Feeds on :class:`FrameResult` in timestamp order; returns buckets as they close."""

    def __init__(
        self,
        lines: Iterable[str],
        zones: Iterable[str] = (),
        *,
        bucket_seconds: int = DEFAULT_BUCKET_SECONDS,
    ) -> None:
        if not 1 <= bucket_seconds <= MAX_BUCKET_SECONDS:
            raise ConfigError(
                f"bucket seconds must be 1-{MAX_BUCKET_SECONDS} (got {bucket_seconds})"
            )
        self.lines = list(dict.fromkeys(lines))
        self.zones = list(dict.fromkeys(zones))
        self.bucket_seconds = bucket_seconds
        self.totals: dict[str, list[int]] = {line: [0, 0] for line in self.lines}
        self._open: _Open | None = None
        self._prev_ts: float | None = None
        self._prev_occ: dict[str, int] = {}

    # ------------------------------------------------------------------ feeding

    def add(self, result: FrameResult) -> list[ClosedBucket]:
        ts = _epoch(result.timestamp)
        bs = self.bucket_seconds
        start = bucket_start_s(ts, bs)
        closed: list[ClosedBucket] = []
        cur = self._open
        if cur is None:
            cur = self._open = _Open(start=start, first_frame=result.frame_index)
        elif start > cur.start:
            # Carry the previous occupancy to the end of the open bucket, close it, and into
            # the new one when it is the next bucket (not after a gap in the source).
            prev = self._prev_ts if self._prev_ts is not None else ts
            self._accrue(cur, prev, cur.start + bs)
            closed.append(self._close(cur, next_frame=result.frame_index))
            cur = self._open = _Open(start=start, first_frame=result.frame_index)
            if prev >= start - bs:
                self._accrue(cur, start, ts)
                for zone, n in self._prev_occ.items():
                    cur.peak[zone] = max(cur.peak.get(zone, 0), n)
        elif self._prev_ts is not None:
            if ts < self._prev_ts:
                log.warning(
                    "frame %d goes back in time (%.3f s); counted in the open bucket",
                    result.frame_index,
                    self._prev_ts - ts,
                )
            self._accrue(cur, self._prev_ts, ts)

        for c in result.crossings:
            line = str(c.line_id)
            if line not in self.totals:
                self.lines.append(line)
                self.totals[line] = [0, 0]
            counts = cur.ins if c.direction == "in" else cur.outs
            counts[line] = counts.get(line, 0) + 1
            self.totals[line][0 if c.direction == "in" else 1] += 1
        for d in result.dwells:
            cur.dwells.setdefault(str(d.zone_id), []).append(d.seconds)
        occ = {zone: int(result.occupancy.get(ZoneId(zone), 0)) for zone in self.zones}
        for zone, n in occ.items():
            cur.peak[zone] = max(cur.peak.get(zone, 0), n)
        cur.last_occ = occ
        self._prev_ts = max(ts, self._prev_ts or ts)
        self._prev_occ = occ
        return closed

    def add_dwells(self, dwells: Iterable[Dwell]) -> None:
        """Visits ended outside a frame (the source ended): counted in the open bucket."""
        cur = self._open
        if cur is None:
            return
        for d in dwells:
            cur.dwells.setdefault(str(d.zone_id), []).append(d.seconds)

    def flush(self, next_frame: int) -> ClosedBucket | None:
        """Close the open bucket (the source ended); ``next_frame`` is one past its last."""
        cur = self._open
        if cur is None:
            return None
        self._open = None
        return self._close(cur, next_frame=next_frame)

    # ------------------------------------------------------------------ internals

    def _accrue(self, cur: _Open, t0: float, t1: float) -> None:
        dt = t1 - t0
        if dt <= 0:
            return
        cur.occ_time += dt
        for zone, n in self._prev_occ.items():
            cur.occ_area[zone] = cur.occ_area.get(zone, 0.0) + n * dt

    def _close(self, cur: _Open, *, next_frame: int) -> ClosedBucket:
        start = datetime.fromtimestamp(cur.start, UTC)
        bs = self.bucket_seconds
        drafts: list[AggregateDraft] = [
            AggregateDraft(
                counter=line,
                kind="line",
                start=start,
                seconds=bs,
                in_count=cur.ins.get(line, 0),
                out_count=cur.outs.get(line, 0),
            )
            for line in self.lines
        ]
        for zone in self.zones:
            peak = cur.peak.get(zone, 0)
            if cur.occ_time > 0:
                mean = cur.occ_area.get(zone, 0.0) / cur.occ_time
            else:
                mean = float(cur.last_occ.get(zone, 0))
            drafts.append(
                AggregateDraft(
                    counter=zone,
                    kind="zone",
                    start=start,
                    seconds=bs,
                    occupancy_mean=min(round(mean, 3), float(peak)),
                    occupancy_peak=peak,
                    dwell=dwell_stats(cur.dwells.get(zone, [])),
                )
            )
        return ClosedBucket(
            start=start,
            seconds=bs,
            drafts=tuple(drafts),
            first_frame=cur.first_frame,
            next_frame=next_frame,
        )


def _epoch(ts: datetime) -> float:
    if ts.tzinfo is None:
        ts = ts.replace(tzinfo=UTC)
    return ts.timestamp()
