"""The energy report over a real fleet store (DuckDB, and PostgreSQL where it runs): the
queries, /api/v1/energy and /api/v1/power, the CLI, and one config giving one answer."""

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
from edgetally.fleet.store.connect import open_store
from edgetally.fleet.store.records import Filters, IngestBatch
from edgetally.models.topics import DeviceId, SiteId
from edgetally.models.wire import Aggregate, PowerReading, Seq
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


def door(seq: int, hour: int) -> Aggregate:
    """box1's door camera counted this hour (a line and a zone, as a device sends them)."""
    return Aggregate.model_validate(
        {
            "site": "paris",
            "device": "box1",
            "source": "door",
            "line": "entrance",
            "seq": seq,
            "start": T0 + timedelta(hours=hour),
            "seconds": 3600,
            "in_count": 3,
            "out_count": 2,
        }
    )


def fill(path: str) -> None:
    store = open_store(path)
    try:
        # box1: 10 W measured for 12 h (the worked example), its camera counting all along.
        # box2: half measured, half estimated, and no aggregates (its power readings' time).
        rows = [power("box1", m + 1, m, 10.0, True) for m in range(720)]
        rows += [power("box2", m + 1, m, 12.0, m < 360) for m in range(720)]
        aggs = [door(1000 + h, h) for h in range(12)]
        store.write(IngestBatch(aggregates=tuple(aggs), power=tuple(rows), received_at=T0))
    finally:
        store.close()


@pytest.fixture
def db(tmp_path: Path) -> str:
    path = str(tmp_path / "fleet.duckdb")
    fill(path)
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
    (line,) = [x for x in text.stdout.splitlines() if x.split()[:1] == ["box2"]]
    assert line.split()[1:4] == ["berlin", "partial", "1"], line
    assert "24.0 h" in line.split("partial")[1]  # its power readings: 12 h, for 2 cameras
    assert "compared:" in text.stdout and "docs/energy.md" in text.stdout
    missing = edgetally("energy", "report", "--db", str(tmp_path / "nope.duckdb"))
    assert missing.returncode == 1 and "no fleet database" in missing.stderr
    bad_date = edgetally("energy", "report", "--db", db, "--from", "yesterday")
    assert (
        bad_date.returncode == 1
        and "--from" in bad_date.stderr
        and "Traceback" not in bad_date.stderr
    )


# ------------------------------------------------------------------ camera time and watts


M0 = datetime(2025, 3, 4, 9, 0, tzinfo=UTC)


def _reading(
    device: str, seq: int, minute: int, wh: float, mean_w: float, measured: bool, source: str = ""
) -> PowerReading:
    return PowerReading(
        site=SiteId("s1"),
        device=DeviceId(device),
        seq=Seq(seq),
        source=source or ("rapl" if measured else "estimate"),
        start=M0 + timedelta(minutes=minute),
        seconds=60,
        wh=wh,
        mean_w=mean_w,
        measured=measured,
    )


def _counted(seq: int, minute: int, source: str, line: str) -> Aggregate:
    return Aggregate.model_validate(
        {
            "site": "s1",
            "device": "d1",
            "source": source,
            "line": line,
            "seq": seq,
            "start": M0 + timedelta(minutes=minute),
            "seconds": 60,
            "in_count": 1,
            "out_count": 0,
        }
    )


def fill_minutes(path: str) -> None:
    """d1: 30 one-minute power buckets, measured 10 W for the first 15 (an estimate beside
    the measurement of minute 3), estimated 12 W after, the last one covering 30 s; its
    camera ``door`` counted minutes 0-9 and 20-29 (a line and a zone each minute), its
    camera ``aisle`` minutes 5-14. d2: estimated 5 W for the same 30 minutes, no camera."""
    power = [_reading("d1", m + 1, m, 10 / 60, 10.0, True) for m in range(15)]
    power += [_reading("d1", m + 1, m, 12 / 60, 12.0, False) for m in range(15, 29)]
    power += [_reading("d1", 30, 29, 0.1, 12.0, False)]  # covered 0.1 x 3600 / 12 = 30 s
    power += [_reading("d1", 99, 3, 1.0, 60.0, False, "estimate2")]  # the measurement wins
    power += [_reading("d2", m + 1, m, 5 / 60, 5.0, False) for m in range(30)]
    aggs = []
    seq = 1000
    for minute in [*range(10), *range(20, 30)]:
        for line in ("entrance", "floor"):
            seq += 1
            aggs.append(_counted(seq, minute, "door", line))
    for minute in range(5, 15):
        seq += 1
        aggs.append(_counted(seq, minute, "aisle", "shelf"))
    store = open_store(path)
    try:
        store.write(IngestBatch(aggregates=tuple(aggs), power=tuple(power), received_at=M0))
    finally:
        store.close()


def test_camera_time_and_watts_from_the_store(store_db: str) -> None:
    from edgetally.fleet.energy.assumptions import EnergyConfig
    from edgetally.fleet.energy.report import camera_spans
    from edgetally.fleet.energy.series import power_series

    fill_minutes(store_db)
    store = open_store(store_db, read_only=True)
    try:
        spans = camera_spans(store, Filters())
        assert [(s.source, s.start.minute, s.seconds) for s in spans] == [
            ("aisle", 5, 600.0),
            ("door", 0, 600.0),
            ("door", 20, 600.0),  # runs, merged
        ]
        report = report_from_store(store, Filters(), EnergyConfig())
        minutely = power_series(store, Filters(interval="minute"), group="device")
        hourly = power_series(store, Filters(interval="hour"), group="site")
        fleet = power_series(store, Filters(interval="hour"), group="fleet")
    finally:
        store.close()
    days = {d["device"]: d for d in objs(report["days"])}
    compared = {c["camera"]: c for c in objs(days["d1"]["compared"])}
    # door: minutes 0-9 and 20-28 whole, and the 30 s the last reading covered
    assert compared["door"]["hours"] * 3600 == pytest.approx(600 + 540 + 30)
    assert compared["aisle"]["hours"] * 3600 == pytest.approx(600)
    assert days["d1"]["basis"] == "aggregates" and days["d2"]["basis"] == "power"
    assert days["d2"]["camera_hours"] * 3600 == pytest.approx(1800)
    assert days["d1"]["edge"]["measured_wh"] == pytest.approx(15 * 10 / 60)  # not + 1 Wh
    # watts per minute: the measurement wins its bucket; the last one 0.1 Wh over 30 s
    rows = {(r[2], r[0].minute): dict(zip(minutely.columns, r, strict=True)) for r in minutely.rows}
    assert rows[("d1", 3)]["measured_w"] == pytest.approx(10)
    assert rows[("d1", 3)]["estimated_w"] == 0
    assert rows[("d1", 29)]["estimated_w"] == pytest.approx(12)
    assert rows[("d1", 29)]["covered_s"] == pytest.approx(30)
    # the site's hour: the sum of its devices' watts while they reported, parts adding up
    (site,) = [dict(zip(hourly.columns, r, strict=True)) for r in hourly.rows]
    d1_w = (15 * 10 / 60 + 14 * 12 / 60 + 0.1) * 3600 / (29 * 60 + 30)
    assert site["watts"] == pytest.approx(d1_w + 5)
    assert site["measured_w"] + site["estimated_w"] == pytest.approx(site["watts"])
    assert site["measured_wh"] == pytest.approx(2.5) and site["devices"] == 2
    (total,) = fleet.rows
    assert total[1] == total[2] == "*" and total[3] == pytest.approx(site["watts"])


def test_power_endpoint(tmp_path: Path) -> None:
    path = str(tmp_path / "fleet.duckdb")
    fill_minutes(path)
    store = open_store(path, read_only=True)
    try:
        client = TestClient(create_app(FleetContext(store)))
        resp = client.get("/api/v1/power", params={"interval": "hour", "group": "site"})
        assert resp.status_code == 200, resp.text
        (row,) = resp.json()["rows"]
        assert row["site"] == "s1" and row["device"] == "*" and row["devices"] == 2
        one = client.get("/api/v1/power", params={"device": "d2", "interval": "minute"}).json()
        assert len(one["rows"]) == 30 and all(r["measured_w"] == 0 for r in one["rows"])
        assert client.get("/api/v1/power", params={"group": "shop"}).status_code == 422
        csv = client.get("/api/v1/power", params={"format": "csv", "interval": "day"})
        assert csv.text.splitlines()[0].startswith("bucket,site,device,watts,measured_w")
    finally:
        store.close()


# ------------------------------------------------------------------ one config, one answer


def test_the_same_database_and_config_give_the_same_figures_everywhere(
    db: str, config: Path
) -> None:
    """`energy report --db`, `fleet query energy --db` and /api/v1/energy over the same
    database with the same energy config: the same ledger, to the last digit."""
    args = ("--db", db, "--energy-config", str(config), "--store-region", "NZ", "--json")
    report = edgetally("energy", "report", *args)
    query = edgetally("fleet", "query", "energy", *args)
    assert report.returncode == 0, report.stderr
    assert query.returncode == 0, query.stderr
    from_report, from_query = json.loads(report.stdout), json.loads(query.stdout)
    from edgetally.fleet.energy.assumptions import with_flags

    store = open_store(db, read_only=True)
    try:
        cfg = with_flags(load_config(config), store_region="NZ")
        app = create_app(FleetContext(store), hooks=[energy_config_hook(cfg)])
        from_api = TestClient(app).get("/api/v1/energy").json()
    finally:
        store.close()
    assert from_report == from_query == from_api
    assert from_api["config"]["defaults"]["store_region"] == "NZ"
    # the defaults the flag set, box2's own entry kept (DE)
    regions = {d["device"]: d["store_region"] for d in from_api["days"]}
    assert regions == {"box1": "NZ", "box2": "DE"}
    text = edgetally("energy", "report", *args[:-1])
    assert text.stdout == edgetally("fleet", "query", "energy", *args[:-1]).stdout


def test_flags_set_the_defaults_and_bad_ones_are_one_line(db: str, tmp_path: Path) -> None:
    capped = json.loads(
        edgetally(
            "energy",
            "report",
            "--db",
            db,
            "--hours-per-day",
            "5",
            "--bitrate-mbps",
            "1.5",
            "--accounting",
            "marginal",
            "--json",
        ).stdout
    )
    assert capped["accounting"] == "marginal"
    for day in objs(capped["days"]):
        assert day["camera_hours"] == pytest.approx(5)  # box1's 12 counted, box2's 12 read
        assert all(c["bitrate_mbps"] == 1.5 for c in day["compared"])
    text = edgetally("energy", "report", "--db", db, "--accounting", "marginal").stdout
    assert "cloud Wh marg" in text and "attr" not in text.split("compared:")[0]
    bad_file = tmp_path / "bad.yaml"
    bad_file.write_text("devices:\n  box2:\n    store_region: Atlantis\n")
    for flags, said in (
        (("--hours-per-day", "30"), "--hours-per-day must be in (0, 24], got 30"),
        (("--accounting", "both-ways"), "--accounting 'both-ways': use both, attributional"),
        (("--store-region", "Mars"), "--store-region: unknown grid region 'Mars'"),
        (
            ("--energy-config", str(bad_file)),
            f"energy config {bad_file}: devices.box2.store_region: unknown grid region 'Atlantis'",
        ),
    ):
        done = edgetally("energy", "report", "--db", db, *flags)
        assert done.returncode == 1, (flags, done.stderr)
        assert done.stderr.startswith(f"edgetally: error: {said}"), done.stderr
        assert len(done.stderr.strip().splitlines()) == 1
    both = edgetally("energy", "report", "--db", db, "--api", "http://127.0.0.1:9")
    assert both.returncode == 2 and "exactly one of --db" in both.stderr
    mixed = edgetally("energy", "report", "--api", "http://127.0.0.1:9", "--hours-per-day", "3")
    assert mixed.returncode == 2 and "its own energy config" in mixed.stderr
