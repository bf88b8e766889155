"""Value types of the fleet's store: what ingest writes and what queries return.

Frozen, slotted dataclasses, and :class:`Table`; they never leave the process (the API and
the command line serialise a :class:`Table` through :mod:`edgetally.fleet.http.export`).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal, get_args

import pyarrow as pa
from edgetally.models.wire import Aggregate, DeviceStatus, PowerReading

# A message's identity: its device, the device outbox's random epoch and its sequence.
KEY: tuple[str, ...] = ("site", "device", "epoch", "seq")

Interval = Literal["minute", "15min", "hour", "day"]
INTERVALS: tuple[str, ...] = get_args(Interval)


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """A message that did not validate: where it came from, why, and its first bytes."""

    received_at: datetime
    topic: str
    reason: str
    payload_size: int
    payload_head: str
    payload_sha256: str | None = None


@dataclass(frozen=True, slots=True)
class Seen:
    """A valid message from a device arrived at ``at`` (keeps ``last_seen`` current)."""

    site: str
    device: str
    at: datetime


@dataclass(frozen=True, slots=True)
class IngestBatch:
    """Everything one ingest round writes, in one transaction."""

    aggregates: tuple[Aggregate, ...] = ()
    statuses: tuple[DeviceStatus, ...] = ()
    power: tuple[PowerReading, ...] = ()
    seen: tuple[Seen, ...] = ()
    dead: tuple[DeadLetter, ...] = ()
    received_at: datetime | None = None
    # When the fleet received each status (same order as ``statuses``): the order a
    # status is kept in (a later one replaces it, an earlier one never does). Empty: the
    # batch's ``received_at``, then the order of ``statuses``.
    status_received: tuple[datetime, ...] = ()

    def __len__(self) -> int:
        return len(self.aggregates) + len(self.statuses) + len(self.power) + len(self.dead)


@dataclass(frozen=True, slots=True)
class IngestResult:
    """What a batch changed: new rows, and duplicates that were already stored."""

    aggregates_new: int = 0
    aggregates_duplicate: int = 0
    power_new: int = 0
    power_duplicate: int = 0
    statuses: int = 0
    dead_letters: int = 0
    conflicts: int = 0  # same (site, device, epoch, seq), other content: dead-lettered


@dataclass(frozen=True, slots=True)
class Filters:
    """The filters every analyst query takes; None means all. Times are UTC-aware."""

    site: str | None = None
    device: str | None = None
    line: str | None = None
    start: datetime | None = None  # inclusive, on the bucket start
    end: datetime | None = None  # exclusive
    interval: Interval = "hour"


class Table:
    """A query result: column names and rows (datetimes are naive UTC as stored).

    A result fetched as Arrow (``arrow=``) keeps its columns and builds the Python rows only
    when something asks for :attr:`rows`: the JSON and Parquet answers read the columns.
    """

    __slots__ = ("_arrow", "_rows", "columns")

    def __init__(
        self,
        columns: tuple[str, ...],
        rows: list[tuple[Any, ...]] | None = None,
        *,
        arrow: pa.Table | None = None,
    ) -> None:
        self.columns = columns
        self._rows = rows if rows is not None or arrow is not None else []
        self._arrow = arrow

    @property
    def rows(self) -> list[tuple[Any, ...]]:
        if self._rows is None:
            assert self._arrow is not None
            cols = [col.to_pylist() for col in self._arrow.columns]
            self._rows = list(zip(*cols, strict=True)) if cols else []
        return self._rows

    @property
    def arrow(self) -> pa.Table | None:
        """The columns as fetched, when the store gave Arrow (None for Python rows)."""
        return self._arrow

    def __len__(self) -> int:
        if self._rows is None and self._arrow is not None:
            return int(self._arrow.num_rows)
        return len(self.rows)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Table):
            return NotImplemented
        return self.columns == other.columns and self.rows == other.rows

    __hash__ = None  # type: ignore[assignment]  # equal by value, so unhashable

    def __repr__(self) -> str:
        return f"Table(columns={self.columns!r}, rows={len(self)})"
