"""Audio levels and shelf states in the fleet: writing them, and the analyst queries.

Tables ``audio`` (one row per message) and ``shelf`` (one row per facing of a message) are
created with the rest of the schema (:func:`edgetally.fleet.store.sql.sensor_schema`); on
PostgreSQL they are partitioned by month like the other raw tables
(:mod:`edgetally.fleet.store.partitions`), retention included. Their event
counts also go to the ``events`` table (family ``audio`` or ``shelf``, ``line`` = the
source), so ``/api/v1/events`` shows them with the rest. Every insert skips rows already
stored, so a redelivered message (same site, device, epoch and seq) changes nothing; the same
key with other content is a conflict: the first stays, the other becomes a dead letter.

Written through :meth:`Store.execute` and :meth:`Store.fetch` only, in one transaction per
batch, so the same code serves DuckDB and PostgreSQL.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from edgetally.fleet.store import partitions
from edgetally.fleet.store.base import Store, StoreError
from edgetally.fleet.store.columns import FirstOfKey, Key, conflict_letter, naive_utc
from edgetally.fleet.store.queries import DEFAULT_MAX_ROWS, QueryTooLarge, where
from edgetally.fleet.store.records import KEY, DeadLetter, Filters, Table
from edgetally.fleet.store.sql import DEAD_COLUMNS, EVENT_COLUMNS, UNKNOWN_DIGEST
from edgetally.models.wire import AudioLevels, ShelfState

AUDIO_COLUMNS: tuple[str, ...] = (
    *KEY,
    "digest",
    "source",
    "start",
    "seconds",
    "duration_s",
    "leq_dbfs",
    "laeq_dbfs",
    "leq_dbspl",
    "laeq_dbspl",
    "speech_ratio",
    "received_at",
)
SHELF_COLUMNS: tuple[str, ...] = (
    *KEY,
    "digest",
    "region",
    "facing",
    "source",
    "start",
    "seconds",
    "facing_empty",
    "restocked",
    "product_taken",
    "empty_at_end",
    "received_at",
)
SHELF_EVENTS: tuple[str, ...] = ("facing_empty", "restocked", "product_taken")
_ROWS_PER_INSERT = 1_000  # keeps the statement's parameters well under PostgreSQL's 65535


@dataclass(frozen=True, slots=True)
class SensorBatch:
    """The audio and shelf messages of one ingest round."""

    audio: tuple[AudioLevels, ...] = ()
    shelf: tuple[ShelfState, ...] = ()
    received_at: datetime | None = None

    def __len__(self) -> int:
        return len(self.audio) + len(self.shelf)


@dataclass(frozen=True, slots=True)
class SensorResult:
    """Messages stored for the first time, and those already there (redeliveries)."""

    audio_new: int = 0
    audio_duplicate: int = 0
    shelf_new: int = 0
    shelf_duplicate: int = 0
    conflicts: int = 0  # same key, other content: dead-lettered, the first kept


@dataclass(slots=True)
class _Rows:
    audio: list[tuple[Any, ...]] = field(default_factory=list)
    shelf: list[tuple[Any, ...]] = field(default_factory=list)
    events: list[tuple[Any, ...]] = field(default_factory=list)
    keys: dict[str, FirstOfKey] = field(
        default_factory=lambda: {"audio": FirstOfKey(), "shelf": FirstOfKey()}
    )


def _rows(batch: SensorBatch) -> _Rows:
    now = naive_utc(batch.received_at or datetime.now(UTC))
    out = _Rows()
    for a in batch.audio:
        taken = out.keys["audio"].take(a)
        if taken is None:
            continue
        key, dig = taken
        start = naive_utc(a.start)
        out.audio.append(
            (
                *key,
                dig,
                a.source,
                start,
                a.seconds,
                a.duration_s,
                a.leq_dbfs,
                a.laeq_dbfs,
                a.leq_dbspl,
                a.laeq_dbspl,
                a.speech_ratio,
                now,
            )
        )
        out.events += [
            (*key, "audio", name, a.source, start, a.seconds, n) for name, n in a.events.items()
        ]
    for s in batch.shelf:
        taken = out.keys["shelf"].take(s)
        if taken is None:
            continue
        key, dig = taken
        start = naive_utc(s.start)
        totals = dict.fromkeys(SHELF_EVENTS, 0)
        for f in s.facings:
            out.shelf.append(
                (
                    *key,
                    dig,
                    f.region,
                    f.facing,
                    s.source,
                    start,
                    s.seconds,
                    f.facing_empty,
                    f.restocked,
                    f.product_taken,
                    f.empty_at_end,
                    now,
                )
            )
            for name in SHELF_EVENTS:
                totals[name] += getattr(f, name)
        out.events += [
            (*key, "shelf", name, s.source, start, s.seconds, n) for name, n in totals.items() if n
        ]
    return out


def _stored_keys(
    store: Store, table: str, columns: tuple[str, ...], rows: list[tuple[Any, ...]]
) -> set[tuple[Any, ...]]:
    """The unique keys (:func:`partitions.key_columns`) of ``rows`` that ``table`` holds,
    in any month (PostgreSQL: one index probe per row and partition)."""
    keys = partitions.key_columns(table)
    at = [columns.index(c) for c in keys]
    arrays = [[row[i] for row in rows] for i in at]
    kinds = ", ".join("?::bigint[]" if c == "seq" else "?::varchar[]" for c in keys)
    on = " AND ".join(f"t.{c} = s.{c}" for c in keys)
    found = store.fetch(
        f"SELECT DISTINCT {', '.join(f's.{c}' for c in keys)} FROM unnest({kinds}) "
        f"AS s({', '.join(keys)}) JOIN {table} AS t ON {on}",
        arrays,
    )
    return {tuple(r) for r in found.rows}


def _insert(
    store: Store, table: str, columns: tuple[str, ...], rows: list[tuple[Any, ...]]
) -> set[Key]:
    """Insert rows not yet stored; returns the keys of those that were new. On PostgreSQL
    the primary key of a monthly partition holds ``start``, so the keys are looked up in
    every month first and the rows found are left out."""
    new: set[Key] = set()
    if rows and store.dialect.name == "postgres":
        stored = _stored_keys(store, table, columns, rows)
        if stored:
            at = [columns.index(c) for c in partitions.key_columns(table)]
            rows = [row for row in rows if tuple(row[i] for i in at) not in stored]
    one = "(" + ", ".join("?" * len(columns)) + ")"
    for i in range(0, len(rows), _ROWS_PER_INSERT):
        part = rows[i : i + _ROWS_PER_INSERT]
        text = (
            f"INSERT INTO {table} ({', '.join(columns)}) VALUES {', '.join([one] * len(part))} "
            f"ON CONFLICT DO NOTHING RETURNING {', '.join(KEY)}"
        )
        result = store.fetch(text, [v for row in part for v in row])
        new.update((r[0], r[1], r[2], int(r[3])) for r in result.rows)
    return new


def _stored_digest(store: Store, table: str, key: Key) -> int | None:
    where_key = " AND ".join(f"{c} = ?" for c in KEY)
    rows = store.fetch(f"SELECT digest FROM {table} WHERE {where_key} LIMIT 1", key).rows
    return int(rows[0][0]) if rows else None


def _record_conflicts(store: Store, letters: list[DeadLetter]) -> None:
    """Store conflict dead letters not stored yet (once per topic and payload hash, as
    :func:`edgetally.fleet.store.sql.insert_dead`) and count those against their devices:
    a conflict delivered again counts once."""
    if not letters:
        return
    cols = ", ".join(DEAD_COLUMNS)
    marks = ", ".join("?" * len(DEAD_COLUMNS))
    per_device: dict[tuple[str, str], int] = {}
    for dl in letters:
        stored = store.fetch(
            f"INSERT INTO dead_letters ({cols}) SELECT {marks} WHERE NOT EXISTS "
            "(SELECT 1 FROM dead_letters AS d WHERE d.topic = ? AND d.payload_sha256 = ?) "
            "RETURNING topic",
            (
                naive_utc(dl.received_at),
                dl.topic,
                dl.reason,
                dl.payload_size,
                dl.payload_head,
                dl.payload_sha256,
                dl.topic,
                dl.payload_sha256,
            ),
        ).rows
        if not stored:
            continue
        site, device = dl.topic.split("/")[2:4]
        per_device[(site, device)] = per_device.get((site, device), 0) + 1
    for (site, device), n in per_device.items():
        store.execute(
            "UPDATE devices SET conflicts = conflicts + ? WHERE site = ? AND device = ?",
            (n, site, device),
        )


def _count_stored(store: Store, keys: list[Key]) -> None:
    """Add the messages newly stored to their devices' counters (a redelivery adds none)."""
    per_device: dict[tuple[str, str], int] = {}
    for site, device, _epoch, _seq in keys:
        per_device[(site, device)] = per_device.get((site, device), 0) + 1
    for (site, device), n in per_device.items():
        store.execute(
            "UPDATE devices SET messages = messages + ? WHERE site = ? AND device = ?",
            (n, site, device),
        )


def write_sensors(store: Store, batch: SensorBatch) -> SensorResult:
    """Store a batch's audio and shelf messages (and their events) in one transaction."""
    if not len(batch):
        return SensorResult()
    rows = _rows(batch)
    at = batch.received_at or datetime.now(UTC)
    store.prepare_months([naive_utc(m.start) for m in (*batch.audio, *batch.shelf)])
    store.execute("BEGIN")
    try:
        if store.dialect.name == "postgres":  # writers of a device one at a time
            lock = partitions.lock_devices((m.site, m.device) for m in (*batch.audio, *batch.shelf))
            if lock is not None:
                store.fetch(*lock)
        audio_new = _insert(store, "audio", AUDIO_COLUMNS, rows.audio)
        shelf_new = _insert(store, "shelf", SHELF_COLUMNS, rows.shelf)
        _insert(store, "events", EVENT_COLUMNS, rows.events)
        letters = []
        for kind, new in (("audio", audio_new), ("shelf", shelf_new)):
            keys = rows.keys[kind]
            letters += [conflict_letter(kind, m, first, at) for m, first in keys.conflicts]
            for key, (message, dig) in keys.first.items():
                if key in new:
                    continue
                stored = _stored_digest(store, kind, key)
                if stored not in (None, UNKNOWN_DIGEST, dig):
                    letters.append(conflict_letter(kind, message, stored, at))
        _record_conflicts(store, letters)
        _count_stored(store, [*audio_new, *shelf_new])
        store.execute("COMMIT")
    except StoreError:
        with contextlib.suppress(StoreError):
            store.execute("ROLLBACK")
        raise
    return SensorResult(
        audio_new=len(audio_new),
        audio_duplicate=len(batch.audio) - len(audio_new),
        shelf_new=len(shelf_new),
        shelf_duplicate=len(batch.shelf) - len(shelf_new),
        conflicts=len(letters),
    )


# --------------------------------------------------------------------------- queries


def _limited(store: Store, text: str, params: list[Any], max_rows: int, what: str) -> Table:
    result = store.fetch(f"{text} LIMIT {int(max_rows) + 1}", params)
    if len(result.rows) > max_rows:
        raise QueryTooLarge(
            f"the {what} query matches more than {max_rows} rows: narrow it (site, device, "
            "from/to) or use a coarser interval"
        )
    return result


def _energy_mean(column: str) -> str:
    """Duration-weighted energy mean of a level in dB: 10 log10(sum(t 10^(L/10)) / sum(t))."""
    return (
        f"10 * log10(sum(CASE WHEN {column} IS NOT NULL THEN duration_s * power(10, {column} / 10)"
        f" END) / sum(CASE WHEN {column} IS NOT NULL THEN duration_s END)) AS {column}"
    )


AUDIO_ANSWER_COLUMNS: tuple[str, ...] = (
    "bucket",
    "site",
    "device",
    "source",
    "seconds",
    "leq_dbfs",
    "laeq_dbfs",
    "leq_dbspl",
    "laeq_dbspl",
    "speech_ratio",
    "events",
)


def audio(
    store: Store, f: Filters, *, source: str | None = None, max_rows: int = DEFAULT_MAX_ROWS
) -> Table:
    """Sound per bucket, site, device and source: energy means of the levels (weighted by
    each message's duration), the time-weighted speech share, summed event counts
    (``events``: name -> count) and ``seconds`` of sound behind them."""
    bucket = store.dialect.bucket("start", f.interval)
    clause, params = where(_with_line(f, source), line_column="source")
    speech = (
        "sum(speech_ratio * duration_s) / "
        "sum(CASE WHEN speech_ratio IS NOT NULL THEN duration_s END) AS speech_ratio"
    )
    levels = ", ".join(
        _energy_mean(c) for c in ("leq_dbfs", "laeq_dbfs", "leq_dbspl", "laeq_dbspl")
    )
    table = _limited(
        store,
        f"SELECT {bucket} AS bucket, site, device, source, sum(duration_s) AS seconds, "
        f"{levels}, {speech} FROM audio{clause} GROUP BY 1, 2, 3, 4 ORDER BY 1, 2, 3, 4",
        params,
        max_rows,
        "audio",
    )
    counts = _event_counts(store, f, source, "audio")
    rows = [(*row, counts.get(tuple(row[:4]), {})) for row in table.rows]
    return Table(AUDIO_ANSWER_COLUMNS, rows)


def _with_line(f: Filters, line: str | None) -> Filters:
    return Filters(
        site=f.site, device=f.device, line=line, start=f.start, end=f.end, interval=f.interval
    )


def _event_counts(
    store: Store, f: Filters, source: str | None, family: str
) -> dict[tuple[Any, ...], dict[str, int]]:
    bucket = store.dialect.bucket("start", f.interval)
    clause, params = where(_with_line(f, source))
    clause = f"{clause} AND family = ?" if clause else " WHERE family = ?"
    result = store.fetch(
        f'SELECT {bucket} AS bucket, site, device, line, event, sum("count") FROM events'
        f"{clause} GROUP BY 1, 2, 3, 4, 5 ORDER BY 1, 2, 3, 4, 5",
        [*params, family],
    )
    out: dict[tuple[Any, ...], dict[str, int]] = {}
    for b, site, device, line, event, n in result.rows:
        out.setdefault((b, site, device, line), {})[str(event)] = int(n)
    return out


SHELF_ANSWER_COLUMNS: tuple[str, ...] = (
    "bucket",
    "site",
    "device",
    "source",
    "region",
    "facing",
    "facing_empty",
    "restocked",
    "product_taken",
    "empty_at_end",
)


def shelf(
    store: Store,
    f: Filters,
    *,
    region: str | None = None,
    facing: str | None = None,
    max_rows: int = DEFAULT_MAX_ROWS,
) -> Table:
    """Shelf events per bucket and facing (summed), and whether the facing was empty at the
    end of the last message in the bucket (``empty_at_end``)."""
    bucket = store.dialect.bucket("start", f.interval)
    clause, params = where(_with_line(f, None))
    for column, value in (("region", region), ("facing", facing)):
        if value is not None:
            clause = f"{clause} AND {column} = ?" if clause else f" WHERE {column} = ?"
            params.append(value)
    keys = "site, device, source, region, facing"
    text = (
        f"WITH t AS (SELECT {bucket} AS bucket, {keys}, facing_empty, restocked, "
        f"product_taken, empty_at_end, row_number() OVER (PARTITION BY {bucket}, {keys} "
        f"ORDER BY start DESC, seq DESC) AS latest FROM shelf{clause}) "
        f"SELECT bucket, {keys}, CAST(sum(facing_empty) AS BIGINT) AS facing_empty, "
        "CAST(sum(restocked) AS BIGINT) AS restocked, "
        "CAST(sum(product_taken) AS BIGINT) AS product_taken, "
        "bool_or(CASE WHEN latest = 1 THEN empty_at_end END) AS empty_at_end "
        "FROM t GROUP BY 1, 2, 3, 4, 5, 6 ORDER BY 1, 2, 3, 4, 5, 6"
    )
    result = _limited(store, text, params, max_rows, "shelf")
    return Table(SHELF_ANSWER_COLUMNS, result.rows)
