"""Rollout records in the fleet's database: one process runs rollouts, every api process
on the same PostgreSQL answers about them, and the records of a rollout folder move in."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from edgetally.fleet.config import FleetConfig
from edgetally.fleet.http.auth import add_token
from edgetally.fleet.rollout.plan import RolloutError, new_rollout
from edgetally.fleet.rollout.records import FileRecords, StoreRecords
from edgetally.fleet.server import FleetServer
from edgetally.fleet.store.connect import open_store
from edgetally.models.bundle import generate_keypair

from tests.conftest import Broker
from tests.fleet.rollout.test_rollout import BUNDLE, DEVICES, T0
from tests.fleet.test_fleet_serve import _announce
from tests.runtime.updates.updater_support import make_bundle
from tests.runtime.uplink.test_publisher import wait_until

pytestmark = pytest.mark.slow


def test_one_process_runs_rollouts_and_every_api_process_reads_them(
    tmp_path: Path, mosquitto: Broker, pg_url: str
) -> None:
    tokens = tmp_path / "tokens.json"
    analyst = {"Authorization": f"Bearer {add_token(tokens, 'ann', 'analyst')}"}
    operator = {"Authorization": f"Bearer {add_token(tokens, 'otto', 'operator')}"}
    private, _ = generate_keypair(tmp_path / "keys")

    def config(client: str, rollouts: bool) -> FleetConfig:
        return FleetConfig.of(
            mosquitto.url,
            pg_url,
            "127.0.0.1:0",
            role="api",
            client_id=client,
            tokens_file=str(tokens),
            fleet_key=str(private),
            rollouts_dir=str(tmp_path / client) if rollouts else None,
            rollout_tick_s=0.2,
        )

    with (
        FleetServer(config("api-a", True)) as runner,
        FleetServer(config("api-b", False)) as reader,
    ):
        with pytest.raises(RolloutError, match="already run in another fleet process"):
            FleetServer(config("api-c", True)).start()
        _announce(mosquitto, ["d0", "d1"])
        assert runner.ingestor.wait_until(lambda c: c.statuses >= 2, 20)
        bundle = make_bundle(tmp_path, private, "v2")
        up = httpx.put(runner.http_url + "/bundles", content=bundle.read_bytes(), headers=operator)
        assert up.status_code == 200, up.text
        body = {
            "bundle_sha256": up.json()["sha256"],
            "selector": "shop/*",
            "stages": "100%",
            "report_timeout_s": 0.3,
        }
        created = httpx.post(runner.http_url + "/rollouts", json=body, headers=operator)
        assert created.status_code == 200, created.text
        rollout_id = created.json()["id"]
        # the other api process answers from the database, and sees the tick's changes
        url = f"{reader.http_url}/rollouts/{rollout_id}"
        assert wait_until(
            lambda: httpx.get(url, headers=analyst).json().get("state") == "halted", 30
        )
        listed = httpx.get(reader.http_url + "/rollouts", headers=analyst).json()
        assert [r["id"] for r in listed] == [rollout_id]
        assert httpx.get(url, headers={}).status_code == 401
        missing = httpx.get(f"{reader.http_url}/rollouts/ro-none", headers=analyst)
        assert missing.status_code == 404
        # writes stay with the process that runs them
        pause = httpx.post(f"{url}/pause", headers=operator)
        assert pause.status_code in (404, 405)
    assert not (tmp_path / "api-a" / "rollouts" / f"{rollout_id}.json").exists()


def test_records_of_a_rollout_folder_move_into_the_store(tmp_path: Path) -> None:
    """A fleet that kept rollouts as files: the first start with the store takes them in."""
    folder = tmp_path / "rollouts"
    folder.mkdir()
    files = FileRecords(folder)
    old, _actions = new_rollout("ro-1", BUNDLE, "*", (5, 100), DEVICES, now=T0)
    files.put(old)
    store = open_store(str(tmp_path / "fleet.duckdb"))
    try:
        records = StoreRecords(store)
        assert records.import_files(files) == 1
        assert records.import_files(files) == 0  # once
        assert records.ids() == [old.id]
        text = records.get(old.id)
        assert text is not None and old.model_validate_json(text) == old
    finally:
        store.close()
