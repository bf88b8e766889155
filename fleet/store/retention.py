"""Retention of raw rows: the months that go, on either store (rollups stay)."""

from __future__ import annotations

from datetime import datetime

from edgetally.fleet.store.base import Store
from edgetally.fleet.store.partitions import PARTITIONED, month_of_partition, raw_cutoff


def partitions(store: Store, table: str) -> list[tuple[str, datetime]]:
    """The monthly partitions of ``table`` (PostgreSQL): (name, month), oldest first."""
    rows = store.fetch(
        "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
        "JOIN pg_class p ON p.oid = i.inhparent WHERE p.relname = ?",
        [table],
    ).rows
    out = []
    for (name,) in rows:
        month = month_of_partition(table, str(name))
        if month is not None:
            out.append((str(name), month))
    return sorted(out, key=lambda item: item[1])


def drop_old_raw(store: Store, keep_months: int, now: datetime) -> list[str]:
    """Retention of raw rows: those of months before :func:`raw_cutoff` go, the rollups
    stay (a year by day still answers). PostgreSQL drops whole monthly partitions
    (instant, no vacuum); DuckDB deletes the rows. Returns what went: partition names, or
    ``table < month`` for DuckDB."""
    cutoff = raw_cutoff(now, keep_months)
    gone: list[str] = []
    if store.dialect.name == "postgres":
        for table in PARTITIONED:
            for name, month in partitions(store, table):
                if month < cutoff:
                    store.execute(f"DROP TABLE {name}")
                    gone.append(name)
        return gone
    for table in PARTITIONED:
        n = int(store.fetch(f"SELECT count(*) FROM {table} WHERE start < ?", [cutoff]).rows[0][0])
        if n:
            store.execute(f"DELETE FROM {table} WHERE start < ?", [cutoff])
            gone.append(f"{table} < {cutoff:%Y-%m}")
    return gone
