"""A query :class:`Table` as JSON rows, CSV or Parquet: the one serialisation the API and the
command line share, so both give the same answers.

Times come out as ISO 8601 UTC with a ``Z``; floats are rounded to 4 decimals. In CSV, text
that a spreadsheet would run as a formula is escaped (:func:`csv_cell`).
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, Literal

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from edgetally.fleet.store.records import Table

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


def to_json(table: Table) -> bytes:
    """``{"rows": [...]}`` as UTF-8 JSON: the rows of :func:`to_records`, built from the
    Arrow columns when the table has them (no Python value per cell)."""
    rows = _arrow_rows_json(table.arrow) if table.arrow is not None else None
    if rows is None:
        return json.dumps(
            {"rows": to_records(table)}, ensure_ascii=False, allow_nan=False, separators=(",", ":")
        ).encode()
    return b"".join((b'{"rows":[', rows, b"]}"))


def _json_fragments(col: pa.ChunkedArray) -> pa.ChunkedArray | pa.Array | None:
    """Each value of ``col`` as JSON text (``null`` for nulls), as :func:`json_value` writes
    it; None for a column that needs the Python path."""
    kind = col.type
    if pa.types.is_timestamp(kind) and kind.tz is None:
        text = _each_distinct(col, lambda v: f'"{iso(v)}"')
    elif pa.types.is_integer(kind) or pa.types.is_boolean(kind):
        text = pc.cast(col, pa.string())
    elif pa.types.is_floating(kind):
        rounded = pc.round(col, 4, round_mode="half_to_even")  # as round(value, 4)
        if pc.all(pc.is_finite(rounded)).as_py() is False:
            return None  # NaN or infinity: the Python path refuses them too
        text = pc.cast(rounded, pa.string())
        whole = pc.match_substring_regex(text, r"^-?[0-9]+$")
        text = pc.if_else(whole, pc.binary_join_element_wise(text, ".0", ""), text)  # 2 -> 2.0
    elif pa.types.is_string(kind) or pa.types.is_large_string(kind):
        text = _each_distinct(col, lambda v: json.dumps(v, ensure_ascii=False))
    elif pa.types.is_null(kind):
        text = pa.nulls(len(col), pa.string())
    else:
        return None
    return pc.fill_null(text, "null")


def _each_distinct(col: pa.ChunkedArray, render: Callable[[Any], str]) -> pa.Array:
    """``render`` applied once per distinct value (a year by day has 365 buckets, a fleet a
    few hundred devices), spread back over the rows; nulls stay null."""
    coded = pc.dictionary_encode(col).combine_chunks()
    texts = pa.array([render(v) for v in coded.dictionary.to_pylist()], pa.string())
    return pc.take(texts, coded.indices)


def _arrow_rows_json(arrow: pa.Table) -> bytes | memoryview | None:
    """The JSON objects of the rows, comma-separated (UTF-8), or None when a column needs
    Python."""
    if arrow.num_rows == 0:
        return b""
    parts: list[Any] = []
    for i, (name, col) in enumerate(zip(arrow.column_names, arrow.columns, strict=True)):
        fragment = _json_fragments(col)
        if fragment is None:
            return None
        parts += [("{" if i == 0 else ",") + json.dumps(name, ensure_ascii=False) + ":", fragment]
    parts.append("}")
    rows = pc.binary_join_element_wise(*parts, "")
    if isinstance(rows, pa.ChunkedArray):
        rows = rows.combine_chunks()
    lists = pa.LargeListArray.from_arrays(pa.array([0, len(rows)], pa.int64()), rows)
    joined = pc.binary_join(lists, ",")[0]
    return memoryview(joined.as_buffer())  # the UTF-8 bytes as they are, no str between


# A spreadsheet reads a cell that starts with one of these as a formula (or may drop a
# leading tab or line break and read what follows as one).
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r", "\n")


def csv_cell(value: Any) -> Any:
    """A value as a CSV cell: numbers as they are (``-3`` stays a number), text that a
    spreadsheet would run as a formula (a device's ``last_error`` of ``=HYPERLINK(...)``)
    behind a single quote, which spreadsheets show as text. Line breaks in text become
    ``\n``, so that the cell is quoted and stays one cell."""
    if value is None:
        return ""
    value = json_value(value)
    if not isinstance(value, str):
        return value
    if "\r" in value:  # the writer quotes a cell with \n in it, not one with a lone \r
        value = value.replace("\r\n", "\n").replace("\r", "\n")
    return "'" + value if value.startswith(FORMULA_STARTS) else value


def to_csv(table: Table) -> bytes:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow([csv_cell(c) for c in table.columns])
    for row in table.rows:
        writer.writerow([csv_cell(v) for v in row])
    return buf.getvalue().encode()


def to_parquet(table: Table) -> bytes:
    """Parquet with typed columns; times as UTC timestamps."""
    if table.arrow is not None:
        return _parquet_bytes(_utc_times(table.arrow))
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
    return _parquet_bytes(arrow)


def _utc_times(arrow: pa.Table) -> pa.Table:
    """Naive (stored UTC) timestamp columns marked UTC, as the Python path writes them."""
    fields = [
        f.with_type(pa.timestamp(f.type.unit, tz="UTC"))
        if pa.types.is_timestamp(f.type) and f.type.tz is None
        else f
        for f in arrow.schema
    ]
    return arrow.cast(pa.schema(fields))


def _parquet_bytes(arrow: pa.Table) -> bytes:
    buf = io.BytesIO()
    pq.write_table(arrow, buf)
    return buf.getvalue()
