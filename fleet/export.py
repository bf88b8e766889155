"""A query :class:`Table` as JSON rows, CSV or Parquet: the one serialisation the API and the
command line share, so both give the same answers.

Times come out as ISO 8601 UTC with a ``Z``; floats are rounded to 4 decimals.
"""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, Literal

import pyarrow as pa
import pyarrow.parquet as pq
from edgetally.fleet.records import Table

ExportFormat = Literal["json", "csv", "parquet"]
MEDIA_TYPES: dict[str, str] = {
    "json": "application/json",
    "csv": "text/csv; charset=utf-8",
    "parquet": "application/vnd.apache.parquet",
}


def iso(value: datetime) -> str:
    """ISO 8601 in UTC with ``Z`` (naive datetimes are UTC as stored)."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    text = value.astimezone(UTC).isoformat()
    return text.replace("+00:00", "Z")


def json_value(value: Any) -> Any:
    if isinstance(value, datetime):
        return iso(value)
    if isinstance(value, Decimal):
        value = float(value)
    if isinstance(value, float):
        return round(value, 4)
    return value


def to_records(table: Table) -> list[dict[str, Any]]:
    """Rows as dicts keyed by column name, JSON-ready."""
    cols = table.columns
    return [{c: json_value(v) for c, v in zip(cols, row, strict=True)} for row in table.rows]


def to_csv(table: Table) -> bytes:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(table.columns)
    for row in table.rows:
        writer.writerow(["" if v is None else json_value(v) for v in row])
    return buf.getvalue().encode()


def to_parquet(table: Table) -> bytes:
    """Parquet with typed columns; times as UTC timestamps."""
    columns: dict[str, list[Any]] = {c: [] for c in table.columns}
    names = list(table.columns)
    for row in table.rows:
        for name, value in zip(names, row, strict=True):
            if isinstance(value, datetime) and value.tzinfo is None:
                value = value.replace(tzinfo=UTC)
            elif isinstance(value, Decimal):
                value = float(value)
            columns[name].append(value)
    arrow = pa.table(columns) if table.rows else pa.table({c: pa.array([]) for c in names})
    buf = io.BytesIO()
    pq.write_table(arrow, buf)
    return buf.getvalue()
