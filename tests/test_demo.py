"""`edgetally demo` ends by itself and the fleet stores what was published."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

pytestmark = pytest.mark.slow


def test_demo_json_summary(tmp_path: Path, vtest_avi: Path) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "edgetally", "demo", "--stores", "2", "--days", "3",
         "--seconds", "30", "--max-frames", "60", "--data-dir", str(tmp_path), "--json"],
        capture_output=True, text=True, timeout=600,
    )
    assert out.returncode == 0, out.stderr
    summary = json.loads(out.stdout)
    assert summary["stores"] == 2
    assert summary["api"].startswith("http://127.0.0.1:")
    assert summary["published"] > 2 * 3 * 20  # hourly buckets of two stores
    assert summary["stored"] == summary["published"]
    assert summary["dead_letters"] == 0
    assert summary["device"]["frames"] == 60 and summary["device"]["error"] is None
    sites = {row["site"] for row in summary["traffic"]}
    assert "demo-shop" in sites and len(sites) == 3
    assert (tmp_path / "fleet.duckdb").exists()
    # Power: one reading per store hour (as many as the stores' aggregates) plus the real
    # device's wall-clock buckets (as many as its power sampler closed: not tied to how
    # many file buckets it counted), stored as published.
    power = summary["power"]
    store_aggregates = summary["published"] - summary["device"]["aggregates"]
    device_power = summary["device"]["power"]["buckets"]
    assert device_power >= 1
    assert power["published"] == store_aggregates + device_power
    assert power["stored"] == power["published"]
    energy = summary["energy"]
    by_device = {d["device"]: d for d in energy["devices"]}
    assert set(by_device) == {"demo-cam", "store-01", "store-02"}
    for name in ("store-01", "store-02"):  # simulated: from a profile, never "measured"
        assert by_device[name]["edge"]["label"] == "estimated"
        assert by_device[name]["edge"]["measured"] is False
    cam = by_device["demo-cam"]["edge"]
    assert cam["measured"] is (cam["label"] == "measured")
    assert summary["device"]["power"]["measured"] is cam["measured"]
    assert energy["measured"] is all(d["edge"]["measured"] for d in by_device.values())
    for d in by_device.values():
        assert d["edge"]["wh"] > 0 and d["cloud"]["cloud_wh_attributional"] > 0
        assert d["ratio"]["energy_attributional"] == pytest.approx(
            d["cloud"]["cloud_wh_attributional"] / d["edge"]["wh"], rel=1e-6
        )


def test_demo_on_the_embedded_broker_loses_nothing(tmp_path: Path, vtest_avi: Path) -> None:
    """Without Mosquitto the demo runs on amqtt: the same QoS 1 path, every message stored."""
    out = subprocess.run(
        [sys.executable, "-m", "edgetally", "demo", "--embedded-broker", "--stores", "1",
         "--days", "2", "--seconds", "30", "--max-frames", "30", "--data-dir", str(tmp_path),
         "--json"],
        capture_output=True, text=True, timeout=600,
    )
    assert out.returncode == 0, out.stderr
    summary = json.loads(out.stdout)
    assert summary["broker"]["kind"] == "amqtt"
    assert summary["published"] > 2 * 20 and summary["stored"] == summary["published"]
    assert summary["power"]["stored"] == summary["power"]["published"] > 0
    assert summary["dead_letters"] == 0


def test_demo_keeps_serving_until_interrupted(tmp_path: Path, vtest_avi: Path) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "edgetally", "demo", "--stores", "1", "--days", "1",
         "--seconds", "20", "--max-frames", "20", "--data-dir", str(tmp_path),
         "--power-source", "estimate", "--json", "--keep-serving"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        assert proc.stdout is not None
        summary = json.loads(proc.stdout.readline())
        api = summary["api"]
        assert api.startswith("http://127.0.0.1:")
        # The run is over, the fleet still answers, from the same store.
        devices = httpx.get(f"{api}/api/v1/devices", timeout=30).json()["rows"]
        assert {d["device"] for d in devices} == {"demo-cam", "store-01"}
        energy = httpx.get(f"{api}/api/v1/energy", timeout=30).json()
        assert {d["device"] for d in energy["devices"]} == {"demo-cam", "store-01"}
        assert energy["measured"] is False  # --power-source estimate: nothing measured
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_demo_bad_source_is_one_line(tmp_path: Path) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "edgetally", "demo", "--source", str(tmp_path / "none.mp4")],
        capture_output=True, text=True, timeout=120,
    )
    assert out.returncode == 1
    assert out.stderr.startswith("edgetally: error: demo video")
    assert "Traceback" not in out.stderr
