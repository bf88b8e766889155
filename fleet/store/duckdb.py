"""The embedded store: one DuckDB file, bulk loads through Arrow.

DuckDB connections are not shared between threads: each thread gets its own cursor of the
one database connection. Another process cannot open the file while a fleet serves it
(query a running fleet through its HTTP API instead).
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
from edgetally.fleet.store import sql
from edgetally.fleet.store.base import (
    QueryTimeout,
    StoreError,
    current_time_limit,
    fill_missing_rollups,
    interrupt_after,
    migrate_identity,
    plain_arrow,
    rollup_columns_complete,
    timeout_message,
)
from edgetally.fleet.store.columns import (
    Columns,
    StagedBatch,
    count_columns,
    merge_columns,
    stage,
)
from edgetally.fleet.store.records import IngestBatch, IngestResult, Table
from edgetally.fleet.store.sql import Dialect


def _query_error(exc: duckdb.Error, timed_out_after: float | None) -> StoreError:
    if timed_out_after is not None and isinstance(exc, duckdb.InterruptException):
        return QueryTimeout(timeout_message(timed_out_after))
    return StoreError(f"query failed: {str(exc).splitlines()[0]}")


def _count(rows: list[tuple[Any, ...]]) -> int:
    return int(rows[0][0]) if rows and rows[0] and rows[0][0] is not None else 0


class DuckDBStore:
    """A :class:`~edgetally.fleet.store.base.Store` on a DuckDB file (or ``:memory:``)."""

    def __init__(self, path: str, *, read_only: bool = False) -> None:
        self._path = path
        if path != ":memory:":
            p = Path(path)
            if read_only and not p.exists():
                raise StoreError(f"no fleet database at {path}")
            if not read_only and not p.parent.exists():
                raise StoreError(f"folder {p.parent} does not exist (for database {path})")
        try:
            self._con = duckdb.connect(path, read_only=read_only)
        except duckdb.IOException as exc:
            text = str(exc)
            if "lock" in text.lower():
                raise StoreError(
                    f"database {path} is in use by another process (a running "
                    "`edgetally fleet serve`?): query that fleet through --api instead"
                ) from None
            first = text.splitlines()[0] if text else type(exc).__name__
            raise StoreError(f"cannot open DuckDB database {path}: {first}") from None
        except duckdb.Error as exc:
            first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise StoreError(f"cannot open DuckDB database {path}: {first}") from None
        self._local = threading.local()
        self._lock = threading.Lock()
        self._cursors: list[duckdb.DuckDBPyConnection] = []
        self._closed = False
        self._dialect = Dialect("duckdb")
        self._has_rollups = False
        if not read_only:
            migrate_identity(self)
            for statement in sql.schema(self._dialect.double):
                self._con.execute(statement).fetchall()
            self._con.execute(sql.add_status_rank()).fetchall()
            fill_missing_rollups(self)
            self._has_rollups = True
        else:  # a file from before the rollups cannot get them while read-only
            tables = self.fetch("SELECT table_name FROM information_schema.tables").rows
            present = {str(r[0]) for r in tables}
            self._has_rollups = (
                all(t in present for t, _u in sql.ROLLUPS)
                and rollup_columns_complete(self)
                and not int(self.fetch(sql.rollups_missing()).rows[0][0])
            )

    @property
    def dialect(self) -> Dialect:
        return self._dialect

    @property
    def description(self) -> str:
        return f"duckdb:{self._path}"

    @property
    def has_rollups(self) -> bool:
        return self._has_rollups

    def _cursor(self) -> duckdb.DuckDBPyConnection:
        if self._closed:
            raise StoreError("the store is closed")
        cur: duckdb.DuckDBPyConnection | None = getattr(self._local, "cur", None)
        if cur is None:
            with self._lock:
                cur = self._con.cursor()
                self._cursors.append(cur)
            self._local.cur = cur
        return cur

    def prepare_months(self, starts: Sequence[datetime]) -> None:
        """Nothing to prepare: the DuckDB tables are not partitioned."""

    def write(self, batch: IngestBatch) -> IngestResult:
        staged = stage(batch)
        cur = self._cursor()
        try:
            cur.begin()
            self._load(cur, "stage_seen", staged.seen, sql.upsert_seen)
            new_rows = self._load_aggregates(cur, staged)
            self._load(cur, "stage_events", staged.events, sql.insert_events)
            power_rows = self._load_rows(
                cur,
                "stage_power",
                staged.power,
                sql.insert_power,
                lambda name: staged.note_stored_conflicts(
                    "power", cur.execute(sql.conflicts("power", name)).fetchall()
                ),
            )
            self._load_rows(cur, "stage_status", staged.status, sql.update_status)
            letters = merge_columns(staged.dead, staged.conflict_columns())
            dead = self._load_rows(cur, "stage_dead", letters, sql.insert_dead)
            self._load(cur, "stage_conflicts", staged.new_conflicts(dead), sql.add_conflicts)
            counts = count_columns([*new_rows, *power_rows])
            self._load(cur, "stage_counts", counts, sql.add_messages)
            cur.commit()
        except duckdb.Error as exc:
            with contextlib.suppress(duckdb.Error):
                cur.rollback()
            raise StoreError(f"writing to {self._path} failed: {str(exc).splitlines()[0]}") from exc
        return staged.result(
            len(new_rows),
            len(power_rows),
            statuses=len(batch.statuses),
            dead_letters=len(dead),
        )

    @staticmethod
    def _load_aggregates(
        cur: duckdb.DuckDBPyConnection, staged: StagedBatch
    ) -> list[tuple[str, str]]:
        """Insert the new aggregates, then add those (not duplicates) to the rollups;
        returns the (site, device) of each new one."""
        columns = staged.aggregates
        if not columns["device"]:
            return []
        cur.register("stage_aggregates", pa.table(columns))
        try:
            new = cur.sql(sql.insert_aggregates_returning("stage_aggregates")).to_arrow_table()
            staged.note_stored_conflicts(
                "agg", cur.execute(sql.conflicts("aggregates", "stage_aggregates")).fetchall()
            )
        finally:
            cur.unregister("stage_aggregates")
        if new.num_rows:
            cur.register("stage_new", new)
            try:
                for table, unit in sql.ROLLUPS:
                    cur.execute(sql.upsert_rollup(table, unit, "stage_new")).fetchall()
            finally:
                cur.unregister("stage_new")
        sites = new.column("site").to_pylist()
        devices = new.column("device").to_pylist()
        return list(zip(sites, devices, strict=True))

    @staticmethod
    def _load_rows(
        cur: duckdb.DuckDBPyConnection,
        name: str,
        columns: Columns,
        statement: Any,
        then: Callable[[str], None] | None = None,
    ) -> list[tuple[Any, ...]]:
        """Like :meth:`_load`, for a statement returning a row per row it changed."""
        first = next(iter(columns.values()))
        if not first:
            return []
        cur.register(name, pa.table(columns))
        try:
            rows = cur.execute(statement(name)).fetchall()
            if then is not None:
                then(name)
            return rows
        finally:
            cur.unregister(name)

    @staticmethod
    def _load(
        cur: duckdb.DuckDBPyConnection,
        name: str,
        columns: Columns,
        statement: Any,
        then: Callable[[str], None] | None = None,
    ) -> int:
        first = next(iter(columns.values()))
        if not first:
            return 0
        cur.register(name, pa.table(columns))
        try:
            n = _count(cur.execute(statement(name)).fetchall())
            if then is not None:
                then(name)
            return n
        finally:
            cur.unregister(name)

    def fetch(self, sql_text: str, params: Sequence[Any] = ()) -> Table:
        cur = self._cursor()
        limit = current_time_limit()
        with interrupt_after(limit, cur.interrupt) as fired:
            try:
                cur.execute(sql_text, list(params))
                names = tuple(d[0] for d in (cur.description or ()))
                rows = cur.fetchall()
            except duckdb.Error as exc:
                raise _query_error(exc, limit if fired[0] else None) from exc
        return Table(names, rows)

    def fetch_arrow(self, sql_text: str, params: Sequence[Any] = ()) -> Table:
        cur = self._cursor()
        limit = current_time_limit()
        with interrupt_after(limit, cur.interrupt) as fired:
            try:
                arrow = cur.sql(sql_text, params=list(params)).to_arrow_table()
            except duckdb.Error as exc:
                raise _query_error(exc, limit if fired[0] else None) from exc
        return Table(tuple(arrow.column_names), arrow=plain_arrow(arrow))

    def execute(self, sql_text: str, params: Sequence[Any] = ()) -> None:
        cur = self._cursor()
        try:
            cur.execute(sql_text, list(params)).fetchall()
        except duckdb.Error as exc:
            raise StoreError(f"statement failed: {str(exc).splitlines()[0]}") from exc

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            with self._lock:
                for cur in self._cursors:
                    cur.close()
                self._cursors.clear()
            self._con.close()
