"""Opening a store: a DuckDB file or a PostgreSQL URL, the one door to both.

Its own module so that the base every store builds on does not import the stores.
"""

from __future__ import annotations

from edgetally.fleet.store.base import Store, StoreError, is_postgres_url
from edgetally.fleet.store.duckdb import DuckDBStore
from edgetally.fleet.store.postgres import PostgresStore


def open_store(db: str, *, read_only: bool = False) -> Store:
    """A DuckDB file path (``:memory:`` too) or a ``postgresql://`` URL, schema in place.

    ``read_only``: nothing is made or changed; a DuckDB file opens read-only, a PostgreSQL
    database (a read replica, say) must already hold the schema (:func:`require_schema`)
    and its sessions are read-only, so a write fails."""
    if not db:
        raise StoreError("no database given: pass a DuckDB file path or a postgresql:// URL")
    if is_postgres_url(db):
        return PostgresStore(db, read_only=read_only)
    if "://" in db:
        scheme = db.split("://", 1)[0]
        raise StoreError(
            f"unsupported database URL scheme {scheme[:20]!r}: use a DuckDB file path "
            "or postgresql://USER@HOST:PORT/DBNAME"
        )
    return DuckDBStore(db, read_only=read_only)
