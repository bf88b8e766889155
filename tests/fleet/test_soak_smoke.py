"""The soak benchmark, briefly: a few devices for a few seconds, one broker restart and two
re-images, hostile messages among them; nothing lost, nothing twice, ingest alive."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.conftest import REPO, mosquitto_binary

pytestmark = pytest.mark.slow


def test_short_soak_loses_nothing_and_duplicates_nothing() -> None:
    mosquitto_binary()  # skips when Mosquitto is missing
    run = subprocess.run(
        [
            sys.executable, str(REPO / "benchmarks" / "soak.py"),
            "--devices", "6", "--minutes", "0.2", "--hostile-every", "10",
            "--broker-restarts", "1", "--reimages", "2", "--seed", "5", "--json",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=REPO,
    )
    assert run.stdout, run.stderr
    report = json.loads(run.stdout)
    assert run.returncode == 0, report
    assert report["sent"]["valid"] > 50 and report["sent"]["hostile"] > 0
    assert report["lost"] == 0 and report["duplicated"] == 0 and report["still_waiting"] == 0
    assert report["hostile_unaccounted"] == {}
    ingest = report["ingest"]
    assert ingest["loop_errors"] == 0 and ingest["loop_restarts"] == 0 and ingest["running"]
    assert report["broker_restarts"] == 1
    assert report["conflicts"]["recorded"] >= report["conflicts"]["sent_distinct"]
    assert report["stored"]["keys"] == report["sent"]["valid"]
