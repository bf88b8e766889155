"""Black-box, as an operator runs it: a real Mosquitto, `fleet serve --tokens
--energy-config`, a device counting a short clip in real time with power telemetry, then
`energy report --api` and `fleet query energy|events|shelf|audio` (token from a file and
from EDGETALLY_TOKEN, never needed on the command line), and the same ledger from the
database once the fleet has stopped."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from edgetally.fleet.http.auth import add_token
from edgetally.fleet.store.connect import open_store
from edgetally.fleet.store.records import IngestBatch
from edgetally.fleet.store.sensors import SensorBatch, write_sensors
from edgetally.models.wire import Aggregate, AudioLevels, FacingCounts, ShelfState
from edgetally.ports import free_port

from tests.conftest import Broker

pytestmark = pytest.mark.slow

T0 = datetime(2025, 3, 5, 10, 0, tzinfo=UTC)
FRAMES = 50  # of vtest.avi at its 10 frames/s: 5 s played in real time


def edgetally(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "edgetally", *args],
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
        env=env,
    )


def fill_sensors(path: str) -> None:
    """An hour of a shop's shelf camera, microphone and the events on its floor zone."""
    floor = Aggregate.model_validate(
        {
            "site": "shop-1",
            "device": "box-1",
            "source": "door",
            "line": "floor",
            "seq": 1,
            "start": T0,
            "seconds": 3600,
            "occupancy_mean": 1.5,
            "occupancy_peak": 3,
            "shelf_events": {"product_taken": 4},
            "audio_events": {"cash_register": 2},
        }
    )
    mic = AudioLevels.model_validate(
        {
            "site": "shop-1",
            "device": "box-1",
            "source": "ceiling-mic",
            "seq": 2,
            "start": T0,
            "seconds": 3600,
            "duration_s": 3600.0,
            "leq_dbfs": -30.0,
            "laeq_dbfs": -33.0,
            "speech_ratio": 0.25,
            "events": {"glass": 1},
        }
    )
    shelf = ShelfState.model_validate(
        {
            "site": "shop-1",
            "device": "box-1",
            "source": "aisle3",
            "seq": 3,
            "start": T0,
            "seconds": 3600,
            "facings": (
                FacingCounts.model_validate(
                    {
                        "region": "top",
                        "facing": "cola",
                        "facing_empty": 2,
                        "restocked": 1,
                        "product_taken": 5,
                        "empty_at_end": True,
                    }
                ),
            ),
        }
    )
    store = open_store(path)
    try:
        store.write(IngestBatch(aggregates=(floor,), received_at=T0))
        write_sensors(store, SensorBatch((mic,), (shelf,)))
    finally:
        store.close()


class Serving:
    def __init__(self, proc: subprocess.Popen[str], url: str, log: Path) -> None:
        self.proc, self.url, self.log = proc, url, log

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(timeout=60)


@pytest.fixture
def fleet(tmp_path: Path, mosquitto: Broker) -> Iterator[tuple[Serving, dict[str, Any]]]:
    db = tmp_path / "fleet.duckdb"
    fill_sensors(str(db))
    tokens = tmp_path / "tokens.json"
    token = add_token(tokens, "ana", "analyst")
    token_file = tmp_path / "analyst.token"
    token_file.write_text(token + "\n")
    energy = tmp_path / "energy.yaml"
    energy.write_text("defaults:\n  cameras: [{bitrate_mbps: 4.0, fps: 10}]\n")
    port = free_port()
    log = tmp_path / "serve.log"
    with log.open("w") as err:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "edgetally",
                "fleet",
                "serve",
                "--broker",
                mosquitto.url,
                "--db",
                str(db),
                "--http",
                f"127.0.0.1:{port}",
                "--tokens",
                str(tokens),
                "--energy-config",
                str(energy),
                "--store-region",
                "NZ",
                "--hours-per-day",
                "12",
            ],
            stdout=subprocess.DEVNULL,
            stderr=err,
            text=True,
        )
    serving = Serving(proc, f"http://127.0.0.1:{port}", log)
    try:
        for _ in range(600):  # a guard against hanging, not a speed requirement
            assert proc.poll() is None, log.read_text()
            try:
                if httpx.get(f"{serving.url}/api/v1/health", timeout=2).status_code in (200, 401):
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        yield (
            serving,
            {
                "db": db,
                "token": token,
                "token_file": token_file,
                "energy": energy,
                "broker": mosquitto.url,
                "tmp": tmp_path,
            },
        )
    finally:
        serving.stop()


def test_a_short_run_against_fleet_serve_gets_a_baseline_as_short(
    fleet: tuple[Serving, dict[str, Any]], vtest_avi: Path
) -> None:
    serving, made = fleet
    tmp = made["tmp"]
    run = edgetally(
        "device",
        "run",
        str(vtest_avi),
        "--realtime",
        "--max-frames",
        str(FRAMES),
        "--line",
        "entrance=380,100,380,576",
        "--site",
        "shop-5s",
        "--device-id",
        "cam-5s",
        "--broker",
        made["broker"],
        "--outbox",
        str(tmp / "outbox.db"),
        "--bucket-seconds",
        "10",
        "--power-source",
        "estimate",
        "--json",
    )
    assert run.returncode == 0, run.stderr
    sent = json.loads(run.stdout)
    assert sent["power"]["buckets"] >= 1 and sent["waiting"] == 0
    headers = {"Authorization": f"Bearer {made['token']}"}
    for _ in range(600):  # until the fleet stored the device's power readings
        rows = httpx.get(
            f"{serving.url}/api/v1/power", params={"device": "cam-5s"}, headers=headers, timeout=10
        ).json()["rows"]
        stored_wh = sum(r["measured_wh"] + r["estimated_wh"] for r in rows)
        if stored_wh == pytest.approx(sent["power"]["wh"], abs=1e-5):
            break
        time.sleep(0.1)

    # no token: one line saying how to give one
    bare = dict(os.environ)
    bare.pop("EDGETALLY_TOKEN", None)
    refused = edgetally("energy", "report", "--api", serving.url, env=bare)
    assert refused.returncode == 1
    assert refused.stderr.strip() == (
        f"edgetally: error: the fleet API at {serving.url} wants a token: pass --token-file "
        "FILE or set EDGETALLY_TOKEN (or --token TOKEN, which ps shows)"
    )
    # a token file, and the environment variable
    by_file = edgetally(
        "energy",
        "report",
        "--api",
        serving.url,
        "--device",
        "cam-5s",
        "--token-file",
        str(made["token_file"]),
        "--json",
        env=bare,
    )
    assert by_file.returncode == 0, by_file.stderr
    ledger = json.loads(by_file.stdout)
    by_env = edgetally(
        "fleet",
        "query",
        "energy",
        "--api",
        serving.url,
        "--device",
        "cam-5s",
        "--json",
        env={**bare, "EDGETALLY_TOKEN": made["token"]},
    )
    assert by_env.returncode == 0, by_env.stderr
    assert json.loads(by_env.stdout) == ledger

    # The fleet's own config applied (file and flags), and the camera time is the run's.
    assert ledger["config"]["defaults"]["store_region"] == "NZ"
    assert ledger["config"]["defaults"]["hours_per_day"] == 12
    (day,) = ledger["days"]
    covered_s = day["edge"]["covered_hours"] * 3600
    assert 1 < covered_s < 3 * FRAMES / 10  # about the 5 s it ran, not hours
    assert day["basis"] == "aggregates"
    (camera,) = day["compared"]
    assert camera["bitrate_mbps"] == 4.0 and camera["fps"] == 10
    assert 0 < camera["hours"] * 3600 <= covered_s + 1e-6
    a_day = 12 * 3600  # what the ledger used to set against any device-day
    assert day["camera_hours"] * 3600 < a_day / 1000
    ratio = ledger["devices"][0]["ratio"]["energy_attributional"]
    assert ratio < 50  # the old ledger said thousands for a run of seconds

    # The other analyst queries, through the API with the token file
    for kind, key in (("events", "event"), ("shelf", "facing"), ("audio", "source")):
        done = edgetally(
            "fleet",
            "query",
            kind,
            "--api",
            serving.url,
            "--site",
            "shop-1",
            "--token-file",
            str(made["token_file"]),
            "--json",
            env=bare,
        )
        assert done.returncode == 0, done.stderr
        rows = json.loads(done.stdout)["rows"]
        assert rows and all(key in r for r in rows), (kind, rows)

    # Once the fleet stops, its database with the same config gives the same ledger.
    serving.stop()
    local = edgetally(
        "energy",
        "report",
        "--db",
        str(made["db"]),
        "--device",
        "cam-5s",
        "--energy-config",
        str(made["energy"]),
        "--store-region",
        "NZ",
        "--hours-per-day",
        "12",
        "--json",
    )
    assert local.returncode == 0, local.stderr
    assert json.loads(local.stdout) == ledger


def test_fleet_query_events_shelf_audio_from_the_database(tmp_path: Path) -> None:
    db = str(tmp_path / "fleet.duckdb")
    fill_sensors(db)
    events = json.loads(edgetally("fleet", "query", "events", "--db", db, "--json").stdout)
    assert {(r["family"], r["event"], r["count"]) for r in events["rows"]} == {
        ("shelf", "product_taken", 4 + 5),
        ("shelf", "facing_empty", 2),
        ("shelf", "restocked", 1),
        ("audio", "cash_register", 2),
        ("audio", "glass", 1),
    }  # the floor zone's counts and the shelf camera's and microphone's own
    shelf = json.loads(
        edgetally("fleet", "query", "shelf", "--db", db, "--region", "top", "--json").stdout
    )
    (row,) = shelf["rows"]
    assert (row["facing"], row["facing_empty"], row["empty_at_end"]) == ("cola", 2, True)
    audio = json.loads(
        edgetally(
            "fleet",
            "query",
            "audio",
            "--db",
            db,
            "--source",
            "ceiling-mic",
            "--interval",
            "day",
            "--json",
        ).stdout
    )
    (row,) = audio["rows"]
    assert row["events"] == {"glass": 1} and row["leq_dbfs"] == pytest.approx(-30.0)
    csv = edgetally("fleet", "query", "audio", "--db", db, "--format", "csv").stdout
    assert csv.splitlines()[0].startswith("bucket,site,device,source,seconds")
    assert '"{""glass"": 1}"' in csv  # events as a JSON object, as the API writes them
    table = edgetally("fleet", "query", "shelf", "--db", db).stdout
    assert "cola" in table.splitlines()[1]
    none = edgetally("fleet", "query", "energy", "--db", db)
    assert none.returncode == 0 and none.stdout.strip() == "(no power readings match)"
    bad = edgetally("fleet", "query", "shelf", "--db", db, "--region", "no way")
    assert bad.returncode == 1 and "invalid region id" in bad.stderr
    since = (T0 + timedelta(days=1)).isoformat()
    later = json.loads(
        edgetally("fleet", "query", "events", "--db", db, "--from", since, "--json").stdout
    )
    assert later == {"rows": []}
