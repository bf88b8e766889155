"""The energy report over a real DuckDB fleet store: the query, /api/v1/energy, the CLI."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from edgetally.fleet.energy.assumptions import load_config
from edgetally.fleet.energy.report import power_records, report_from_store
from edgetally.fleet.http.app import create_app
from edgetally.fleet.http.context import FleetContext
from edgetally.fleet.http.energy import energy_config_hook
from edgetally.fleet.store.base import open_store
from edgetally.fleet.store.records import Filters, IngestBatch
from edgetally.models.topics import DeviceId, SiteId
from edgetally.models.wire import PowerReading, Seq
from fastapi.testclient import TestClient

from tests.json_support import objs

T0 = datetime(2025, 3, 3, 8, 0, tzinfo=UTC)
CONFIG = """
defaults:
  cameras: [{bitrate_mbps: 3.0, fps: 15}]
  hours: 12
  store_region: FR
  cloud_region: US-Virginia
devices:
  box2:
    cameras: [{bitrate_mbps: 3.0}, {bitrate_mbps: 3.0}]
    hours: 12
    store_region: DE
    cloud_region: US-VA
"""


def power(device: str, seq: int, minutes: int, watts: float, measured: bool) -> PowerReading:
    return PowerReading(
        site=SiteId("paris" if device == "box1" else "berlin"),
        device=DeviceId(device),
        seq=Seq(seq),
        source="rapl" if measured else "estimate",
        start=T0 + timedelta(minutes=minutes),
        seconds=60,
        wh=watts / 60,
        mean_w=watts,
        measured=measured,
    )


@pytest.fixture
def db(tmp_path: Path) -> str:
    path = str(tmp_path / "fleet.duckdb")
    store = open_store(path)
    # box1: 10 W measured for 12 h (the worked example). box2: half measured, half estimated.
    rows = [power("box1", m + 1, m, 10.0, True) for m in range(720)]
    rows += [power("box2", m + 1, m, 12.0, m < 360) for m in range(720)]
    store.write(IngestBatch(power=tuple(rows), received_at=T0))
    store.close()
    return path


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "energy.yaml"
    path.write_text(CONFIG)
    return path


def test_report_from_the_store(db: str, config: Path) -> None:
    store = open_store(db, read_only=True)
    try:
        assert len(power_records(store, Filters(device="box1"))) == 720
        r = report_from_store(store, Filters(), load_config(config))
    finally:
        store.close()
    assert r["label"] == "partial" and r["measured"] is False
    devices = {d["device"]: d for d in objs(r["devices"])}
    box1, box2 = devices["box1"], devices["box2"]
    assert box1["edge"]["wh"] == pytest.approx(120) and box1["edge"]["measured"] is True
    assert box1["ratio"]["energy_attributional"] == pytest.approx(4.5, rel=0.01)
    assert box1["cloud"]["cloud_gco2e_attributional"] == pytest.approx(117, rel=0.02)
    assert box2["edge"]["label"] == "partial" and box2["edge"]["measured"] is False
    assert box2["edge"]["measured_wh"] == pytest.approx(72)
    assert box2["edge"]["estimated_wh"] == pytest.approx(72)
    assert box2["cloud"]["cloud_wh_attributional"] == pytest.approx(2 * 540.9, rel=0.01)
    sites = {s["site"] for s in objs(r["sites"])}
    assert sites == {"paris", "berlin"}
    day = next(d for d in objs(r["days"]) if d["device"] == "box2")
    assert day["store_region"] == "DE" and day["cameras"] == 2
    assert any(a["name"] == "grid_store" and a["value"] == 341 for a in day["assumptions"])


def test_api_energy_endpoint(db: str, config: Path) -> None:
    store = open_store(db, read_only=True)
    try:
        app = create_app(FleetContext(store), hooks=[energy_config_hook(load_config(config))])
        client = TestClient(app)
        resp = client.get(
            "/api/v1/energy", params={"site": "paris", "from": "2025-03-03", "to": "2025-03-04"}
        )
        assert resp.status_code == 200, resp.text
        body = resp.json()
        assert body["label"] == "measured" and body["measured"] is True
        assert [d["device"] for d in body["devices"]] == ["box1"]
        empty = client.get("/api/v1/energy", params={"from": "2030-01-01"}).json()
        assert empty["days"] == [] and empty["measured"] is False
        assert client.get("/api/v1/energy", params={"device": "bad id!"}).status_code == 422
    finally:
        store.close()


def edgetally(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "edgetally", *args], capture_output=True, text=True, check=False
    )


def test_cli_energy_report(db: str, config: Path, tmp_path: Path) -> None:
    done = edgetally("energy", "report", "--db", db, "--config", str(config), "--json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["label"] == "partial"
    text = edgetally("energy", "report", "--db", db, "--config", str(config), "--device", "box2")
    assert "[PARTIAL]" in text.stdout and "box2" in text.stdout
    missing = edgetally("energy", "report", "--db", str(tmp_path / "nope.duckdb"))
    assert missing.returncode == 1 and "no fleet database" in missing.stderr
    bad_date = edgetally("energy", "report", "--db", db, "--from", "yesterday")
    assert (
        bad_date.returncode == 1
        and "--from" in bad_date.stderr
        and "Traceback" not in bad_date.stderr
    )
