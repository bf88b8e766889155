"""PostgreSQL: the raw message tables partitioned by month, and raw retention.

The raw message tables (:data:`PARTITIONED`: ``aggregates``, ``events``, ``power``,
``audio`` and ``shelf``) are declaratively partitioned by range of ``start``, one
partition a month (``aggregates_p2024_06``), created when a batch first needs it. The rollups
(``traffic_hour``, ``traffic_day``) are not partitioned: they are what analysts read, and
they stay when raw months are dropped (:func:`drop_old_raw`), so a year by day still
answers after the raw rows of that year are gone.

A partitioned table's primary key must hold the partition key, so it is (site, device,
epoch, seq, start) and no longer keeps a key once per table on its own: a message that
reuses a stored key (a redelivery, or a conflict: other content) at any distance in time
is kept out by the insert itself, which looks the key up in every month through each
partition's primary key index, whose leading columns are the key (:func:`key_absent`;
aggregates and power look it up once per batch, :func:`find_stored`, and the conflicts
are read from what was found). The cost is one index probe per row and partition, which
the conflict check after the insert already paid, so a write costs about what it did.
Writers of the same device are serialised so that two ingest workers cannot both find a
key absent and store it in two months: every write transaction first locks the
``devices`` rows of the devices it writes, in (site, device) order (:func:`lock_devices`;
rows it would lock anyway to update last seen and the counters, so no new waiting and
no entry in PostgreSQL's shared lock table), and a device new to the store is locked by
the insert of its row, which a second writer waits on. A device with no row, written
without its being seen (only by direct calls to the store, never by ingest, which marks
every message seen), is not serialised.

Indexes: ``start`` gets a BRIN index (rows arrive nearly in time order, the index is a few
pages per partition); per site and per device, B-trees on (site, start) and (device,
start) for aggregates, audio and shelf, (device, start) for power. A store from before
partitions is converted when it opens (:func:`partition_existing`).
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

from edgetally.fleet.store.records import KEY

PARTITIONED: tuple[str, ...] = ("aggregates", "events", "power", "audio", "shelf")
# Each partitioned table's key columns beyond (site, device, epoch, seq).
EXTRA_KEY: dict[str, tuple[str, ...]] = {
    "events": ("family", "event"),
    "shelf": ("region", "facing"),
}
# Where the stored rows that hold a staged row's key are collected (PostgreSQL temp
# tables: key and digest), for the tables whose conflicts are read from them.
FOUND: dict[str, str] = {"aggregates": "found_aggregates", "power": "found_power"}


def month_of(value: datetime) -> datetime:
    """The first instant of the month of ``value`` (naive UTC, as stored)."""
    return datetime(value.year, value.month, 1)


def next_month(month: datetime) -> datetime:
    return datetime(month.year + month.month // 12, month.month % 12 + 1, 1)


def partition_name(table: str, month: datetime) -> str:
    return f"{table}_p{month:%Y_%m}"


def month_of_partition(table: str, name: str) -> datetime | None:
    """The month a partition of ``table`` holds, from its name (None: not one of ours)."""
    prefix = f"{table}_p"
    if not name.startswith(prefix):
        return None
    try:
        return datetime.strptime(name[len(prefix) :], "%Y_%m")
    except ValueError:
        return None


def create_partition(table: str, month: datetime) -> str:
    return (
        f"CREATE TABLE IF NOT EXISTS {partition_name(table, month)} PARTITION OF {table} "
        f"FOR VALUES FROM ('{month:%Y-%m-%d}') TO ('{next_month(month):%Y-%m-%d}')"
    )


def partitioned_create(plain_create: str, table: str) -> str:
    """The CREATE of ``table`` (from :func:`edgetally.fleet.store.sql.schema`) as a table
    partitioned by month: ``start`` joins the primary key."""
    cols = ", ".join((*KEY, *EXTRA_KEY.get(table, ())))
    old_pk = f"PRIMARY KEY ({cols}))"
    if old_pk not in plain_create:
        raise ValueError(f"unexpected schema of {table}: no {old_pk}")
    return plain_create.replace(old_pk, f"PRIMARY KEY ({cols}, start)) PARTITION BY RANGE (start)")


def key_columns(table: str) -> tuple[str, ...]:
    """What a row of ``table`` is unique on (its primary key without ``start``)."""
    return (*KEY, *EXTRA_KEY.get(table, ()))


def key_absent(table: str, staged: str) -> str:
    """A condition on staged rows ``s``: no row of ``table`` holds the key, in any month
    (an index probe per partition), or, for a table of :data:`FOUND`, none was found by
    :func:`find_stored` (run first, in the same transaction)."""
    source = FOUND.get(table, table)
    on = " AND ".join(f"t.{c} = s.{c}" for c in key_columns(table))
    return f"NOT EXISTS (SELECT 1 FROM {source} AS t WHERE {on})"


def find_stored(table: str, staged: str) -> str:
    """Collect into ``FOUND[table]`` the key and digest of every stored row of ``table``
    that holds a key of ``staged`` (in any month)."""
    keys = ", ".join(key_columns(table))
    on = " AND ".join(f"t.{c} = s.{c}" for c in key_columns(table))
    picked = ", ".join(f"s.{c}" for c in key_columns(table))
    return (
        f"INSERT INTO {FOUND[table]} ({keys}, digest) SELECT DISTINCT {picked}, t.digest "
        f"FROM {staged} AS s JOIN {table} AS t ON {on}"
    )


def lock_devices(devices: Iterable[tuple[str, str]]) -> tuple[str, list[Any]] | None:
    """The statement (``?`` placeholders) and parameters locking, until the transaction
    ends, the ``devices`` rows of ``devices`` (site, device), in (site, device) order so no
    two writers deadlock; None: no device. A write updates those rows anyway (last seen,
    counters), so this adds no lock the write did not take, only takes them first."""
    pairs = sorted(set(devices))
    if not pairs:
        return None
    text = (
        "SELECT count(*) FROM (SELECT 1 FROM devices AS d JOIN unnest(?::varchar[], "
        "?::varchar[]) AS k(site, device) ON d.site = k.site AND d.device = k.device "
        "ORDER BY d.site, d.device FOR NO KEY UPDATE OF d) AS locked"
    )
    return text, [[p[0] for p in pairs], [p[1] for p in pairs]]


def indexes(table: str) -> tuple[str, ...]:
    """The indexes of a partitioned raw table (created on the parent, so on every month)."""
    out = [f"CREATE INDEX IF NOT EXISTS {table}_start_brin ON {table} USING brin (start)"]
    if table in ("aggregates", "audio", "shelf"):  # their queries filter by site or device
        out += [
            f"CREATE INDEX IF NOT EXISTS {table}_site_start ON {table} (site, start)",
            f"CREATE INDEX IF NOT EXISTS {table}_device_start ON {table} (device, start)",
        ]
    elif table == "power":
        out.append("CREATE INDEX IF NOT EXISTS power_device_start ON power (device, start)")
    return tuple(out)


def is_partitioned(conn: Any, table: str) -> bool | None:
    """True: partitioned; False: a plain table; None: no such table."""
    row = conn.execute(
        "SELECT c.relkind FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE c.relname = %s AND n.nspname = current_schema()",
        [table],
    ).fetchone()
    if row is None:
        return None
    kind = row[0].decode() if isinstance(row[0], bytes) else str(row[0])
    return kind == "p"


def partition_existing(conn: Any, table: str, plain_create: str) -> bool:
    """Turn the plain ``table`` (a store from before partitions) into one partitioned by
    month, rows kept; in the caller's transaction. False when it was partitioned already."""
    if is_partitioned(conn, table) is not False:
        return False
    old = f"{table}_unpartitioned"
    conn.execute(f"ALTER TABLE {table} RENAME TO {old}")
    # The old table's constraint and index names would clash with the new table's.
    for (index,) in conn.execute(
        "SELECT indexname FROM pg_indexes WHERE tablename = %s AND schemaname = current_schema()",
        [old],
    ).fetchall():
        conn.execute(f"ALTER INDEX {index} RENAME TO {index}_unpartitioned")
    conn.execute(partitioned_create(plain_create, table))
    for (month,) in conn.execute(
        f"SELECT DISTINCT date_trunc('month', start) FROM {old}"
    ).fetchall():
        conn.execute(create_partition(table, month_of(month)))
    conn.execute(f"INSERT INTO {table} SELECT * FROM {old}")
    conn.execute(f"DROP TABLE {old}")
    return True


def raw_cutoff(now: datetime, keep_months: int) -> datetime:
    """The first month kept when ``keep_months`` whole months before ``now``'s month are
    kept (with ``now``'s own): raw rows starting before it go."""
    if keep_months < 1:
        raise ValueError(f"keep at least one month of raw rows (got {keep_months})")
    cutoff = month_of(now)
    for _ in range(keep_months):
        cutoff = datetime(cutoff.year - (cutoff.month == 1), (cutoff.month - 2) % 12 + 1, 1)
    return cutoff
