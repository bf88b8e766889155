"""A rollout over 50 in-process device agents against a real Mosquitto (generated config,
TLS, per-device credentials) and the real rollout HTTP server."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import pytest
from edgetally.fleet.http.auth import TokenStore, add_token
from edgetally.fleet.http.rollout import create_rollout_app
from edgetally.fleet.rollout.mqtt import RolloutMqttLink
from edgetally.fleet.rollout.plan import Rollout
from edgetally.fleet.rollout.service import RolloutService
from edgetally.models.bundle import generate_keypair, load_private_key, load_public_key
from edgetally.runtime.updates.agent import UpdateAgent
from edgetally.runtime.updates.health import OnnxHealthCheck
from edgetally.runtime.updates.updater import Updater

from tests.fleet.test_broker_support import start_secure_broker
from tests.runtime.updates.updater_support import TARGET, make_bundle, serve

pytestmark = pytest.mark.slow
N = 50


def _wait(what: str, cond: Callable[[], bool], timeout: float = 300.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting for {what}")
        time.sleep(0.1)


def test_fifty_devices_stage_by_stage_and_a_bad_bundle_stops_at_stage_one(
    tmp_path: Path,
) -> None:
    devices = [f"shop{i % 5}/cam{i:02d}" for i in range(N)]
    sb = start_secure_broker(tmp_path, ",".join(devices))
    keys = generate_keypair(tmp_path / "keys")
    pub = load_public_key(keys[1])
    tokens = tmp_path / "tokens.json"
    device_token = add_token(tokens, "devices", "device")
    url: dict[str, str] = {}
    link = RolloutMqttLink(
        "127.0.0.1",
        sb.port,
        username="fleet",
        password=sb.cfg.fleet_password,
        ca_cert=sb.cfg.ca_cert,
        client_id="fleet-rollouts",
    )
    agents: list[UpdateAgent] = []
    try:
        link.start()
        service = RolloutService(
            tmp_path / "fleet",
            load_private_key(keys[0]),
            publish=link.publish,
            devices=lambda: devices,
            bundle_url=lambda sha: f"{url['base']}/bundles/{sha}",
        )
        link.attach(service)
        v1 = make_bundle(tmp_path, keys[0], "v1")
        with serve(create_rollout_app(service, TokenStore.load(tokens))) as base:
            url["base"] = base
            for d in devices:
                site, dev = d.split("/")
                up = Updater(
                    tmp_path / "dev" / site / dev,
                    pub,
                    TARGET,
                    OnnxHealthCheck(runs=2),
                    token=device_token,
                    fleet_host="127.0.0.1",
                )
                up.install_first(v1)
                agent = UpdateAgent(
                    up,
                    site,
                    dev,
                    host="127.0.0.1",
                    port=sb.port,
                    password=sb.cfg.device_passwords[d],
                    ca_cert=sb.cfg.ca_cert,
                )
                agent.start()
                agents.append(agent)
            first = {a.updater.current for a in agents}
            assert len(first) == N

            # A bad bundle (the model crashes when run) stops at the first stage.
            bad_bundle = make_bundle(tmp_path, keys[0], "bad", broken=True, version="2")
            bad = service.add_bundle(bad_bundle)
            r = service.create(bad.sha256, "*", "5%,25%,100%")
            stage1 = set(r.stage_devices(0))
            assert len(stage1) == 3
            _wait("the bad rollout to halt", lambda: service.get(r.id).state == "halted")
            _wait(
                "stage one to report",
                lambda: all(
                    service.get(r.id).devices[d].state in ("failed", "rolled_back") for d in stage1
                ),
            )
            halted = service.get(r.id)
            assert halted.stage == 0
            assert all(halted.devices[d].state == "waiting" for d in devices if d not in stage1)
            reasons = [halted.devices[d].reason or "" for d in stage1]
            assert any("model does not run" in x for x in reasons), reasons
            assert {a.updater.current for a in agents} == first  # every device kept v1
            _events(halted)

            # A good bundle goes 3, then 13, then all 50 devices.
            good = service.add_bundle(make_bundle(tmp_path, keys[0], "v2", scale=1.02, version="2"))
            r = service.create(good.sha256, "*", "5%,25%,100%")
            _wait("the good rollout to complete", lambda: service.get(r.id).state == "completed")
            done = service.get(r.id)
            events = _events(done)
            passed = [e for e in events if e[0] == "stage passed"]
            assert [e[1].split(":")[0] for e in passed] == ["stage 1", "stage 2", "stage 3"]
            assert [e[1] for e in events if e[0] == "stage started"] == [
                "stage 1 of 3: 3 devices",
                "stage 2 of 3: 10 devices",
                "stage 3 of 3: 37 devices",
            ]
            # stage k+1 only started after every device of stage k had reported healthy
            started = [i for i, e in enumerate(events) if e[0] == "stage started"]
            for k in (1, 2):
                healthy_before = sum(1 for e in events[: started[k]] if e[0] == "device healthy")
                assert healthy_before == (3, 13)[k - 1]
            currents = [a.updater.current for a in agents]
            assert all(c is not None and c.name == good.sha256 for c in currents)
            assert link.rejected == 0
            assert {x.id for x in service.all()} == {halted.id, done.id}
    finally:
        for a in agents:
            a.stop()
        link.stop()
        sb.broker.stop()


def _events(r: Rollout) -> list[tuple[str, str]]:
    return [(e.event, e.detail) for e in r.history]
