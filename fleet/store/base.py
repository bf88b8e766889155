"""The store interface of the fleet, and :func:`open_store` that picks an implementation.

A DuckDB file (the default, embedded) or a ``postgresql://`` URL. Both hold the same tables
(:mod:`edgetally.fleet.store.sql`) and answer the same SQL; queries live in their own modules
(:mod:`edgetally.fleet.store.queries`) and go through :meth:`Store.fetch`, so adding one is
writing a function, not touching the stores.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import datetime
from typing import Any, Protocol

import pyarrow as pa
from edgetally.fleet.errors import FleetError
from edgetally.fleet.store import sql
from edgetally.fleet.store.records import IngestBatch, IngestResult, Table
from edgetally.fleet.store.sql import Dialect


class StoreError(FleetError):
    """The database cannot be opened, or a statement on it failed."""


class SchemaMissing(StoreError):
    """A read-only store (a replica) lacks the current edgetally schema, which it may not make."""


class QueryTimeout(StoreError):
    """A read query ran past the time limit of :func:`query_time_limit` and was cancelled."""


_time_limit: ContextVar[float | None] = ContextVar("edgetally_query_time_limit", default=None)


@contextmanager
def query_time_limit(seconds: float | None) -> Iterator[None]:
    """Reads (:meth:`Store.fetch`, :meth:`Store.fetch_arrow`) made inside the block are
    cancelled after ``seconds`` with :class:`QueryTimeout`; None: no limit. Only the code
    in the block is limited (ingest's writes never are)."""
    if seconds is not None and seconds <= 0:
        raise ValueError(f"a query time limit must be positive (got {seconds})")
    token = _time_limit.set(seconds)
    try:
        yield
    finally:
        _time_limit.reset(token)


def current_time_limit() -> float | None:
    """The limit :func:`query_time_limit` set for this context, if any."""
    return _time_limit.get()


def timeout_message(seconds: float) -> str:
    return (
        f"the query ran longer than its limit of {seconds:g} s and was cancelled: narrow it "
        "(site, device, from/to) or use a coarser interval"
    )


@contextmanager
def interrupt_after(seconds: float | None, interrupt: Callable[[], None]) -> Iterator[list[bool]]:
    """Call ``interrupt`` from a timer thread if the block runs past ``seconds``; the
    yielded list holds True once it fired."""
    fired = [False]
    if seconds is None:
        yield fired
        return

    def fire() -> None:
        fired[0] = True
        interrupt()

    timer = threading.Timer(seconds, fire)
    timer.daemon = True
    timer.start()
    try:
        yield fired
    finally:
        timer.cancel()


class Store(Protocol):
    """Where the fleet keeps aggregates, power, devices and dead letters."""

    @property
    def dialect(self) -> Dialect: ...

    @property
    def description(self) -> str:
        """Where the data is (a path, or a URL without its password)."""
        ...

    @property
    def has_rollups(self) -> bool:
        """Whether the traffic rollups (:data:`edgetally.fleet.store.sql.ROLLUPS`) are current."""
        ...

    def write(self, batch: IngestBatch) -> IngestResult:
        """Store a batch in one transaction; rows already stored (device + seq) are skipped."""
        ...

    def prepare_months(self, starts: Sequence[datetime]) -> None:
        """Make ready to store raw rows starting at ``starts`` (PostgreSQL: create their
        monthly partitions; DuckDB: nothing)."""
        ...

    def fetch(self, sql: str, params: Sequence[Any] = ()) -> Table:
        """Run a read query (``?`` placeholders) and return its rows."""
        ...

    def fetch_arrow(self, sql: str, params: Sequence[Any] = ()) -> Table:
        """:meth:`fetch` with the result also as Arrow columns (:attr:`Table.arrow`), for
        answers of many rows: JSON and Parquet are built from the columns."""
        ...

    def execute(self, sql: str, params: Sequence[Any] = ()) -> None:
        """Run one statement that returns nothing (maintenance, bulk generation)."""
        ...

    def close(self) -> None: ...


def refill_rollups(store: Store) -> None:
    """Rebuild the traffic rollups from the stored aggregates, in one transaction."""
    store.execute("BEGIN")
    try:
        for statement in sql.refill_rollups():
            store.execute(statement)
    except StoreError:
        store.execute("ROLLBACK")
        raise
    store.execute("COMMIT")


def rollup_columns_complete(store: Store) -> bool:
    """Whether the rollups have every zone column (a file from before them has not)."""
    want = len(sql.ROLLUPS) * len(sql.ROLLUP_ZONE_COLUMNS)
    return int(store.fetch(sql.rollup_columns_present()).rows[0][0]) == want


def fill_missing_rollups(store: Store) -> bool:
    """Build the rollups of a database that has aggregates but none (one from before them),
    or that has them without the occupancy and dwell columns (added, then all rebuilt)."""
    if not rollup_columns_complete(store):
        for table, _unit in sql.ROLLUPS:
            for statement in sql.add_rollup_columns(table, store.dialect.double):
                store.execute(statement)
    elif int(store.fetch(sql.rollups_missing()).rows[0][0]) != 1:
        return False
    refill_rollups(store)
    return True


def present_tables(store: Store) -> set[str]:
    """The names of the tables the store's database has."""
    rows = store.fetch("SELECT table_name FROM information_schema.tables").rows
    return {str(r[0]) for r in rows}


def migrate_identity(store: Store) -> bool:
    """Rebuild a store of schema version 1 (messages keyed on device and seq alone) with the
    keys of version 2 (:data:`edgetally.fleet.store.sql.KEY`), in one transaction; False when
    there was nothing to migrate."""
    if not int(store.fetch(sql.needs_identity_migration()).rows[0][0]):
        return False
    statements = sql.migrate_identity(store.dialect.double, present_tables(store))
    store.execute("BEGIN")
    try:
        for statement in statements:
            store.execute(statement)
    except StoreError:
        store.execute("ROLLBACK")
        raise
    store.execute("COMMIT")
    return True


def schema_tables(double: str) -> set[str]:
    """The tables :func:`edgetally.fleet.store.sql.schema` makes."""
    return {text.split("(", 1)[0].split()[-1] for text in sql.schema(double)}


def require_schema(store: Store) -> None:
    """:class:`SchemaMissing` unless ``store`` holds the schema an up-to-date fleet makes
    (every table, the version 2 keys, the rollups' zone columns, ``status_rank``): what a
    read-only store checks instead of making or migrating it."""
    where = store.description
    missing = schema_tables(store.dialect.double) - present_tables(store)
    if "aggregates" in missing:
        raise SchemaMissing(
            f"{where} has no edgetally schema yet: start the fleet once on the primary "
            "(it makes the schema) and let the replica replay it"
        )
    old = sorted(missing)
    if int(store.fetch(sql.needs_identity_migration()).rows[0][0]):
        old.append("the version 2 keys")
    if not rollup_columns_complete(store):
        old.append("the rollups' zone columns")
    rank = store.fetch(
        "SELECT count(*) FROM information_schema.columns "
        "WHERE table_name = 'devices' AND column_name = 'status_rank'"
    ).rows[0][0]
    if not int(rank):
        old.append("devices.status_rank")
    if old:
        raise SchemaMissing(
            f"{where} holds an older edgetally schema (missing: {', '.join(old)}): start "
            "the fleet once on the primary (it migrates the schema) and let the replica replay it"
        )


def plain_arrow(table: pa.Table) -> pa.Table:
    """Decimals as the fetched rows give them: whole ones (sums of integers) as int64, the
    rest as float64."""
    fields = []
    for f in table.schema:
        if pa.types.is_decimal(f.type):
            f = f.with_type(pa.int64() if f.type.scale == 0 else pa.float64())
        fields.append(f)
    schema = pa.schema(fields)
    return table if schema.equals(table.schema) else table.cast(schema)


def is_postgres_url(db: str) -> bool:
    return db.startswith(("postgresql://", "postgres://"))
