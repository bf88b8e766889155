"""Commands nobody but the fleet's key holder can make, and none obeyed twice: a real
Mosquitto, the fleet's rollout service and HTTP server, a real update agent on a device that
runs v2 with v1 before it. Forged rollbacks (unsigned, another key, for another device,
stale, from the future) leave v2 in place, from an anonymous client on a plain broker and
from the fleet's own broker account on a closed one; the fleet's genuine update, captured
and published again after the operator aborted its rollout, installs nothing (also after the
agent restarted, and once it is stale). The same genuine commands, fresh, do act: so what
stopped the forgeries is the check, not the path."""

from __future__ import annotations

import json
import logging
import secrets
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from edgetally.fleet.http.auth import TokenStore, add_token
from edgetally.fleet.http.rollout import create_rollout_app
from edgetally.fleet.rollout.mqtt import RolloutMqttLink
from edgetally.fleet.rollout.plan import BundleRef
from edgetally.fleet.rollout.service import RolloutService
from edgetally.models.bundle import generate_keypair, key_id, load_private_key, load_public_key
from edgetally.models.commands import sign_command, signed_bytes
from edgetally.models.topics import topic_for
from edgetally.models.wire import Command, to_json
from edgetally.runtime.updates.agent import SEEN_FILE, SeenCommands, UpdateAgent
from edgetally.runtime.updates.health import OnnxHealthCheck
from edgetally.runtime.updates.updater import Updater, UpdateRequest
from paho.mqtt.enums import CallbackAPIVersion

from tests.conftest import Broker
from tests.fleet.test_broker_support import connect, start_secure_broker
from tests.runtime.updates.updater_support import TARGET, make_bundle, serve
from tests.runtime.uplink.test_publisher import Recorder, wait_until

SITE, DEVICE = "s", "d"
ME = f"{SITE}/{DEVICE}"
CMD = topic_for(SITE, DEVICE, "cmd")
MINUTES_11 = timedelta(minutes=11)


@dataclass
class Rig:
    """The fleet (service, its MQTT link, its bundle server) and one device (updater and
    agent) on one broker; ``devices`` are those the fleet may select."""

    tmp: Path
    port: int
    key: Ed25519PrivateKey
    keys: tuple[Path, Path]
    service: RolloutService
    updater: Updater
    url: str
    devices: list[str] = field(default_factory=lambda: [ME])
    agents: list[UpdateAgent] = field(default_factory=list)

    def agent(self, clock_ahead: timedelta = timedelta(0), **login: Any) -> UpdateAgent:
        """A (new) agent on the device; ``clock_ahead``: its clock is that far ahead."""

        def clock() -> datetime:
            return datetime.now(UTC) + clock_ahead

        login = login or {"port": self.port}
        agent = UpdateAgent(self.updater, SITE, DEVICE, clock=clock, **login)
        agent.start()
        self.agents.append(agent)
        return agent

    def bundle(self, name: str, version: str, **kw: Any) -> BundleRef:
        return self.service.add_bundle(
            make_bundle(self.tmp, self.keys[0], name, version=version, **kw)
        )

    def running(self) -> str | None:
        current = self.updater.current
        return None if current is None else current.name

    def state(self, rollout: str) -> str:
        return self.service.get(rollout).devices[ME].state


@pytest.fixture
def rig(tmp_path: Path, mosquitto: Broker) -> Iterator[Rig]:
    keys = generate_keypair(tmp_path / "keys")
    key = load_private_key(keys[0])
    tokens = tmp_path / "tokens.json"
    token = add_token(tokens, ME, "device")
    link = RolloutMqttLink("127.0.0.1", mosquitto.port, username=None, password=None)
    link.start()
    holder: dict[str, Rig] = {}
    service = RolloutService(
        tmp_path / "fleet",
        key,
        publish=link.publish,
        devices=lambda: holder["rig"].devices,
        bundle_url=lambda sha: f"{holder['rig'].url}/bundles/{sha}",
    )
    link.attach(service)
    updater = Updater(
        tmp_path / "device",
        load_public_key(keys[1]),
        TARGET,
        OnnxHealthCheck(),
        token=token,
        fleet_host="127.0.0.1",
    )
    updater.install_first(make_bundle(tmp_path, keys[0], "v1", version="1"))
    try:
        with serve(create_rollout_app(service, TokenStore.load(tokens))) as url:
            rig = holder["rig"] = Rig(tmp_path, mosquitto.port, key, keys, service, updater, url)
            yield rig
    finally:
        for agent in holder["rig"].agents if "rig" in holder else []:
            agent.stop()
        link.stop()


class Publisher:
    """Anyone on the broker: publishes on the device's cmd topic (QoS 1, PUBACK awaited)."""

    def __init__(self, port: int) -> None:
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="anyone")
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()

    def send(self, payload: bytes) -> None:
        self.client.publish(CMD, payload, qos=1).wait_for_publish(10)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def _refused(agent: UpdateAgent, kind: str, *, before: int = 0) -> Callable[[], bool]:
    return lambda: agent.refusals[kind] > before


def _either(a: Callable[[], bool], b: Callable[[], bool]) -> Callable[[], bool]:
    return lambda: a() or b()


def _forge(key: Ed25519PrivateKey, *, claim: Ed25519PrivateKey | None = None, **kw: Any) -> bytes:
    """A command signed with ``key``; ``claim``: its key id says it is that key's."""
    cmd = sign_command(key, **kw)
    if claim is not None:
        cmd = cmd.model_copy(update={"key_id": key_id(claim.public_key())})
        cmd = cmd.model_copy(update={"sig": key.sign(signed_bytes(cmd)).hex()})
    return to_json(cmd)


def _unsigned(cmd: Command) -> bytes:
    return json.dumps({k: v for k, v in json.loads(to_json(cmd)).items() if k != "sig"}).encode()


def _old_style_rollback(rollout: str) -> bytes:
    """What the fleet sent before commands were signed (and a device then obeyed)."""
    return json.dumps(
        {
            "v": 1,
            "kind": "cmd",
            "site": SITE,
            "device": DEVICE,
            "command_id": "c1",
            "at": datetime.now(UTC).isoformat(),
            "action": "rollback",
            "params": {"rollout": rollout},
        }
    ).encode()


def _on_v2(rig: Rig) -> tuple[str, str, str]:
    """Roll v2 out to the device: (rollout id, v1's slot, v2's slot) once it runs v2."""
    v1 = rig.running()
    assert v1 is not None
    v2 = rig.bundle("v2", "2", scale=1.01)
    rollout = rig.service.create(v2.sha256, ME, "100%").id
    assert wait_until(lambda: rig.state(rollout) == "healthy", 60), rig.service.get(rollout)
    assert rig.running() == v2.sha256
    return rollout, v1, v2.sha256


# --------------------------------------------------------------------------- forged rollbacks


def test_forged_rollbacks_from_anyone_on_the_broker_leave_the_model_as_it_is(
    rig: Rig, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="edgetally.runtime.updates.agent")
    agent = rig.agent()
    rollout, v1, v2 = _on_v2(rig)
    other_key = Ed25519PrivateKey.generate()
    what: dict[str, Any] = dict(
        site=SITE, device=DEVICE, action="rollback", rollout=rollout, bundle_sha256=v2, version="2"
    )
    genuine = sign_command(rig.key, **what)
    newer = rig.bundle("v3", "3", scale=1.02)  # a genuine bundle, announced without the key
    update_v3 = sign_command(
        rig.key,
        site=SITE,
        device=DEVICE,
        action="update",
        rollout="ro-forged",
        bundle_sha256=newer.sha256,
        version="3",
        url=f"{rig.url}/bundles/{newer.sha256}",
        size=newer.size,
    )
    now = datetime.now(UTC)
    forgeries = [
        ("unsigned", _old_style_rollback(rollout)),
        ("unsigned", _unsigned(genuine)),
        ("unsigned", _unsigned(update_v3)),
        ("wrong_key", _forge(other_key, **what)),
        ("bad_signature", _forge(other_key, claim=rig.key, **what)),
        ("bad_signature", to_json(genuine.model_copy(update={"command_id": "e" * 32}))),
        ("misaddressed", _forge(rig.key, **(what | {"device": "other"}))),
        ("stale", _forge(rig.key, at=now - MINUTES_11, **what)),
        ("future", _forge(rig.key, at=now + timedelta(minutes=5), **what)),
    ]
    anyone = Publisher(rig.port)
    try:
        for kind, payload in forgeries:
            refused = _refused(agent, kind, before=agent.refusals[kind])
            anyone.send(payload)
            wait_until(_either(refused, lambda: rig.running() != v2), 30)
            assert rig.running() == v2, f"a forged command ({kind}) rolled the device back"
            assert refused(), (kind, agent.refusals)
        lines = [r.getMessage() for r in caplog.records if "command refused" in r.getMessage()]
        assert len(lines) == len(forgeries)
        assert [line.split(")")[0] for line in lines] == [
            f"command refused ({kind}" for kind, _ in forgeries
        ]
        assert rig.state(rollout) == "healthy"  # no report moved the rollout either

        # The fleet's own command, fresh and signed, is obeyed through the same path.
        anyone.send(to_json(genuine))
        assert wait_until(lambda: rig.running() == v1, 30)
        assert wait_until(lambda: rig.state(rollout) == "rolled_back", 30)
    finally:
        anyone.close()


def test_the_fleet_account_without_the_signing_key_cannot_roll_a_device_back(
    tmp_path: Path,
) -> None:
    """A closed broker (TLS, accounts, ACL): the fleet's broker password lets one publish on
    the device's cmd topic, not sign what the device obeys."""
    sb = start_secure_broker(tmp_path, ME)
    keys = generate_keypair(tmp_path / "keys")
    key = load_private_key(keys[0])
    tokens = tmp_path / "tokens.json"
    token = add_token(tokens, ME, "device")
    service = RolloutService(
        tmp_path / "fleet",
        key,
        publish=lambda _t, _p: None,
        devices=lambda: [ME],
        bundle_url=lambda sha: sha,
    )
    updater = Updater(
        tmp_path / "device",
        load_public_key(keys[1]),
        TARGET,
        OnnxHealthCheck(),
        token=token,
        fleet_host="127.0.0.1",
    )
    v1 = updater.install_first(make_bundle(tmp_path, keys[0], "v1", version="1")).name
    v2 = service.add_bundle(make_bundle(tmp_path, keys[0], "v2", version="2", scale=1.01))
    agent: UpdateAgent | None = None
    fleet_account = None

    def running() -> str | None:
        return None if updater.current is None else updater.current.name

    try:
        with serve(create_rollout_app(service, TokenStore.load(tokens))) as url:
            done = updater.apply(
                UpdateRequest("ro-1", f"{url}/bundles/{v2.sha256}", v2.sha256, v2.size)
            )
            assert done.ok, done.reason
        agent = UpdateAgent(
            updater,
            SITE,
            DEVICE,
            port=sb.port,
            password=sb.cfg.device_passwords[ME],
            ca_cert=sb.cfg.ca_cert,
        )
        agent.start()
        user, password = sb.creds(sb.cfg.fleet_user)
        fleet_account = connect(sb, user, password, client_id=user)
        what: dict[str, Any] = dict(
            site=SITE,
            device=DEVICE,
            action="rollback",
            rollout="ro-1",
            bundle_sha256=v2.sha256,
            version="2",
        )
        genuine = sign_command(key, **what)
        for kind, payload in [
            ("unsigned", _old_style_rollback("ro-1")),
            ("unsigned", _unsigned(genuine)),
            ("wrong_key", _forge(Ed25519PrivateKey.generate(), **what)),
        ]:
            refused = _refused(agent, kind, before=agent.refusals[kind])
            fleet_account.client.publish(CMD, payload, qos=1).wait_for_publish(10)
            wait_until(_either(refused, lambda: running() != v2.sha256), 30)
            assert running() == v2.sha256, f"a forged command ({kind}) rolled it back"
            assert refused(), (kind, agent.refusals)
        fleet_account.client.publish(CMD, to_json(genuine), qos=1).wait_for_publish(10)
        assert wait_until(lambda: running() == v1, 30)
    finally:
        if fleet_account is not None:
            fleet_account.close()
        if agent is not None:
            agent.stop()
        sb.broker.stop()


# --------------------------------------------------------------------------- replays


def test_the_fleets_own_update_captured_and_replayed_after_an_abort_installs_nothing(
    rig: Rig,
) -> None:
    rig.devices = [ME, f"{SITE}/silent"]  # a device that never reports keeps it running
    capture = Recorder(rig.port, CMD)
    anyone = Publisher(rig.port)
    agent = rig.agent()
    try:
        v1 = rig.running()
        v2 = rig.bundle("v2", "2", scale=1.01)
        rollout = rig.service.create(v2.sha256, "*", "100%").id
        assert wait_until(lambda: rig.state(rollout) == "healthy", 60)
        assert rig.running() == v2.sha256 and rig.service.get(rollout).state == "running"
        rig.service.abort(rollout)
        assert wait_until(lambda: rig.state(rollout) == "rolled_back", 30)
        assert rig.running() == v1
        update, rollback = capture.payloads("/cmd")
        assert json.loads(update)["action"] == "update"
        assert json.loads(rollback)["action"] == "rollback"

        anyone.send(update)  # within the max age: its id was taken before
        wait_until(lambda: agent.refusals["replayed"] > 0 or rig.running() != v1, 30)
        assert rig.running() == v1, "the replayed update installed v2 again"
        assert agent.refusals["replayed"] == 1, agent.refusals

        agent.stop()  # the ids outlive the agent (the file beside the slots)
        rig.agents.remove(agent)
        restarted = rig.agent()
        assert (rig.updater.root / SEEN_FILE).is_file()
        anyone.send(update)
        wait_until(lambda: restarted.refusals["replayed"] > 0 or rig.running() != v1, 30)
        assert rig.running() == v1, "after a restart, the replayed update installed v2 again"
        assert restarted.refusals["replayed"] == 1, restarted.refusals

        restarted.stop()  # later on: past the max age, refused for its age alone
        rig.agents.remove(restarted)
        (rig.updater.root / SEEN_FILE).unlink()
        later = rig.agent(clock_ahead=MINUTES_11)
        anyone.send(update)
        wait_until(lambda: later.refusals["stale"] == 1 or rig.running() != v1, 30)
        assert rig.running() == v1, "the stale update installed v2 again"
        anyone.send(rollback)
        assert wait_until(lambda: later.refusals["stale"] == 2, 30), later.refusals
        assert rig.state(rollout) == "rolled_back"
        assert rig.service.get(rollout).state == "aborted"
    finally:
        anyone.close()
        capture.close()


def test_a_fresh_genuine_command_the_device_never_saw_is_obeyed_once(rig: Rig) -> None:
    """The replay check is the id: the same update under a new id is taken, its copy not."""
    agent = rig.agent()
    v2 = rig.bundle("v2", "2", scale=1.01)
    cmd = sign_command(
        rig.key,
        site=SITE,
        device=DEVICE,
        action="update",
        rollout="ro-x",
        bundle_sha256=v2.sha256,
        version="2",
        url=f"{rig.url}/bundles/{v2.sha256}",
        size=v2.size,
    )
    anyone = Publisher(rig.port)
    try:
        anyone.send(to_json(cmd))
        assert wait_until(lambda: rig.running() == v2.sha256, 60)
        assert cmd.command_id in agent.seen
        anyone.send(to_json(cmd))
        assert wait_until(_refused(agent, "replayed"), 30)
    finally:
        anyone.close()


# --------------------------------------------------------------------------- the id memory


def _cmd(at: datetime, command_id: str | None = None) -> Command:
    return sign_command(
        Ed25519PrivateKey.generate(),
        site=SITE,
        device=DEVICE,
        action="rollback",
        rollout="ro-1",
        bundle_sha256="ab" * 32,
        version="2",
        at=at,
        command_id=command_id or secrets.token_hex(16),
    )


def test_seen_ids_persist_and_go_once_they_are_too_old_to_pass_anyway(tmp_path: Path) -> None:
    from edgetally.models.commands import CommandRefused

    path = tmp_path / SEEN_FILE
    t0 = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)
    seen = SeenCommands(path, 660.0, t0)
    first = _cmd(t0)
    seen.remember(first, t0)
    with pytest.raises(CommandRefused, match="taken before on this device") as caught:
        seen.remember(first, t0 + timedelta(seconds=1))
    assert caught.value.kind == "replayed"
    again = SeenCommands(path, 660.0, t0)  # a restart reads them back
    with pytest.raises(CommandRefused):
        again.remember(first, t0 + timedelta(seconds=2))
    later = t0 + timedelta(seconds=661)
    again.remember(_cmd(later), later)
    assert first.command_id not in again
    assert first.command_id not in json.loads(path.read_text())["ids"]


def test_a_damaged_id_file_refuses_what_was_issued_before_it_was_read(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from edgetally.models.commands import CommandRefused

    path = tmp_path / SEEN_FILE
    path.write_text("{not json")
    t0 = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)
    seen = SeenCommands(path, 660.0, t0)
    assert "cannot be read" in caplog.text and "2025-06-01T12:00:00Z are refused" in caplog.text
    with pytest.raises(CommandRefused, match="may be a replay") as caught:
        seen.remember(_cmd(t0 - timedelta(seconds=5)), t0)
    assert caught.value.kind == "replayed"
    seen.remember(_cmd(t0 + timedelta(seconds=1)), t0 + timedelta(seconds=2))
    assert len(json.loads(path.read_text())["ids"]) == 1


def test_the_device_config_takes_a_max_command_age(tmp_path: Path) -> None:
    from edgetally.models.commands import DEFAULT_MAX_AGE_S
    from edgetally.runtime.config import UpdatesConfig

    base = {"models_dir": tmp_path, "fleet_pubkey": tmp_path / "k.pub", "device_class": "sim"}
    assert UpdatesConfig.model_validate(base).max_command_age_s == DEFAULT_MAX_AGE_S
    assert UpdatesConfig.model_validate(base | {"max_command_age_s": 120}).max_command_age_s == 120
    with pytest.raises(ValueError, match="max_command_age_s"):
        UpdatesConfig.model_validate(base | {"max_command_age_s": 0})
