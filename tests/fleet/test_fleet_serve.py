"""One fleet process: ingest + API + tokens + rollouts (what `fleet serve` composes)."""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import httpx
import paho.mqtt.client as mqtt
import pytest
from edgetally.fleet.config import FleetConfig
from edgetally.fleet.errors import FleetError
from edgetally.fleet.http.auth import add_token
from edgetally.fleet.server import FleetServer
from edgetally.models.bundle import generate_keypair
from edgetally.models.topics import DeviceId, SiteId, topic_for
from edgetally.models.wire import DeviceStatus, to_json
from paho.mqtt.enums import CallbackAPIVersion

from tests.conftest import Broker
from tests.runtime.updates.updater_support import make_bundle
from tests.runtime.uplink.test_publisher import wait_until

pytestmark = pytest.mark.slow


def _announce(broker: Broker, devices: list[str]) -> None:
    """Devices say they are online, as their publishers do."""
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="test-devices")
    client.connect("127.0.0.1", broker.port)
    client.loop_start()
    try:
        for dev in devices:
            status = DeviceStatus(
                site=SiteId("shop"), device=DeviceId(dev), at=datetime.now(UTC), state="online"
            )
            info = client.publish(topic_for("shop", dev, "status"), to_json(status), qos=1)
            info.wait_for_publish(10)
    finally:
        client.disconnect()
        client.loop_stop()


def test_tokens_guard_the_api_and_rollouts_tick_by_themselves(
    tmp_path: Path, mosquitto: Broker
) -> None:
    tokens = tmp_path / "tokens.json"
    analyst = add_token(tokens, "ann", "analyst")
    operator = add_token(tokens, "otto", "operator")
    device_token = add_token(tokens, "box", "device")
    private, public = generate_keypair(tmp_path / "keys")
    config = FleetConfig.of(
        mosquitto.url,
        str(tmp_path / "fleet.duckdb"),
        "127.0.0.1:0",
        tokens_file=str(tokens),
        rollouts_dir=str(tmp_path / "rollouts"),
        fleet_key=str(private),
        fleet_pubkey=str(public),
        rollout_tick_s=0.2,
    )
    with FleetServer(config) as fleet:
        api = fleet.http_url
        as_analyst = {"Authorization": f"Bearer {analyst}"}
        as_operator = {"Authorization": f"Bearer {operator}"}
        for path in ("/api/v1/traffic", "/api/v1/devices", "/api/v1/energy"):
            assert httpx.get(api + path).status_code == 401
            bad = httpx.get(api + path, headers={"Authorization": "Bearer nope"})
            assert bad.status_code == 401 and bad.headers["www-authenticate"] == "Bearer"
            dev = httpx.get(api + path, headers={"Authorization": f"Bearer {device_token}"})
            assert dev.status_code == 403
            assert httpx.get(api + path, headers=as_analyst).status_code == 200
        assert httpx.get(api + "/openapi.json").status_code == 200  # the docs stay readable

        _announce(mosquitto, [f"d{i}" for i in range(4)])
        assert fleet.ingestor.wait_until(lambda c: c.statuses >= 4, 20)

        bundle = make_bundle(tmp_path, private, "v2")
        up = httpx.put(api + "/bundles", content=bundle.read_bytes(), headers=as_analyst)
        assert up.status_code == 403  # analysts read, operators manage
        up = httpx.put(api + "/bundles", content=bundle.read_bytes(), headers=as_operator)
        assert up.status_code == 200, up.text
        body = {
            "bundle_sha256": up.json()["sha256"],
            "selector": "shop/*",
            "stages": "50%,100%",
            "report_timeout_s": 0.5,
        }
        assert httpx.post(api + "/rollouts", json=body, headers=as_analyst).status_code == 403
        created = httpx.post(api + "/rollouts", json=body, headers=as_operator)
        assert created.status_code == 200, created.text
        rollout = created.json()
        assert rollout["state"] == "running" and len(rollout["devices"]) == 4
        url = f"{api}/rollouts/{rollout['id']}"

        # Nobody reports: the fleet's own tick times the first stage out and halts it.
        def halted() -> bool:
            return bool(httpx.get(url, headers=as_analyst).json()["state"] == "halted")

        assert wait_until(halted, 30)
        final = httpx.get(url, headers=as_analyst).json()
        failed = [d for d in final["devices"].values() if d["state"] == "failed"]
        assert len(failed) == 2  # the first stage (50%), none of the second
        assert fleet.rollouts is not None


def test_rollouts_without_tokens_are_refused(tmp_path: Path, mosquitto: Broker) -> None:
    config = FleetConfig.of(
        mosquitto.url,
        str(tmp_path / "f.duckdb"),
        "127.0.0.1:0",
        rollouts_dir=str(tmp_path / "r"),
        fleet_key=str(tmp_path / "k.key"),
    )
    with pytest.raises(FleetError, match="--tokens"):
        FleetServer(config).start()


def test_no_tokens_keeps_the_api_open(tmp_path: Path, mosquitto: Broker) -> None:
    config = FleetConfig.of(mosquitto.url, str(tmp_path / "f.duckdb"), "127.0.0.1:0")
    with FleetServer(config) as fleet:
        assert httpx.get(fleet.http_url + "/api/v1/devices").status_code == 200
        assert httpx.get(fleet.http_url + "/rollouts").status_code == 404  # not mounted


def test_fleet_serve_rollouts_need_tokens_one_line() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "edgetally", "fleet", "serve", "--rollouts"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 1 and "Traceback" not in out.stderr
    assert out.stderr.startswith("edgetally: error: --rollouts needs --tokens")
