"""An :class:`IngestBatch` as columns, ready for a bulk load (Arrow for DuckDB, COPY for PG).

Duplicates inside one batch are dropped here (first wins); duplicates of rows already stored
are dropped by the database (primary key on site, device, epoch and seq). A duplicate key
with other content (another :func:`digest`) is a conflict: the first stays, the other
becomes a dead letter (:func:`conflict_letter`) and counts against its device.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from edgetally.fleet.store.records import DeadLetter, IngestBatch, IngestResult
from edgetally.fleet.store.sql import (
    AGG_COLUMNS,
    DEAD_COLUMNS,
    EVENT_COLUMNS,
    POWER_COLUMNS,
    SEEN_COLUMNS,
    STATUS_COLUMNS,
)
from edgetally.models.topics import topic_for
from edgetally.models.wire import DeviceStatus, WireModel, to_json

Columns = dict[str, list[Any]]
Key = tuple[str, str, str, int]  # site, device, epoch, seq
HEAD_CHARS = 200
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def digest(message: WireModel) -> int:
    """A message's content as a signed 64-bit number (the first 8 bytes of the SHA-256 of
    its canonical JSON): equal for a redelivery, different for other content."""
    return int.from_bytes(hashlib.sha256(to_json(message)).digest()[:8], "big", signed=True)


def digest_hex(value: int) -> str:
    return f"{value & 0xFFFF_FFFF_FFFF_FFFF:016x}"


def key_of(message: Any) -> Key:
    return (message.site, message.device, message.epoch or "", int(message.seq))


def conflict_letter(kind: str, message: WireModel, stored: int, at: datetime) -> DeadLetter:
    """The dead letter of a message whose key was stored with other content."""
    site, device, epoch, seq = key_of(message)
    body = to_json(message)
    received = digest(message)
    return DeadLetter(
        received_at=at,
        topic=topic_for(site, device, kind),  # type: ignore[arg-type]  # kind names a stored topic kind
        reason=(
            f"conflict: {kind} {site}/{device} epoch {epoch or '-'} seq {seq} is stored with "
            f"digest {digest_hex(stored)}, this one has {digest_hex(received)}; the first "
            "is kept"
        ),
        payload_size=len(body),
        payload_head=body[: HEAD_CHARS * 4].decode("utf-8", "replace")[:HEAD_CHARS],
        payload_sha256=hashlib.sha256(body).hexdigest(),
    )


def status_rank(received: datetime) -> int:
    """The order of a status: when the fleet received it, in microseconds since 1970."""
    when = received if received.tzinfo else received.replace(tzinfo=UTC)
    return (when - _EPOCH) // timedelta(microseconds=1)


def naive_utc(value: datetime) -> datetime:
    """The stored form of a time: UTC without tzinfo."""
    if value.tzinfo is None:
        return value
    return value.astimezone(UTC).replace(tzinfo=None)


def _empty(names: tuple[str, ...]) -> Columns:
    return {n: [] for n in names}


class FirstOfKey:
    """The first message of each (site, device, epoch, seq) in a batch, with its digest; a
    later one of the same key is a duplicate, and a conflict when its content differs."""

    __slots__ = ("conflicts", "duplicates", "first")

    def __init__(self) -> None:
        self.first: dict[Key, tuple[WireModel, int]] = {}
        self.duplicates = 0
        self.conflicts: list[tuple[WireModel, int]] = []  # (message, the first one's digest)

    def take(self, message: WireModel) -> tuple[Key, int] | None:
        """The message's key and digest if it is the first of its key, else None."""
        key, dig = key_of(message), digest(message)
        seen = self.first.get(key)
        if seen is not None:
            self.duplicates += 1
            if seen[1] != dig:
                self.conflicts.append((message, seen[1]))
            return None
        self.first[key] = (message, dig)
        return key, dig


@dataclass(slots=True)
class StagedBatch:
    """Column lists per staged table, plus how many in-batch duplicates were dropped."""

    aggregates: Columns = field(default_factory=lambda: _empty(AGG_COLUMNS))
    events: Columns = field(default_factory=lambda: _empty(EVENT_COLUMNS))
    power: Columns = field(default_factory=lambda: _empty(POWER_COLUMNS))
    seen: Columns = field(default_factory=lambda: _empty(SEEN_COLUMNS))
    status: Columns = field(default_factory=lambda: _empty(STATUS_COLUMNS))
    dead: Columns = field(default_factory=lambda: _empty(DEAD_COLUMNS))
    # The batch's messages by key, their in-batch duplicates and conflicts.
    aggregate_keys: FirstOfKey = field(default_factory=FirstOfKey)
    power_keys: FirstOfKey = field(default_factory=FirstOfKey)
    received_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    # Conflicts found so far: their dead letters, and the (site, device) of each.
    conflicts: list[DeadLetter] = field(default_factory=list)
    conflict_devices: list[tuple[str, str]] = field(default_factory=list)

    def add_conflict(self, kind: str, message: WireModel, stored: int) -> None:
        letter = conflict_letter(kind, message, stored, self.received_at)
        self.conflicts.append(letter)
        site, device, _e, _s = key_of(message)
        self.conflict_devices.append((site, device))

    def note_stored_conflicts(self, kind: str, rows: list[tuple[Any, ...]]) -> None:
        """The rows of :func:`edgetally.fleet.store.sql.conflicts` (key, stored digest,
        received digest) as conflicts of this batch's messages of ``kind``."""
        keys = self.aggregate_keys if kind == "agg" else self.power_keys
        for row in rows:
            message, _digest = keys.first[(row[0], row[1], row[2], int(row[3]))]
            self.add_conflict(kind, message, int(row[4]))

    def result(
        self, aggregates_new: int, power_new: int, *, statuses: int, dead_letters: int
    ) -> IngestResult:
        """What the batch changed, once the store has written it."""
        n_agg = len(self.aggregates["device"]) + self.aggregate_keys.duplicates
        n_pow = len(self.power["device"]) + self.power_keys.duplicates
        return IngestResult(
            aggregates_new=aggregates_new,
            aggregates_duplicate=n_agg - aggregates_new,
            power_new=power_new,
            power_duplicate=n_pow - power_new,
            statuses=statuses,
            dead_letters=dead_letters,
            conflicts=len(self.conflicts),
        )

    def conflict_columns(self) -> Columns:
        """The conflicts as dead-letter rows."""
        dead = _empty(DEAD_COLUMNS)
        for dl in self.conflicts:
            _add(dead, _dead_row(dl))
        return dead

    def new_conflicts(self, stored: list[tuple[Any, ...]]) -> Columns:
        """(site, device, n): the conflicts whose dead letter is new, ``stored`` being the
        (topic, payload_sha256) of the dead letters the batch stored
        (:func:`edgetally.fleet.store.sql.insert_dead` returns them). A conflict delivered
        again (a redelivery, or two workers both receiving it) has its dead letter stored
        already, so a device counts each distinct conflict once."""
        new = {(str(topic), str(sha)) for topic, sha in stored}
        counted: set[tuple[str, str]] = set()
        counts: Counter[tuple[str, str]] = Counter()
        for dl, site_device in zip(self.conflicts, self.conflict_devices, strict=True):
            mark = (dl.topic, str(dl.payload_sha256))
            if mark in new and mark not in counted:
                counted.add(mark)
                counts[site_device] += 1
        per_device = _empty(("site", "device", "n"))
        for (site, device), n in counts.items():
            _add(per_device, (site, device, n))
        return per_device


def count_columns(pairs: list[tuple[Any, ...]]) -> Columns:
    """(site, device, n) rows summing the rows given: (site, device) counts one,
    (site, device, n) counts n (the new rows of each table, as the inserts return them)."""
    counts: Counter[tuple[str, str]] = Counter()
    for p in pairs:
        counts[(str(p[0]), str(p[1]))] += int(p[2]) if len(p) > 2 else 1
    out = _empty(("site", "device", "n"))
    for (site, device), n in counts.items():
        _add(out, (site, device, n))
    return out


def merge_columns(first: Columns, second: Columns) -> Columns:
    """Two column sets of one table, one after the other."""
    return {name: first[name] + second[name] for name in first}


def _dead_row(dl: DeadLetter) -> tuple[Any, ...]:
    return (
        naive_utc(dl.received_at),
        dl.topic,
        dl.reason,
        dl.payload_size,
        dl.payload_head,
        dl.payload_sha256,
    )


def _add(cols: Columns, values: tuple[Any, ...]) -> None:
    for name, value in zip(cols, values, strict=True):
        cols[name].append(value)


def stage(batch: IngestBatch) -> StagedBatch:
    """Turn a batch into columns; dedupe (site, device, epoch, seq) within it."""
    received = batch.received_at or datetime.now(UTC)
    now = naive_utc(received)
    out = StagedBatch(received_at=received)
    for a in batch.aggregates:
        taken = out.aggregate_keys.take(a)
        if taken is None:
            continue
        key, dig = taken
        start = naive_utc(a.start)
        d = a.dwell
        _add(
            out.aggregates,
            (
                *key,
                dig,
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
                    (*key, family, event, a.line, start, a.seconds, count),
                )
    for p in batch.power:
        taken = out.power_keys.take(p)
        if taken is None:
            continue
        key, dig = taken
        _add(
            out.power,
            (
                *key,
                dig,
                p.source,
                naive_utc(p.start),
                p.seconds,
                p.wh,
                p.mean_w,
                p.measured,
                now,
            ),
        )
    for kind, keys in (("agg", out.aggregate_keys), ("power", out.power_keys)):
        for message, first_digest in keys.conflicts:
            out.add_conflict(kind, message, first_digest)
    seen: dict[tuple[str, str], tuple[datetime, datetime, int]] = {}
    for s in batch.seen:
        at = naive_utc(s.at)
        prev = seen.get((s.site, s.device))
        if prev is None:
            seen[(s.site, s.device)] = (at, at, 1)
        else:
            seen[(s.site, s.device)] = (min(prev[0], at), max(prev[1], at), prev[2] + 1)
    for (site, device), (first, last, _n) in seen.items():
        _add(out.seen, (device, site, first, last, 0))  # messages: counted once stored
    base = status_rank(received)
    latest: dict[tuple[str, str], tuple[DeviceStatus, int]] = {}
    for i, st in enumerate(batch.statuses):  # the last received wins
        when = batch.status_received[i] if i < len(batch.status_received) else None
        rank = base + i if when is None else status_rank(when)
        kept = latest.get((st.site, st.device))
        if kept is None or rank >= kept[1]:
            latest[(st.site, st.device)] = (st, rank)
    for st, rank in latest.values():
        _add(
            out.status,
            (
                st.site,
                st.device,
                st.state,
                naive_utc(st.at),
                st.model,
                st.backend,
                st.fps,
                st.uptime_s,
                st.errors,
                st.last_error,
                rank,
            ),
        )
    for dl in batch.dead:
        _add(out.dead, _dead_row(dl))
    return out
