"""The PostgreSQL store: the same tables and SQL as DuckDB, bulk loads through COPY.

One connection per thread (the ingest thread writes, API threads read). Needs psycopg 3
(``pip install 'edgetally[postgres]'``).
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import pyarrow as pa
import pyarrow.csv as pa_csv
from edgetally.fleet.store import partitions, sql
from edgetally.fleet.store.base import (
    QueryTimeout,
    StoreError,
    current_time_limit,
    fill_missing_rollups,
    plain_arrow,
    present_tables,
    require_schema,
    timeout_message,
)
from edgetally.fleet.store.columns import (
    Columns,
    StagedBatch,
    count_columns,
    merge_columns,
    stage,
)
from edgetally.fleet.store.records import KEY, IngestBatch, IngestResult, Table
from edgetally.fleet.store.sql import Dialect
from edgetally.models.redact import redact_url, scrub, url_secrets

try:
    import psycopg
except ImportError:  # pragma: no cover - depends on the install
    psycopg = None  # type: ignore[assignment]  # an optional dependency

_STAGES: tuple[tuple[str, str], ...] = (
    ("stage_aggregates", f"SELECT {', '.join(sql.AGG_COLUMNS)} FROM aggregates"),
    ("stage_events", f"SELECT {', '.join(sql.EVENT_COLUMNS)} FROM events"),
    ("stage_power", f"SELECT {', '.join(sql.POWER_COLUMNS)} FROM power"),
    ("stage_seen", f"SELECT {', '.join(sql.SEEN_COLUMNS)} FROM devices"),
    ("stage_status", f"SELECT {', '.join(sql.STATUS_COLUMNS)} FROM devices"),
    ("stage_conflicts", "SELECT site, device, conflicts AS n FROM devices"),
    ("stage_counts", "SELECT site, device, messages AS n FROM devices"),
    ("stage_dead", f"SELECT {', '.join(sql.DEAD_COLUMNS)} FROM dead_letters"),
    *(
        (found, f"SELECT {', '.join(KEY)}, digest FROM {table}")
        for table, found in partitions.FOUND.items()
    ),
)
_SCHEMA_LOCK_KEY = 0x65_74_73_63  # "etsc": the advisory lock held while the schema is made
_INDEXES: tuple[str, ...] = (
    *(statement for table in partitions.PARTITIONED for statement in partitions.indexes(table)),
    "CREATE INDEX IF NOT EXISTS dead_letters_sha256 ON dead_letters (payload_sha256)",
    *(
        f"CREATE INDEX IF NOT EXISTS {table}_{cols.replace(', ', '_')} ON {table} ({cols})"
        for table, _unit in sql.ROLLUPS
        for cols in ("bucket", "device, bucket")
    ),
)


# PostgreSQL type OIDs whose CSV text Arrow parses back exactly, and their Arrow types.
_CSV_TYPES: dict[int, pa.DataType] = {
    16: pa.bool_(),
    20: pa.int64(),
    21: pa.int16(),
    23: pa.int32(),
    25: pa.string(),
    700: pa.float32(),
    701: pa.float64(),
    1043: pa.string(),
    1114: pa.timestamp("us"),
}


def redact(url: str) -> str:
    """The URL without its password (in the userinfo or a ``password=`` parameter)."""
    return redact_url(url)


def _query_error(exc: Exception, limit: float | None) -> StoreError:
    if limit is not None and isinstance(exc, psycopg.errors.QueryCanceled):
        return QueryTimeout(timeout_message(limit))
    return StoreError(f"query failed: {_first_line(exc)}")


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


@dataclass(frozen=True, slots=True)
class Loaded:
    """What one staged statement changed: a row count, and the rows it returned."""

    count: int
    rows: list[tuple[Any, ...]]


class PostgresStore:
    """A :class:`~edgetally.fleet.store.base.Store` on a PostgreSQL database."""

    def __init__(self, url: str, *, read_only: bool = False) -> None:
        """``read_only`` (a read replica): no DDL and no write on open, the schema must be
        there (:func:`~edgetally.fleet.store.base.require_schema`), and every session is
        read-only, so a write fails loudly."""
        if psycopg is None:  # pragma: no cover - depends on the install
            raise StoreError("PostgreSQL needs psycopg: pip install 'edgetally[postgres]'")
        self._url = url
        self._local = threading.local()
        self._lock = threading.Lock()
        self._conns: list[Any] = []
        self._closed = False
        self._dialect = Dialect("postgres")
        self._months: set[datetime] = set()  # months whose raw partitions exist
        self._read_only = read_only
        conn = self._conn()
        if read_only:
            try:
                require_schema(self)
            except StoreError:
                self.close()
                raise
            return
        try:
            with conn.transaction():
                # One process at a time makes or converts the schema (workers start together).
                conn.execute("SELECT pg_advisory_xact_lock(%s)", [_SCHEMA_LOCK_KEY])
                old = int(conn.execute(sql.needs_identity_migration()).fetchone()[0])
                for statement in sql.schema(self._dialect.double):
                    conn.execute(statement)
                if old:
                    present = present_tables(self)
                    for statement in sql.migrate_identity(self._dialect.double, present):
                        conn.execute(statement)
                conn.execute(sql.add_status_rank())
                creates = {
                    text.split("(", 1)[0].split()[-1]: text
                    for text in sql.schema(self._dialect.double)
                }
                for table in partitions.PARTITIONED:
                    partitions.partition_existing(conn, table, creates[table])
                for statement in _INDEXES:
                    conn.execute(statement)
        except psycopg.Error as exc:
            raise StoreError(
                f"cannot create the schema in {self.description}: {_first_line(exc)}"
            ) from None
        fill_missing_rollups(self)

    @property
    def dialect(self) -> Dialect:
        return self._dialect

    @property
    def description(self) -> str:
        return redact(self._url)

    @property
    def has_rollups(self) -> bool:
        return True  # filled when the store opens, maintained by every write

    def _conn(self) -> Any:
        if self._closed:
            raise StoreError("the store is closed")
        conn = getattr(self._local, "conn", None)
        if conn is None or conn.closed:
            try:
                conn = psycopg.connect(self._url, autocommit=True, connect_timeout=10)
                if self._read_only:
                    conn.execute("SET default_transaction_read_only = on")
            except psycopg.Error as exc:
                said = scrub(_first_line(exc), url_secrets(self._url))  # libpq may quote it
                raise StoreError(f"cannot connect to {self.description}: {said}") from None
            with self._lock:
                self._conns.append(conn)
            self._local.conn = conn
            self._local.staged = False
        return conn

    def _ensure_stages(self, conn: Any) -> None:
        if getattr(self._local, "staged", False):
            return
        for name, select in _STAGES:
            conn.execute(
                f"CREATE TEMP TABLE IF NOT EXISTS {name} ON COMMIT DELETE ROWS AS "
                f"{select} WITH NO DATA"
            )
        self._local.staged = True

    def prepare_months(self, starts: Sequence[datetime]) -> None:
        """Create the monthly raw partitions rows starting at ``starts`` need."""
        try:
            self._ensure_months(self._conn(), starts)
        except psycopg.Error as exc:
            raise StoreError(f"writing to {self.description} failed: {_first_line(exc)}") from exc

    def _ensure_months(self, conn: Any, starts: Sequence[datetime]) -> None:
        """Create the monthly raw partitions a batch needs (outside its transaction; two
        workers creating the same one at once is fine)."""
        for month in {partitions.month_of(s) for s in starts} - self._months:
            for table in partitions.PARTITIONED:
                # (another worker may make it meanwhile)
                with contextlib.suppress(
                    psycopg.errors.DuplicateTable, psycopg.errors.UniqueViolation
                ):
                    conn.execute(partitions.create_partition(table, month))
            self._months.add(month)

    def write(self, batch: IngestBatch) -> IngestResult:
        staged = stage(batch)
        conn = self._conn()
        try:
            self._ensure_stages(conn)
            self._ensure_months(conn, [*staged.aggregates["start"], *staged.power["start"]])
            with conn.transaction():
                self._lock_devices(conn, staged)
                load = self._loader(conn)
                load("stage_seen", staged.seen, sql.upsert_seen)
                # Each key is looked up once in every month (found_aggregates), then the
                # rows not found go in, and the conflicts are read from what was found.
                # (The stages keep their rows until the transaction commits.)
                new_rows = Loaded(0, [])
                if staged.aggregates["device"]:
                    load(
                        "stage_aggregates",
                        staged.aggregates,
                        lambda n: partitions.find_stored("aggregates", n),
                    )
                    new_rows = self._run(
                        conn, sql.insert_aggregates_with_rollups("stage_aggregates", True)
                    )
                    staged.note_stored_conflicts(
                        "agg",
                        conn.execute(
                            sql.conflicts(partitions.FOUND["aggregates"], "stage_aggregates")
                        ).fetchall(),
                    )
                load("stage_events", staged.events, lambda n: sql.insert_events(n, True))
                power_rows = Loaded(0, [])
                if staged.power["device"]:
                    load("stage_power", staged.power, lambda n: partitions.find_stored("power", n))
                    power_rows = self._run(conn, sql.insert_power("stage_power", True))
                    staged.note_stored_conflicts(
                        "power",
                        conn.execute(
                            sql.conflicts(partitions.FOUND["power"], "stage_power")
                        ).fetchall(),
                    )
                load("stage_status", staged.status, sql.update_status)
                letters = merge_columns(staged.dead, staged.conflict_columns())
                dead = load("stage_dead", letters, sql.insert_dead)
                load("stage_conflicts", staged.new_conflicts(dead.rows), sql.add_conflicts)
                counts = count_columns([*new_rows.rows, *power_rows.rows])
                load("stage_counts", counts, sql.add_messages)
        except psycopg.Error as exc:
            raise StoreError(f"writing to {self.description} failed: {_first_line(exc)}") from exc
        agg_new = sum(int(r[2]) for r in new_rows.rows)
        return staged.result(
            agg_new, len(power_rows.rows), statuses=len(batch.statuses), dead_letters=dead.count
        )

    @staticmethod
    def _lock_devices(conn: Any, staged: StagedBatch) -> None:
        """Lock the devices rows of every device the batch writes (sorted: no deadlock), so
        no other worker stores one of their keys between the lookup and the insert; the
        devices new to the store are locked by :func:`sql.upsert_seen` inserting them."""
        devices: set[tuple[str, str]] = set()
        for cols in (staged.aggregates, staged.power, staged.seen, staged.status):
            devices.update(zip(cols["site"], cols["device"], strict=True))
        lock = partitions.lock_devices(devices)
        if lock is not None:
            conn.execute(lock[0].replace("?", "%s"), lock[1])

    @staticmethod
    def _run(conn: Any, statement: str) -> Loaded:
        """One statement on what is staged: its rows when it returns some, else its count."""
        with conn.cursor() as cur:
            cur.execute(statement)
            if cur.description is not None:
                rows = cur.fetchall()
                return Loaded(len(rows), rows)
            return Loaded(int(cur.rowcount), [])

    @staticmethod
    def _loader(conn: Any) -> Callable[[str, Columns, Callable[[str], str]], Loaded]:
        def load(name: str, columns: Columns, statement: Callable[[str], str]) -> Loaded:
            names = list(columns)
            first = columns[names[0]]
            if not first:
                return Loaded(0, [])
            with conn.cursor() as cur:
                with cur.copy(f"COPY {name} ({', '.join(names)}) FROM STDIN") as copy:
                    for row in zip(*(columns[n] for n in names), strict=True):
                        copy.write_row(row)
                cur.execute(statement(name))
                if cur.description is not None:  # a statement returning what it changed
                    rows = cur.fetchall()
                    return Loaded(len(rows), rows)
                return Loaded(int(cur.rowcount), [])

        return load

    def fetch(self, sql_text: str, params: Sequence[Any] = ()) -> Table:
        conn = self._conn()
        limit = current_time_limit()
        try:
            with self._limited(conn, limit), conn.cursor() as cur:
                cur.execute(sql_text.replace("?", "%s"), list(params))
                names = tuple(d.name for d in (cur.description or ()))
                rows = cur.fetchall()
        except psycopg.Error as exc:
            raise _query_error(exc, limit) from exc
        return Table(names, rows)

    @staticmethod
    @contextlib.contextmanager
    def _limited(conn: Any, limit: float | None) -> Iterator[None]:
        """A transaction whose statements PostgreSQL cancels after ``limit`` seconds."""
        if limit is None:
            yield
            return
        with conn.transaction():
            conn.execute(f"SET LOCAL statement_timeout = {max(1, round(limit * 1000))}")
            yield

    def fetch_arrow(self, sql_text: str, params: Sequence[Any] = ()) -> Table:
        """Through ``COPY (query) TO STDOUT`` as CSV, parsed by Arrow into typed columns (no
        Python value per cell); a result with a type CSV does not carry exactly comes
        through :meth:`fetch`."""
        text = sql_text.replace("?", "%s")
        conn = self._conn()
        limit = current_time_limit()
        try:
            with self._limited(conn, limit), conn.cursor() as cur:
                cur.execute(f"SELECT * FROM ({text}) AS q LIMIT 0", list(params))
                described = [(d.name, _CSV_TYPES.get(d.type_code)) for d in cur.description or ()]
                if any(kind is None for _n, kind in described):
                    return self._fetch_arrow_rows(sql_text, params)
                body = bytearray()
                with cur.copy(f"COPY ({text}) TO STDOUT (FORMAT csv)", list(params)) as copy:
                    for block in copy:
                        body += block
        except psycopg.Error as exc:
            raise _query_error(exc, limit) from exc
        names = [n for n, _k in described]
        schema = pa.schema([(n, k) for n, k in described])
        if not body:
            return Table(tuple(names), arrow=schema.empty_table())
        arrow = pa_csv.read_csv(
            pa.py_buffer(bytes(body)),
            # One thread: Arrow's CPU pool can abort a short-lived process at exit
            # ("terminate called without an active exception" after `fleet query`).
            read_options=pa_csv.ReadOptions(column_names=names, use_threads=False),
            convert_options=pa_csv.ConvertOptions(
                column_types=schema,
                null_values=[""],  # NULL is an unquoted empty field, '' is quoted
                strings_can_be_null=True,
                quoted_strings_can_be_null=False,
                true_values=["t"],
                false_values=["f"],
            ),
        )
        return Table(tuple(names), arrow=arrow.cast(schema))

    def _fetch_arrow_rows(self, sql_text: str, params: Sequence[Any]) -> Table:
        table = self.fetch(sql_text, params)
        rows = table.rows
        columns = list(zip(*rows, strict=True)) if rows else [()] * len(table.columns)
        arrow = pa.table([pa.array(col) for col in columns], names=list(table.columns))
        return Table(table.columns, rows, arrow=plain_arrow(arrow))

    def execute(self, sql_text: str, params: Sequence[Any] = ()) -> None:
        conn = self._conn()
        try:
            conn.execute(sql_text.replace("?", "%s"), list(params))
        except psycopg.Error as exc:
            raise StoreError(f"statement failed: {_first_line(exc)}") from exc

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        with self._lock:
            for conn in self._conns:
                conn.close()
            self._conns.clear()
