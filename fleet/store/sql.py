"""The SQL both stores share: schema, the write statements, and the dialect differences.

Times are stored as ``TIMESTAMP`` (without time zone) holding UTC; buckets are UTC buckets.

A device is its site and its name: every message row is keyed on (site, device, epoch, seq)
(:data:`KEY`), the ``epoch`` being the device outbox's random id ('' from devices that
predate it), and the devices table on (site, device). Message rows keep a ``digest`` of
their content, so a redelivery (same key, same digest) is a duplicate while the same key
with other content is a conflict: the first stays, the other becomes a dead letter.

Traffic, occupancy and dwell are also kept pre-aggregated by hour and by day
(:data:`ROLLUPS`, :data:`ROLLUP_ZONE_COLUMNS`), maintained in the same transaction as every
write from the rows that were new (a redelivered aggregate adds nothing), so a year by day
reads one row per device-day instead of 96.
Statements use ``?`` placeholders; the PostgreSQL store turns them into ``%s``, so SQL text
here must not contain a literal ``?`` or ``%``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from edgetally.fleet.errors import FleetError
from edgetally.fleet.store.records import KEY, Interval

DialectName = Literal["duckdb", "postgres"]

# A message's identity in every message table.
UNKNOWN_DIGEST = 0  # rows migrated from schema version 1: their content was not hashed
SCHEMA_VERSION = 2  # 2: keys on (site, device, epoch, seq); 1: on (device, seq)

# Columns of each staged table, in the order the stores load them.
AGG_COLUMNS: tuple[str, ...] = (
    *KEY,
    "digest",
    "source",
    "line",
    "start",
    "seconds",
    "in_count",
    "out_count",
    "occupancy_mean",
    "occupancy_peak",
    "dwell_count",
    "dwell_median_s",
    "dwell_p90_s",
    "received_at",
)
EVENT_COLUMNS: tuple[str, ...] = (
    *KEY,
    "family",
    "event",
    "line",
    "start",
    "seconds",
    "count",
)
POWER_COLUMNS: tuple[str, ...] = (
    *KEY,
    "digest",
    "source",
    "start",
    "seconds",
    "wh",
    "mean_w",
    "measured",
    "received_at",
)
SEEN_COLUMNS: tuple[str, ...] = ("device", "site", "first_seen", "last_seen", "messages")
STATUS_COLUMNS: tuple[str, ...] = (
    "site",
    "device",
    "state",
    "status_at",
    "model",
    "backend",
    "fps",
    "uptime_s",
    "errors",
    "last_error",
    "status_rank",
)
# Rollup tables of traffic and the unit their buckets are truncated to.
ROLLUPS: tuple[tuple[str, Interval], ...] = (("traffic_hour", "hour"), ("traffic_day", "day"))
# What a rollup needs of each new aggregate (what the insert returns).
ROLLUP_SOURCE_COLUMNS: tuple[str, ...] = (
    "start",
    "site",
    "device",
    "line",
    "seconds",
    "in_count",
    "out_count",
    "occupancy_mean",
    "occupancy_peak",
    "dwell_count",
    "dwell_median_s",
    "dwell_p90_s",
)
# What a rollup row sums up besides in/out, all mergeable exactly (NULL where no aggregate
# of the group had it): seconds with an occupancy and occupancy x seconds (the time-weighted
# mean is their ratio), the peak, visits, and median and p90 times visits (the
# visit-weighted means of the buckets' own median and p90 are their ratios to visits).
ROLLUP_ZONE_COLUMNS: tuple[tuple[str, str, str], ...] = (
    ("occupancy_s", "BIGINT", "sum(CASE WHEN occupancy_mean IS NOT NULL THEN seconds END)"),
    ("occupancy_sum", "{double}", "sum(occupancy_mean * seconds)"),
    (
        "occupancy_peak",
        "INTEGER",
        "max(CASE WHEN occupancy_mean IS NOT NULL THEN occupancy_peak END)",
    ),
    ("dwell_count", "BIGINT", "sum(dwell_count)"),
    ("dwell_median_sum", "{double}", "sum(dwell_median_s * dwell_count)"),
    ("dwell_p90_sum", "{double}", "sum(dwell_p90_s * dwell_count)"),
)
DEAD_COLUMNS: tuple[str, ...] = (
    "received_at",
    "topic",
    "reason",
    "payload_size",
    "payload_head",
    "payload_sha256",
)
_KEY_SQL = """site VARCHAR NOT NULL, device VARCHAR NOT NULL, epoch VARCHAR NOT NULL,
            seq BIGINT NOT NULL"""
_PK = "site, device, epoch, seq"


def schema(double: str) -> tuple[str, ...]:
    """CREATE statements (idempotent); ``double`` is the dialect's 8-byte float type."""
    return (
        f"""CREATE TABLE IF NOT EXISTS aggregates (
            {_KEY_SQL}, digest BIGINT NOT NULL,
            source VARCHAR NOT NULL, line VARCHAR NOT NULL,
            start TIMESTAMP NOT NULL, seconds INTEGER NOT NULL,
            in_count INTEGER NOT NULL, out_count INTEGER NOT NULL,
            occupancy_mean {double}, occupancy_peak INTEGER,
            dwell_count INTEGER, dwell_median_s {double}, dwell_p90_s {double},
            received_at TIMESTAMP NOT NULL,
            PRIMARY KEY ({_PK}))""",
        f"""CREATE TABLE IF NOT EXISTS events (
            {_KEY_SQL},
            family VARCHAR NOT NULL, event VARCHAR NOT NULL, line VARCHAR NOT NULL,
            start TIMESTAMP NOT NULL, seconds INTEGER NOT NULL, count INTEGER NOT NULL,
            PRIMARY KEY ({_PK}, family, event))""",
        f"""CREATE TABLE IF NOT EXISTS power (
            {_KEY_SQL}, digest BIGINT NOT NULL, source VARCHAR NOT NULL,
            start TIMESTAMP NOT NULL, seconds INTEGER NOT NULL,
            wh {double} NOT NULL, mean_w {double} NOT NULL, measured BOOLEAN NOT NULL,
            received_at TIMESTAMP NOT NULL,
            PRIMARY KEY ({_PK}))""",
        f"""CREATE TABLE IF NOT EXISTS devices (
            site VARCHAR NOT NULL, device VARCHAR NOT NULL,
            first_seen TIMESTAMP NOT NULL, last_seen TIMESTAMP NOT NULL,
            messages BIGINT NOT NULL,
            state VARCHAR NOT NULL, status_at TIMESTAMP,
            model VARCHAR, backend VARCHAR, fps {double}, uptime_s {double},
            errors BIGINT, last_error VARCHAR, conflicts BIGINT NOT NULL DEFAULT 0,
            status_rank BIGINT,
            PRIMARY KEY (site, device))""",
        *(
            f"""CREATE TABLE IF NOT EXISTS {table} (
            bucket TIMESTAMP NOT NULL, site VARCHAR NOT NULL, device VARCHAR NOT NULL,
            line VARCHAR NOT NULL, in_count BIGINT NOT NULL, out_count BIGINT NOT NULL,
            {", ".join(f"{c} {kind.format(double=double)}" for c, kind, _e in ROLLUP_ZONE_COLUMNS)},
            PRIMARY KEY (site, device, line, bucket))"""
            for table, _unit in ROLLUPS
        ),
        """CREATE TABLE IF NOT EXISTS dead_letters (
            received_at TIMESTAMP NOT NULL, topic VARCHAR NOT NULL, reason VARCHAR NOT NULL,
            payload_size INTEGER NOT NULL, payload_head VARCHAR NOT NULL,
            payload_sha256 VARCHAR)""",
        *sensor_schema(double),
    )


def sensor_schema(double: str) -> tuple[str, ...]:
    """Tables of the audio and shelf messages (:mod:`edgetally.fleet.store.sensors` writes them)."""
    return (
        f"""CREATE TABLE IF NOT EXISTS audio (
            {_KEY_SQL}, digest BIGINT NOT NULL, source VARCHAR NOT NULL,
            start TIMESTAMP NOT NULL, seconds INTEGER NOT NULL, duration_s {double} NOT NULL,
            leq_dbfs {double} NOT NULL, laeq_dbfs {double} NOT NULL,
            leq_dbspl {double}, laeq_dbspl {double}, speech_ratio {double},
            received_at TIMESTAMP NOT NULL,
            PRIMARY KEY ({_PK}))""",
        f"""CREATE TABLE IF NOT EXISTS shelf (
            {_KEY_SQL}, digest BIGINT NOT NULL,
            region VARCHAR NOT NULL, facing VARCHAR NOT NULL, source VARCHAR NOT NULL,
            start TIMESTAMP NOT NULL, seconds INTEGER NOT NULL,
            facing_empty INTEGER NOT NULL, restocked INTEGER NOT NULL,
            product_taken INTEGER NOT NULL, empty_at_end BOOLEAN NOT NULL,
            received_at TIMESTAMP NOT NULL,
            PRIMARY KEY ({_PK}, region, facing))""",
    )


def _insert_new(
    table: str, columns: tuple[str, ...], staged: str, partitioned: bool = False
) -> str:
    """Insert the staged rows whose key is not stored. ``partitioned`` (PostgreSQL, by
    month): the primary key holds ``start`` too, so the key is also looked for in every
    month (:func:`edgetally.fleet.store.partitions.key_absent`)."""
    cols = ", ".join(columns)
    where = ""
    if partitioned:
        from edgetally.fleet.store.partitions import key_absent

        where = f" WHERE {key_absent(table, 's')}"
    return (
        f"INSERT INTO {table} ({cols}) SELECT {cols} FROM {staged} AS s{where} "
        "ON CONFLICT DO NOTHING"
    )


def insert_aggregates(staged: str, partitioned: bool = False) -> str:
    return _insert_new("aggregates", AGG_COLUMNS, staged, partitioned)


def insert_aggregates_returning(staged: str, partitioned: bool = False) -> str:
    """Insert the new rows and return what the rollups need of those (not of duplicates)."""
    return f"{insert_aggregates(staged, partitioned)} RETURNING {', '.join(ROLLUP_SOURCE_COLUMNS)}"


_ROLLUP_COLUMNS = ("in_count", "out_count", *(c for c, _k, _e in ROLLUP_ZONE_COLUMNS))


def _rollup_select(unit: Interval, source: str) -> str:
    """One rollup row per group of ``source`` (aggregates), its bucket truncated to ``unit``."""
    sums = ", ".join(["sum(in_count)", "sum(out_count)", *(e for _c, _k, e in ROLLUP_ZONE_COLUMNS)])
    return (
        f"INSERT INTO {{table}} (bucket, site, device, line, {', '.join(_ROLLUP_COLUMNS)}) "
        f"SELECT date_trunc('{unit}', start) AS b, site, device, line, {sums} FROM {source} "
        "GROUP BY 1, 2, 3, 4"
    )


def upsert_rollup(table: str, unit: Interval, source: str) -> str:
    """Add ``source`` (new aggregates) to the rollup ``table``: sums add (NULL + x is x),
    the peak is the greater."""
    merge = [f"{c} = {table}.{c} + excluded.{c}" for c in ("in_count", "out_count")]
    for c, _kind, expr in ROLLUP_ZONE_COLUMNS:
        if expr.startswith("max("):
            merge.append(f"{c} = greatest({table}.{c}, excluded.{c})")
        else:
            merge.append(f"{c} = coalesce({table}.{c} + excluded.{c}, {table}.{c}, excluded.{c})")
    return (
        _rollup_select(unit, source).format(table=table)
        + f" ON CONFLICT (site, device, line, bucket) DO UPDATE SET {', '.join(merge)}"
    )


def insert_aggregates_with_rollups(staged: str, partitioned: bool = False) -> str:
    """One statement (PostgreSQL): insert new rows, add them to every rollup, count them
    per device (site, device, n)."""
    parts = [f"new_rows AS ({insert_aggregates_returning(staged, partitioned)})"]
    parts += [f"r_{table} AS ({upsert_rollup(table, unit, 'new_rows')})" for table, unit in ROLLUPS]
    return (
        f"WITH {', '.join(parts)} SELECT site, device, count(*) FROM new_rows GROUP BY site, device"
    )


def refill_rollups() -> tuple[str, ...]:
    """Rebuild every rollup from ``aggregates`` (after a bulk load, or on an older file)."""
    out: list[str] = []
    for table, unit in ROLLUPS:
        out.append(f"DELETE FROM {table}")
        out.append(
            _rollup_select(unit, "aggregates").format(table=table)
            + " ORDER BY b, site, device, line"
        )
    return tuple(out)


def add_rollup_columns(table: str, double: str) -> tuple[str, ...]:
    """ALTER statements giving a rollup from before the zone columns those columns."""
    return tuple(
        f"ALTER TABLE {table} ADD COLUMN IF NOT EXISTS {c} {kind.format(double=double)}"
        for c, kind, _e in ROLLUP_ZONE_COLUMNS
    )


def rollup_columns_present() -> str:
    """How many of the rollups' zone columns (:data:`ROLLUP_ZONE_COLUMNS`) exist."""
    names = ", ".join(f"'{c}'" for c, _k, _e in ROLLUP_ZONE_COLUMNS)
    tables = ", ".join(f"'{t}'" for t, _u in ROLLUPS)
    return (
        "SELECT count(*) FROM information_schema.columns "
        f"WHERE table_name IN ({tables}) AND column_name IN ({names})"
    )


def rollups_missing() -> str:
    """1 when there are aggregates but the rollups are empty (a file from before them)."""
    first = ROLLUPS[0][0]
    return (
        "SELECT CASE WHEN EXISTS (SELECT 1 FROM aggregates) "
        f"AND NOT EXISTS (SELECT 1 FROM {first}) THEN 1 ELSE 0 END"
    )


def insert_events(staged: str, partitioned: bool = False) -> str:
    return _insert_new("events", EVENT_COLUMNS, staged, partitioned)


def insert_power(staged: str, partitioned: bool = False) -> str:
    """Insert the new power rows and return the (site, device) of each (for the counters)."""
    return f"{_insert_new('power', POWER_COLUMNS, staged, partitioned)} RETURNING site, device"


def upsert_seen(staged: str) -> str:
    """Create the devices not seen before; first and last seen only ever widen, so writers
    in any order (several ingest workers, a redelivery) leave the same row. The message
    counter is not touched here: :func:`add_messages` counts what was stored. In (site,
    device) order, the order every writer locks devices rows in, so none deadlock."""
    cols = ", ".join(SEEN_COLUMNS)
    return (
        f"INSERT INTO devices ({cols}, state) SELECT {cols}, 'unknown' FROM {staged} "
        "ORDER BY site, device "
        "ON CONFLICT (site, device) DO UPDATE SET "
        "first_seen = least(devices.first_seen, excluded.first_seen), "
        "last_seen = greatest(devices.last_seen, excluded.last_seen)"
    )


def add_messages(staged: str) -> str:
    """Add ``staged`` (site, device, n): message rows newly stored (aggregates, power,
    audio, shelf; not statuses), so a redelivered message, or one two workers both
    received, counts once."""
    return (
        f"UPDATE devices SET messages = devices.messages + s.n FROM {staged} AS s "
        "WHERE devices.site = s.site AND devices.device = s.device"
    )


def update_status(staged: str) -> str:
    """A status replaces the stored one only when its ``status_rank`` is higher.

    The rank is the time the fleet received the status (microseconds), not the device's
    ``at``: a last will carries the time it was registered, older than the statuses sent
    after it, and must still win. Statuses are taken by one subscriber that is not shared
    (the api process), which receives each device's statuses and its will in the broker's
    order; the rank keeps a late or retried write, or a second api process, from putting
    an older status back. Returns the (site, device) of each status applied."""
    sets = ", ".join(f"{c} = s.{c}" for c in STATUS_COLUMNS[2:])
    return (
        f"UPDATE devices SET {sets} FROM {staged} AS s "
        "WHERE devices.site = s.site AND devices.device = s.device "
        "AND (devices.status_rank IS NULL OR s.status_rank > devices.status_rank) "
        "RETURNING devices.site, devices.device"
    )


def add_status_rank() -> str:
    """The column a store from before ``status_rank`` lacks (added on open)."""
    return "ALTER TABLE devices ADD COLUMN IF NOT EXISTS status_rank BIGINT"


def conflicts(table: str, staged: str) -> str:
    """The staged rows whose key is stored with another digest: (key..., stored digest,
    received digest). ``table`` is the message table, the query run after the insert (new
    rows match themselves, with their own digest), or on PostgreSQL the stored keys and
    digests collected before it (:func:`edgetally.fleet.store.partitions.find_stored`)."""
    on = " AND ".join(f"t.{c} = s.{c}" for c in KEY)
    keys = ", ".join(f"s.{c}" for c in KEY)
    return (
        f"SELECT DISTINCT {keys}, t.digest, s.digest FROM {staged} AS s JOIN {table} AS t "
        f"ON {on} WHERE t.digest <> s.digest AND t.digest <> {UNKNOWN_DIGEST}"
    )


def add_conflicts(staged: str) -> str:
    """Add the conflicts of ``staged`` (site, device, n) to the devices' counters: distinct
    conflicts, those whose dead letter was new
    (:meth:`edgetally.fleet.store.columns.StagedBatch.new_conflicts`)."""
    return (
        f"UPDATE devices SET conflicts = devices.conflicts + s.n FROM {staged} AS s "
        "WHERE devices.site = s.site AND devices.device = s.device"
    )


# Tables whose key changed in schema version 2, and their columns in version 1.
_V1_COLUMNS: dict[str, tuple[str, ...]] = {
    "aggregates": tuple(c for c in AGG_COLUMNS if c not in ("epoch", "digest")),
    "events": tuple(c for c in EVENT_COLUMNS if c != "epoch"),
    "power": tuple(c for c in POWER_COLUMNS if c not in ("epoch", "digest")),
    "audio": (
        "device",
        "seq",
        "site",
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
    ),
    "shelf": (
        "device",
        "seq",
        "region",
        "facing",
        "site",
        "source",
        "start",
        "seconds",
        "facing_empty",
        "restocked",
        "product_taken",
        "empty_at_end",
        "received_at",
    ),
    "devices": (
        "device",
        "site",
        "first_seen",
        "last_seen",
        "messages",
        "state",
        "status_at",
        "model",
        "backend",
        "fps",
        "uptime_s",
        "errors",
        "last_error",
    ),
}


# What version 2 added to each of them, and the value old rows get.
_V2_ADDED: dict[str, dict[str, str]] = {
    "aggregates": {"epoch": "''", "digest": str(UNKNOWN_DIGEST)},
    "events": {"epoch": "''"},
    "power": {"epoch": "''", "digest": str(UNKNOWN_DIGEST)},
    "audio": {"epoch": "''", "digest": str(UNKNOWN_DIGEST)},
    "shelf": {"epoch": "''", "digest": str(UNKNOWN_DIGEST)},
}


def needs_identity_migration() -> str:
    """1 when ``aggregates`` exists without the ``epoch`` column (a version 1 store)."""
    return (
        "SELECT CASE WHEN EXISTS (SELECT 1 FROM information_schema.columns WHERE "
        "table_name = 'aggregates') AND NOT EXISTS (SELECT 1 FROM information_schema.columns "
        "WHERE table_name = 'aggregates' AND column_name = 'epoch') THEN 1 ELSE 0 END"
    )


def migrate_identity(double: str, present: set[str]) -> tuple[str, ...]:
    """Statements that rebuild a version 1 store's keyed tables (those in ``present``) with
    the version 2 keys: each old row gets epoch '' (devices of then had none) and digest 0
    (unknown: a later conflicting message against it is not detected, only kept out)."""
    out: list[str] = []
    creates = {text.split("(", 1)[0].split()[-1]: text for text in schema(double)}
    for table, old in _V1_COLUMNS.items():
        if table not in present:
            continue
        new = f"{table}_v2"
        out.append(creates[table].replace(f"IF NOT EXISTS {table} (", f"{new} (", 1))
        added = _V2_ADDED.get(table, {})
        cols = ", ".join([*old, *added])
        values = ", ".join([*old, *added.values()])
        out.append(f"INSERT INTO {new} ({cols}) SELECT {values} FROM {table}")
        out.append(f"DROP TABLE {table}")
        out.append(f"ALTER TABLE {new} RENAME TO {table}")
    out.append("ALTER TABLE dead_letters ADD COLUMN IF NOT EXISTS payload_sha256 VARCHAR")
    return tuple(out)


def insert_dead(staged: str) -> str:
    """Insert the dead letters whose payload hash (on that topic) is not stored yet: a
    message redelivered to another worker, or sent twice, is one dead letter. Returns the
    (topic, payload_sha256) of each one stored (a conflict counts against its device only
    when its dead letter is new)."""
    cols = ", ".join(DEAD_COLUMNS)
    return (
        f"INSERT INTO dead_letters ({cols}) SELECT {cols} FROM (SELECT {cols}, "
        "row_number() OVER (PARTITION BY topic, payload_sha256 ORDER BY received_at) AS k "
        f"FROM {staged}) AS s WHERE (k = 1 OR payload_sha256 IS NULL) AND NOT EXISTS "
        "(SELECT 1 FROM dead_letters AS d WHERE d.payload_sha256 = s.payload_sha256 "
        "AND d.topic = s.topic) RETURNING topic, payload_sha256"
    )


@dataclass(frozen=True, slots=True)
class Dialect:
    """What differs between DuckDB and PostgreSQL in the queries."""

    name: DialectName

    def bucket(self, column: str, interval: Interval) -> str:
        """An expression truncating ``column`` (a UTC TIMESTAMP) to the interval."""
        if interval == "15min":
            if self.name == "duckdb":
                return f"time_bucket(INTERVAL '15 minutes', {column}, TIMESTAMP '2000-01-01')"
            return f"date_bin(INTERVAL '15 minutes', {column}, TIMESTAMP '2000-01-01')"
        unit = {"minute": "minute", "hour": "hour", "day": "day"}.get(interval)
        if unit is None:
            raise FleetError(f"unknown interval {interval!r}: use minute, 15min, hour or day")
        return f"date_trunc('{unit}', {column})"

    @property
    def double(self) -> str:
        return "DOUBLE" if self.name == "duckdb" else "DOUBLE PRECISION"
