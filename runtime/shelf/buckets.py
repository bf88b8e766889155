"""Shelf events per time bucket, per facing: what the device aggregator sends."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from edgetally.models.clock import bucket_start
from edgetally.runtime.shelf.errors import ShelfError
from edgetally.runtime.shelf.monitor import ShelfFrame


@dataclass(frozen=True, slots=True)
class FacingCounts:
    region_id: str
    facing_id: str
    facing_empty: int
    restocked: int
    product_taken: int
    empty_at_end: bool  # the facing's debounced state when the bucket closed


@dataclass(frozen=True, slots=True)
class ShelfBucket:
    """Counts per event type per facing over [start, end); every configured facing appears."""

    start: datetime
    end: datetime
    facings: tuple[FacingCounts, ...]

    @property
    def totals(self) -> dict[str, int]:
        return {
            "facing_empty": sum(f.facing_empty for f in self.facings),
            "restocked": sum(f.restocked for f in self.facings),
            "product_taken": sum(f.product_taken for f in self.facings),
        }


class ShelfAggregator:
    """Closes a :class:`ShelfBucket` every ``bucket_seconds`` (aligned to the epoch, UTC)."""

    def __init__(self, facings: Iterable[tuple[str, str]], bucket_seconds: float = 60.0) -> None:
        if bucket_seconds <= 0:
            raise ShelfError(f"bucket seconds must be positive, got {bucket_seconds}")
        self.keys = tuple(facings)
        self.span = timedelta(seconds=bucket_seconds)
        self._start: datetime | None = None
        self._counts = {k: [0, 0, 0] for k in self.keys}
        self._empty = dict.fromkeys(self.keys, False)

    def add(self, frame: ShelfFrame) -> list[ShelfBucket]:
        """Account one frame; returns the buckets that closed before it."""
        start = bucket_start(frame.timestamp, self.span.total_seconds())
        closed: list[ShelfBucket] = []
        if self._start is None:
            self._start = start
        elif start > self._start:
            closed.append(self._close())
            self._start = start
        for ev in frame.events:
            self._counts[(ev.region_id, ev.facing_id)][
                ("facing_empty", "restocked", "product_taken").index(ev.kind)
            ] += 1
        for s in frame.facings:
            self._empty[(s.region_id, s.facing_id)] = s.empty
        return closed

    def flush(self) -> ShelfBucket | None:
        return self._close() if self._start is not None else None

    def _close(self) -> ShelfBucket:
        assert self._start is not None
        bucket = ShelfBucket(
            self._start,
            self._start + self.span,
            tuple(
                FacingCounts(r, f, c[0], c[1], c[2], self._empty[(r, f)])
                for (r, f), c in ((k, self._counts[k]) for k in self.keys)
            ),
        )
        self._counts = {k: [0, 0, 0] for k in self.keys}
        return bucket
