"""The update agent against a real Mosquitto on loopback: no command payload, retained or
not, stops it from handling the next (signed) one; a refused update reaches the fleet's
rollout record with its reason; the agent alone downloads only from the broker's host."""

from __future__ import annotations

import json
import secrets
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from edgetally.fleet.http.auth import TokenStore, add_token
from edgetally.fleet.http.rollout import create_rollout_app
from edgetally.fleet.rollout.mqtt import RolloutMqttLink
from edgetally.fleet.rollout.service import RolloutService
from edgetally.models.bundle import generate_keypair, load_private_key, load_public_key
from edgetally.models.commands import sign_command
from edgetally.models.topics import topic_for
from edgetally.models.wire import UpdateReport, to_json
from edgetally.runtime.updates.agent import UpdateAgent
from edgetally.runtime.updates.device import UpdateOptions, run_agent
from edgetally.runtime.updates.health import OnnxHealthCheck
from edgetally.runtime.updates.updater import Updater
from edgetally.runtime.uplink.broker import broker_login
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from paho.mqtt.enums import CallbackAPIVersion

from tests.conftest import Broker
from tests.runtime.updates.updater_support import TARGET, make_bundle, serve
from tests.runtime.uplink.test_publisher import Recorder, wait_until

SITE, DEVICE = "s", "d"
CMD = topic_for(SITE, DEVICE, "cmd")
REPORTS = topic_for(SITE, DEVICE, "update")
ELSEWHERE = "http://192.0.2.1"  # TEST-NET-1: never the fleet's host


class Sender:
    """Publishes on the device's cmd topic (QoS 1, waits for the broker's PUBACK); ``key``:
    the fleet's signing key, for the valid commands it sends."""

    def __init__(self, port: int, key: Ed25519PrivateKey) -> None:
        self.key = key
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="sender")
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()

    def send(self, payload: bytes, *, retain: bool = False) -> None:
        self.client.publish(CMD, payload, qos=1, retain=retain).wait_for_publish(10)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def _report(rec: Recorder, rollout: str) -> UpdateReport | None:
    for payload in rec.payloads("/update"):
        report = UpdateReport.model_validate_json(payload)
        if report.rollout_id == rollout:
            return report
    return None


def _valid_update(key: Ed25519PrivateKey, rollout: str) -> bytes:
    """A signed update command the agent handles without the network: its URL is refused."""
    sha = secrets.token_hex(32)
    return to_json(
        sign_command(
            key,
            site=SITE,
            device=DEVICE,
            action="update",
            rollout=rollout,
            bundle_sha256=sha,
            version="9",
            url=f"{ELSEWHERE}/bundles/{sha}",
            size=100,
        )
    )


def _still_handles(sender: Sender, rec: Recorder) -> None:
    rollout = f"ok-{secrets.token_hex(6)}"
    sender.send(_valid_update(sender.key, rollout))
    assert wait_until(lambda: _report(rec, rollout) is not None, 30), "the agent stopped"
    report = _report(rec, rollout)
    assert report is not None and report.outcome == "failed"
    assert "not the fleet's host" in (report.reason or "")


def _command(at: str, action: str = "update", params: dict[str, Any] | None = None) -> bytes:
    return json.dumps(
        {
            "v": 1,
            "kind": "cmd",
            "site": SITE,
            "device": DEVICE,
            "command_id": "c1",
            "at": at,
            "action": action,
            "params": params or {},
        }
    ).encode()


@pytest.fixture
def agent(tmp_path: Path, mosquitto: Broker) -> Iterator[tuple[UpdateAgent, Sender, Recorder]]:
    keys = generate_keypair(tmp_path / "keys")
    up = Updater(
        tmp_path / "device",
        load_public_key(keys[1]),
        TARGET,
        OnnxHealthCheck(),
        fleet_host="127.0.0.1",
    )
    rec = Recorder(mosquitto.port, REPORTS)
    sender = Sender(mosquitto.port, load_private_key(keys[0]))
    agent = UpdateAgent(up, SITE, DEVICE, port=mosquitto.port)
    agent.start()
    try:
        yield agent, sender, rec
    finally:
        agent.stop()
        sender.send(b"", retain=True)  # no retained command left behind
        sender.close()
        rec.close()


# --------------------------------------------------------------------------- what may arrive

_scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats()
    | st.text(max_size=80)
    | st.just("Z" * 64)
    | st.just("0" * 64)
)
_json = st.recursive(
    _scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4)
    ),
    max_leaves=12,
)


@st.composite
def _timestamps(draw: st.DrawFn) -> str:
    """ISO 8601 times anywhere in years 1-9999, with any offset up to a day either way."""
    date = (
        f"{draw(st.integers(1, 9999)):04d}-{draw(st.integers(1, 12)):02d}-"
        f"{draw(st.integers(1, 28)):02d}"
    )
    time = (
        f"{draw(st.integers(0, 23)):02d}:{draw(st.integers(0, 59)):02d}:"
        f"{draw(st.integers(0, 59)):02d}"
    )
    minutes = draw(st.integers(-1439, 1439))
    sign = "-" if minutes < 0 else "+"
    offset = draw(st.sampled_from(["Z", f"{sign}{abs(minutes) // 60:02d}:{abs(minutes) % 60:02d}"]))
    return f"{date}T{time}{offset}"


_params = st.dictionaries(
    st.sampled_from(["rollout", "url", "sha256", "size", "version", "rollback"])
    | st.text(max_size=10),
    _scalars,
    max_size=6,
)
_payloads = st.one_of(
    st.binary(max_size=300),
    _json.map(lambda v: json.dumps(v).encode()),
    st.builds(_command, _timestamps(), st.sampled_from(["update", "rollback", "x"]), _params),
)


def test_no_command_stops_the_agent(
    agent: tuple[UpdateAgent, Sender, Recorder],
) -> None:
    _agent, sender, rec = agent

    @settings(
        max_examples=40,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.too_slow],
    )
    @given(payload=_payloads, retain=st.booleans())
    @example(payload=_command("0001-01-01T00:00:00+14:00"), retain=False)
    @example(payload=_command("9999-12-31T23:00:00-05:00"), retain=True)
    # handling raises and so does reporting it: a rollout id the fleet would never send
    @example(
        payload=_command(
            "2025-01-01T00:00:00Z", params={"rollout": "bad id!", "sha256": "Z" * 64, "size": 1}
        ),
        retain=False,
    )
    @example(payload=b"[" * 100_000, retain=True)  # deeper than any parser's recursion
    def junk_then_a_valid_command(payload: bytes, retain: bool) -> None:
        sender.send(payload, retain=retain)
        _still_handles(sender, rec)

    junk_then_a_valid_command()
    assert _agent.rejected > 0


def test_a_retained_junk_command_waiting_at_subscribe_does_not_stop_a_new_agent(
    tmp_path: Path, mosquitto: Broker
) -> None:
    keys = generate_keypair(tmp_path / "keys")
    sender = Sender(mosquitto.port, load_private_key(keys[0]))
    rec = Recorder(mosquitto.port, REPORTS)
    for at in ("0001-01-01T00:00:00+14:00", "9999-12-31T23:00:00-05:00"):
        sender.send(_command(at), retain=True)
        up = Updater(
            tmp_path / "device",
            load_public_key(keys[1]),
            TARGET,
            OnnxHealthCheck(),
            fleet_host="127.0.0.1",
        )
        fresh = UpdateAgent(up, SITE, DEVICE, port=mosquitto.port)
        fresh.start()

        def rejected_once(agent: UpdateAgent = fresh) -> bool:
            return agent.rejected == 1

        try:
            assert wait_until(rejected_once, 30)
            _still_handles(sender, rec)
        finally:
            fresh.stop()
    sender.send(b"", retain=True)
    sender.close()
    rec.close()


# --------------------------------------------------------------------------- with the fleet


def test_an_older_bundle_fails_its_rollout_with_the_reason_a_signed_rollback_goes_through(
    tmp_path: Path, mosquitto: Broker
) -> None:
    keys = generate_keypair(tmp_path / "keys")
    pub = load_public_key(keys[1])
    tokens = tmp_path / "tokens.json"
    token = add_token(tokens, "d", "device")
    link = RolloutMqttLink("127.0.0.1", mosquitto.port, username=None, password=None)
    link.start()
    base: dict[str, str] = {}
    service = RolloutService(
        tmp_path / "fleet",
        load_private_key(keys[0]),
        publish=link.publish,
        devices=lambda: [f"{SITE}/{DEVICE}"],
        bundle_url=lambda sha: f"{base['url']}/bundles/{sha}",
    )
    link.attach(service)
    up = Updater(
        tmp_path / "device", pub, TARGET, OnnxHealthCheck(), token=token, fleet_host="127.0.0.1"
    )
    v3 = up.install_first(make_bundle(tmp_path, keys[0], "det-v3", version="3"))
    agent = UpdateAgent(up, SITE, DEVICE, port=mosquitto.port)
    try:
        with serve(create_rollout_app(service, TokenStore.load(tokens))) as url:
            base["url"] = url
            agent.start()

            def settled(rollout: str) -> bool:
                return service.get(rollout).state in ("completed", "halted")

            old = service.add_bundle(make_bundle(tmp_path, keys[0], "det-v1", version="1"))
            r = service.create(old.sha256, "*", "100%")
            assert wait_until(lambda: settled(r.id), 60)
            progress = service.get(r.id).devices[f"{SITE}/{DEVICE}"]
            assert progress.state == "failed"
            assert progress.reason is not None
            assert "not newer than the installed version 3" in progress.reason
            assert up.current == v3

            back = service.add_bundle(
                make_bundle(tmp_path, keys[0], "det-v1r", version="1", rollback_of="3")
            )
            assert back.rollback_of == "3"
            r = service.create(back.sha256, "*", "100%")
            assert wait_until(lambda: settled(r.id), 60)
            assert service.get(r.id).state == "completed"
            assert up.current is not None and up.current.name == back.sha256
    finally:
        agent.stop()
        link.stop()


def test_the_agent_alone_downloads_only_from_the_broker_host(
    tmp_path: Path, mosquitto: Broker
) -> None:
    keys = generate_keypair(tmp_path / "keys")
    rec = Recorder(mosquitto.port, REPORTS)
    sender = Sender(mosquitto.port, load_private_key(keys[0]))
    login = broker_login(f"mqtt://127.0.0.1:{mosquitto.port}", site=SITE, device=DEVICE)
    options = UpdateOptions(tmp_path / "models", keys[1], "sim", fleet_token="secret-token")
    stop, ready = threading.Event(), threading.Event()
    thread = threading.Thread(
        target=run_agent, args=(login, SITE, DEVICE, options, stop), kwargs={"on_ready": ready.set}
    )
    thread.start()
    try:
        assert ready.wait(30)
        _still_handles(sender, rec)  # a command naming another host: refused, no request
    finally:
        stop.set()
        thread.join()
        sender.close()
        rec.close()


def test_update_agent_command_takes_the_bundle_size_limit(
    tmp_path: Path, mosquitto: Broker
) -> None:
    keys = generate_keypair(tmp_path / "keys")
    rec = Recorder(mosquitto.port, REPORTS)
    sender = Sender(mosquitto.port, load_private_key(keys[0]))
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "edgetally",
            "device",
            "update-agent",
            "--site",
            SITE,
            "--device-id",
            DEVICE,
            "--broker",
            f"mqtt://127.0.0.1:{mosquitto.port}",
            "--models-dir",
            str(tmp_path / "models"),
            "--fleet-pubkey",
            str(keys[1]),
            "--device-class",
            "sim",
            "--max-bundle-mb",
            "1",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        assert "listening for rollouts" in proc.stdout.readline()
        sha = secrets.token_hex(32)
        command = sign_command(
            sender.key,
            site=SITE,
            device=DEVICE,
            action="update",
            rollout="ro-big",
            bundle_sha256=sha,
            version="2",
            url=f"http://127.0.0.1:9/bundles/{sha}",
            size=2 << 20,
        )
        sender.send(to_json(command))
        assert wait_until(lambda: _report(rec, "ro-big") is not None, 60)
        report = _report(rec, "ro-big")
        assert report is not None and report.outcome == "failed"
        assert "over this device's limit of 1048576 bytes" in (report.reason or "")
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=60)
        sender.close()
        rec.close()
    assert proc.returncode == 0
