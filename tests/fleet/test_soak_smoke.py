"""The soak benchmark, briefly: a few devices for a few seconds, one broker restart and two
re-images, hostile messages among them; nothing lost, nothing twice, ingest alive. And the
same on the closed broker of `fleet broker-config` (--closed): client ids stolen, aggregates
on foreign topics refused, forged and replayed commands refused, genuine ones obeyed."""

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
            sys.executable,
            str(REPO / "benchmarks" / "soak.py"),
            "--devices",
            "6",
            "--minutes",
            "0.2",
            "--hostile-every",
            "10",
            "--broker-restarts",
            "1",
            "--reimages",
            "2",
            "--seed",
            "5",
            "--json",
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


def test_short_closed_soak_keeps_the_fleet_connected_and_obeys_no_forged_command() -> None:
    mosquitto_binary()
    run = subprocess.run(
        [
            sys.executable,
            str(REPO / "benchmarks" / "soak.py"),
            "--devices",
            "8",
            "--minutes",
            "0.4",
            "--hostile-every",
            "10",
            "--broker-restarts",
            "1",
            "--reimages",
            "2",
            "--seed",
            "5",
            "--closed",
            "--json",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=REPO,
    )
    assert run.stdout, run.stderr
    report = json.loads(run.stdout)
    assert run.returncode == 0, report
    assert report["lost"] == 0 and report["duplicated"] == 0 and report["still_waiting"] == 0
    assert report["stored"]["keys"] == report["sent"]["valid"] > 50
    closed = report["closed"]
    # The attacks happened ...
    assert closed["thefts_of_fleet_ids"] > 0 and closed["thefts_of_device_ids"] > 0
    assert closed["foreign_publishes"] > 0 and closed["device_commands"] > 0
    assert closed["genuine_commands"] > 0 and closed["captured"] > 0
    assert closed["forged_by_kind"]["replayed"] > 0 and closed["forged_by_kind"]["wrong_key"] > 0
    # ... and came to nothing: the broker refused, the agents refused, nobody was thrown off.
    assert closed["fleet_disconnects"] == 0 and closed["device_disconnects"] == 0
    assert closed["session_takeovers"] == 0
    assert closed["foreign_refused"] + closed["foreign_unanswered"] == closed["foreign_publishes"]
    assert closed["foreign_accepted"] == closed["foreign_stored"] == 0
    assert closed["foreign_reached_fleet"] == 0 and closed["device_commands_accepted"] == 0
    assert closed["commands_refused"] == closed["forged_commands"]
    assert closed["commands_obeyed_wrongly"] == 0 and closed["attacker_downloads"] == 0
    assert closed["genuine_obeyed"] == closed["genuine_commands"]
