"""The store: where the fleet keeps what devices sent, and the analyst queries.

Owns the store protocol and :func:`~edgetally.fleet.store.base.open_store` (base), DuckDB
and PostgreSQL, the SQL both speak (sql), a batch as columns (columns), the value types
(records), the queries written once for both (queries) and the audio/shelf tables
(sensors). May import: fleet.errors, models. Never imports ingest, http, energy or rollout.
"""
