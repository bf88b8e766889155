"""Installs by role: a device installs what a device runs, a fleet what a fleet runs.

The fast tests check the import graph in this (full) environment; the slow one builds a
fresh virtualenv with ``pip install '.[device,onnxruntime]'`` (from the package registry)
and runs the device's commands there.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO, VTEST, Broker

RUNTIMES = ("onnxruntime", "openvino", "ai_edge_litert")
FLEET_ONLY = ("duckdb", "pyarrow", "fastapi", "uvicorn", "amqtt")
PEERS = ("boxmot", "supervision", "torch")  # the accuracy benchmark's peer trackers


def imported_after(code: str) -> set[str]:
    """Top-level modules loaded by ``code`` in a fresh interpreter."""
    probe = (
        f"{code}\nimport sys, json\n"
        "print(json.dumps(sorted({m.split('.')[0] for m in sys.modules}"
        " | {m for m in sys.modules if m.startswith('edgetally.')})))"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=120, check=True
    )
    return set(json.loads(out.stdout.splitlines()[-1]))


def test_the_fleet_imports_no_inference_runtime() -> None:
    loaded = imported_after(
        "from edgetally.fleet.server import FleetServer\n"
        "from edgetally.fleet.http.app import create_app\n"
        "from edgetally.fleet.store.connect import open_store\n"
        "open_store(':memory:').close()"
    )
    assert not loaded & set(RUNTIMES), loaded & set(RUNTIMES)
    assert not any(m.startswith("edgetally.runtime") for m in loaded)


def test_the_device_imports_nothing_of_the_fleet() -> None:
    loaded = imported_after(
        "from edgetally.main import build_app\n"
        "build_app()\n"
        "from edgetally.runtime.device import default_pipeline\n"
        "from edgetally.runtime.uplink.publisher import Publisher\n"
        "from edgetally.runtime.updates.agent import UpdateAgent"
    )
    assert not loaded & set(FLEET_ONLY), loaded & set(FLEET_ONLY)
    assert not any(m.startswith("edgetally.fleet") for m in loaded)


def test_a_missing_extra_is_one_line_naming_it() -> None:
    from edgetally.main import missing_extra

    line = missing_extra(ModuleNotFoundError("No module named 'duckdb'", name="duckdb"))
    assert line == "this needs duckdb, which this install lacks: pip install 'edgetally[fleet]'"
    assert missing_extra(ModuleNotFoundError("x", name="cv2.gapi")) is not None
    assert missing_extra(ModuleNotFoundError("x", name="not_ours")) is None


@pytest.mark.slow
def test_a_device_install_counts_and_publishes_without_the_fleet(
    tmp_path: Path, mosquitto: Broker
) -> None:
    # The default model ships inside the package: no model directory, no ../shared.
    if not VTEST.exists():
        pytest.skip("vtest.avi missing: install Debian's opencv-doc (./run install does)")
    venv = tmp_path / "device-venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("VIRTUAL_ENV", "PYTHON", "EDGETALLY_MODEL_DIRS"))
    }
    env["HOME"] = str(tmp_path / "home")  # no model cache either
    pip = subprocess.run(
        [str(venv / "bin" / "python"), "-m", "pip", "install", "-q", f"{REPO}[device,onnxruntime]"],
        capture_output=True,
        text=True,
        timeout=1200,
        env=env,
    )
    assert pip.returncode == 0, pip.stderr[-2000:]
    py = str(venv / "bin" / "python")
    cli = str(venv / "bin" / "edgetally")
    for module in ("duckdb", "fastapi", "openvino", "pyarrow", *PEERS):
        r = subprocess.run([py, "-c", f"import {module}"], capture_output=True, timeout=60)
        assert r.returncode != 0, f"{module} is in the device install"
    count = subprocess.run(
        [cli, "count", str(VTEST), "--line", "200,140,200,300", "--max-frames", "40", "--json"],
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
    )
    assert count.returncode == 0, count.stderr
    counted = json.loads(count.stdout)
    assert counted["frames"] == 40
    assert (counted["model"], counted["backend"]) == ("yolox-nano", "onnxruntime")
    run = subprocess.run(
        [
            cli,
            "device",
            "run",
            str(VTEST),
            "--line",
            "door=200,140,200,300",
            "--site",
            "shop",
            "--device-id",
            "lean",
            "--broker",
            mosquitto.url,
            "--outbox",
            str(tmp_path / "outbox.db"),
            "--max-frames",
            "60",
            "--bucket-seconds",
            "1",
            "--json",
        ],
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
    )
    assert run.returncode == 0, run.stderr
    assert json.loads(run.stdout)["aggregates"] >= 2
    fleet = subprocess.run(
        [cli, "fleet", "serve", "--db", str(tmp_path / "f.duckdb")],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    assert fleet.returncode == 1
    assert fleet.stderr.strip().splitlines()[-1].endswith("pip install 'edgetally[fleet]'")
    wrong = subprocess.run(
        [
            cli,
            "count",
            str(VTEST),
            "--backend",
            "openvino",
            "--line",
            "200,140,200,300",
            "--max-frames",
            "2",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    assert wrong.returncode == 1 and "edgetally[openvino]" in wrong.stderr
