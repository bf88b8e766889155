"""Answers of the audio and shelf endpoints: the shared table response, with the ``events``
column (name -> count) written as a JSON object in CSV and Parquet."""

from __future__ import annotations

import json

from edgetally.fleet.http.context import table_response
from edgetally.fleet.http.export import ExportFormat
from edgetally.fleet.store.records import Table
from fastapi import Response


def sensor_response(table: Table, fmt: ExportFormat, stem: str) -> Response:
    if fmt != "json":
        table = Table(
            table.columns,
            [
                tuple(json.dumps(v, sort_keys=True) if isinstance(v, dict) else v for v in row)
                for row in table.rows
            ],
        )
    return table_response(table, fmt, stem)
