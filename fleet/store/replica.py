"""Analyst reads from a PostgreSQL read replica (``fleet serve --read-url``).

The api (or all) process keeps its primary store for everything that writes (device
statuses, rollouts, housekeeping) and opens a second store, read-only, on a replica for the
analyst queries. :func:`open_replica` opens it: no DDL, no write, the schema checked
instead, every session read-only. A replica answers as of the last WAL it replayed, so
answers may trail the primary by the replication lag; :func:`replica_state` says how far
(``/api/v1/health``).
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

from edgetally.fleet.store.base import (
    SchemaMissing,
    Store,
    StoreError,
    is_postgres_url,
)
from edgetally.fleet.store.connect import open_store
from edgetally.models.broker_url import redact_url

DEFAULT_SCHEMA_WAIT_S = 30.0  # how long a replica may take to replay a schema just made


def check_read_url(read_url: str, *, primary_postgres: bool) -> None:
    """A read replica is a ``postgresql://`` URL beside a PostgreSQL primary, or StoreError."""
    if not is_postgres_url(read_url):
        shown = redact_url(read_url)[:80]
        raise StoreError(
            f"--read-url must be a postgresql:// URL of a read replica (got {shown!r})"
        )
    if not primary_postgres:
        raise StoreError(
            "--read-url needs a PostgreSQL --db: the replica is of that primary (a DuckDB "
            "file has no replicas)"
        )


def open_replica(read_url: str, primary: Store, *, wait_s: float = DEFAULT_SCHEMA_WAIT_S) -> Store:
    """The read-only store on ``read_url``, a replica of ``primary`` (open, schema made).

    A replica that lacks the schema while it has not yet replayed the primary's WAL up to
    now (a fleet's first start: the primary made the schema a moment ago) is waited for,
    ``wait_s`` at most; then :class:`SchemaMissing`. Any error names the replica."""
    check_read_url(read_url, primary_postgres=primary.dialect.name == "postgres")
    target = str(primary.fetch("SELECT pg_current_wal_lsn()::text").rows[0][0])
    deadline = time.monotonic() + wait_s
    while True:
        # (asked before opening: a replica that catches up in between is opened again)
        caught_up = not _replaying_towards(read_url, target)
        try:
            return open_store(read_url, read_only=True)
        except SchemaMissing as exc:
            if caught_up or time.monotonic() >= deadline:
                raise SchemaMissing(f"the read replica: {exc}") from None
        except StoreError as exc:
            raise StoreError(f"the read replica: {exc}") from None
        time.sleep(0.2)


def _replaying_towards(read_url: str, lsn: str) -> bool:
    """Whether ``read_url`` is a standby that has not replayed WAL up to ``lsn`` yet."""
    import psycopg

    try:
        with psycopg.connect(read_url, autocommit=True, connect_timeout=10) as conn:
            row = conn.execute(
                "SELECT pg_is_in_recovery() AND "
                "coalesce(pg_last_wal_replay_lsn() < %s::pg_lsn, true)",
                [lsn],
            ).fetchone()
    except psycopg.Error:
        return False
    return bool(row and row[0])


def replica_state(primary: Store, replica: Store) -> dict[str, Any]:
    """What ``/api/v1/health`` says of the replica: ``store`` (its URL without password),
    ``reachable``, ``in_recovery`` (a streaming standby), ``behind_bytes`` (WAL the
    primary wrote that it has not replayed), ``lag_s`` (0 when it has replayed all of it,
    else the seconds since the last transaction it replayed: an upper bound after a quiet
    spell on the primary) and ``replayed_at`` (that transaction's commit time); the
    last three are null when unknown (not a standby, nothing replayed yet). Never raises:
    an unreachable replica is ``reachable: false`` with the ``error``."""
    out: dict[str, Any] = {"store": replica.description, "reachable": True}
    try:
        lsn: str | None = str(primary.fetch("SELECT pg_current_wal_lsn()::text").rows[0][0])
    except StoreError:  # the primary's own failure is reported with its tables
        lsn = None
    try:
        recovering, behind, replayed_at, since = replica.fetch(
            "SELECT pg_is_in_recovery(), "
            "pg_wal_lsn_diff(CAST(? AS pg_lsn), pg_last_wal_replay_lsn()), "
            "pg_last_xact_replay_timestamp(), "
            "extract(epoch FROM clock_timestamp() - pg_last_xact_replay_timestamp())",
            [lsn],
        ).rows[0]
    except StoreError as exc:
        return {**out, "reachable": False, "error": str(exc)}
    behind_bytes = None if behind is None else max(0, int(behind))
    if behind_bytes == 0:
        lag_s: float | None = 0.0
    else:
        lag_s = None if since is None else round(max(0.0, float(since)), 3)
    when = None
    if isinstance(replayed_at, datetime):
        when = replayed_at.astimezone(UTC).isoformat().replace("+00:00", "Z")
    return {
        **out,
        "in_recovery": bool(recovering),
        "behind_bytes": behind_bytes,
        "lag_s": lag_s,
        "replayed_at": when,
    }
