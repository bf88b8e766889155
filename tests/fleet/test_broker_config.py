"""The generated Mosquitto configuration, enforced by a real Mosquitto over TLS."""

from __future__ import annotations

import base64
import hashlib
import json
import ssl
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from edgetally.fleet.broker_config import (
    MESSAGE_SIZE_LIMIT,
    BrokerConfigError,
    generate_broker_config,
    mosquitto_password_hash,
    parse_devices,
)
from edgetally.models.wire import MAX_PAYLOAD_BYTES

from tests.fleet.test_broker_support import (
    Client,
    SecureBroker,
    connect,
    publish,
    start_secure_broker,
    subscribe,
)

pytestmark = pytest.mark.slow


@pytest.fixture
def secure_broker(tmp_path: Path) -> Iterator[SecureBroker]:
    sb = start_secure_broker(tmp_path, "shop1/a,shop1/b,shop2/c")
    try:
        yield sb
    finally:
        sb.broker.stop()


def _wait_for(c: Client, topic: str, payload: bytes) -> list[tuple[str, bytes]]:
    seen = []
    while True:
        item = c.received.get(timeout=30)
        seen.append(item)
        if item == (topic, payload):
            return seen


def test_anonymous_and_wrong_password_are_refused(secure_broker: SecureBroker) -> None:
    anon = connect(secure_broker, None, None)
    assert anon.rc != 0 and not anon.client.is_connected()
    anon.close()
    bad = connect(secure_broker, "shop1/a", "not-the-password")
    assert bad.rc != 0 and not bad.client.is_connected()
    bad.close()
    # A's password is not B's.
    swapped = connect(secure_broker, "shop1/b", secure_broker.creds("shop1/a")[1])
    assert swapped.rc != 0
    swapped.close()
    ok = connect(secure_broker, *secure_broker.creds("shop1/a"))
    assert ok.rc == 0
    ok.close()


def test_device_cannot_publish_as_another(secure_broker: SecureBroker) -> None:
    fleet = connect(secure_broker, *secure_broker.creds("fleet"))
    subscribe(fleet, "edgetally/v1/#")
    a = connect(secure_broker, *secure_broker.creds("shop1/a"))
    publish(a, "edgetally/v1/shop1/b/agg", b"forged")
    publish(a, "edgetally/v1/shop2/c/status", b"forged")
    publish(a, "elsewhere/topic", b"forged")
    publish(a, "edgetally/v1/shop1/a/cmd", b"self-command")  # its own cmd topic is read-only
    publish(a, "edgetally/v1/shop1/a/agg", b"genuine")
    seen = _wait_for(fleet, "edgetally/v1/shop1/a/agg", b"genuine")
    assert seen == [("edgetally/v1/shop1/a/agg", b"genuine")]
    a.close()
    fleet.close()


def test_device_cannot_read_another_devices_commands(secure_broker: SecureBroker) -> None:
    a = connect(secure_broker, *secure_broker.creds("shop1/a"))
    subscribe(a, "edgetally/v1/shop1/b/cmd")
    subscribe(a, "edgetally/v1/+/+/cmd")
    subscribe(a, "edgetally/v1/shop1/b/agg")
    subscribe(a, "edgetally/v1/shop1/a/cmd")
    b = connect(secure_broker, *secure_broker.creds("shop1/b"))
    subscribe(b, "edgetally/v1/shop1/b/cmd")
    fleet = connect(secure_broker, *secure_broker.creds("fleet"))
    publish(fleet, "edgetally/v1/shop1/b/cmd", b"for-b")
    publish(b, "edgetally/v1/shop1/b/agg", b"b-agg")
    publish(fleet, "edgetally/v1/shop1/a/cmd", b"for-a")
    # B gets its command; A gets only its own (once per matching subscription).
    assert _wait_for(b, "edgetally/v1/shop1/b/cmd", b"for-b")
    seen = _wait_for(a, "edgetally/v1/shop1/a/cmd", b"for-a")
    assert all(payload == b"for-a" for _, payload in seen)
    for c in (a, b, fleet):
        c.close()


def test_the_broker_drops_a_publish_over_the_size_limit(secure_broker: SecureBroker) -> None:
    assert MAX_PAYLOAD_BYTES < MESSAGE_SIZE_LIMIT <= 64 * 1024
    fleet = connect(secure_broker, *secure_broker.creds("fleet"))
    subscribe(fleet, "edgetally/v1/#")
    a = connect(secure_broker, *secure_broker.creds("shop1/a"))
    topic = "edgetally/v1/shop1/a/agg"
    largest = b"x" * MESSAGE_SIZE_LIMIT  # too large for the wire: the fleet dead-letters it
    publish(a, topic, largest)
    publish(a, topic, b"y" * (MESSAGE_SIZE_LIMIT + 1))
    publish(a, topic, b"z" * (16 * 1024 * 1024))
    publish(a, topic, b"genuine")
    seen = _wait_for(fleet, topic, b"genuine")
    assert [len(payload) for _, payload in seen] == [MESSAGE_SIZE_LIMIT, len(b"genuine")]
    assert a.client.is_connected()  # dropped, not disconnected: its next message gets through
    a.close()
    fleet.close()


def test_passwords_stay_out_of_the_config_repr(tmp_path: Path) -> None:
    cfg = generate_broker_config(tmp_path / "b", parse_devices("s/d1"), port=8883)
    text = repr(cfg)
    assert cfg.fleet_password not in text
    assert all(p not in text for p in cfg.device_passwords.values())
    assert f"message_size_limit {MESSAGE_SIZE_LIMIT}\n" in cfg.config.read_text()


def test_tls_is_required_and_checked(secure_broker: SecureBroker, tmp_path: Path) -> None:
    other = generate_broker_config(tmp_path / "other", parse_devices("x/y"), port=1)
    with pytest.raises(ssl.SSLCertVerificationError):
        connect(secure_broker, *secure_broker.creds("shop1/a"), ca=other.ca_cert)


def test_password_hash_matches_mosquitto_format(tmp_path: Path) -> None:
    salt = b"0123456789ab"
    h = mosquitto_password_hash("secret", salt=salt)
    _, seven, iters, salt_b64, hash_b64 = h.split("$")
    assert (seven, iters) == ("7", "101")
    assert base64.b64decode(salt_b64) == salt
    assert base64.b64decode(hash_b64) == hashlib.pbkdf2_hmac("sha512", b"secret", salt, 101)
    # mosquitto_passwd writes the same shape
    pw = tmp_path / "pw"
    r = subprocess.run(
        ["mosquitto_passwd", "-b", "-c", str(pw), "u", "secret"], capture_output=True, check=False
    )
    if r.returncode == 0:
        assert pw.read_text().split(":", 1)[1].startswith("$7$101$")


def test_generated_files(tmp_path: Path) -> None:
    cfg = generate_broker_config(tmp_path / "b", parse_devices("s/d1, s/d2"), port=8883)
    for name in ("ca.key", "server.key", "passwords", "credentials.json"):
        assert (cfg.directory / name).stat().st_mode & 0o077 == 0, name
    acl = (cfg.directory / "acl").read_text()
    assert "user s/d1\ntopic write edgetally/v1/s/d1/agg\n" in acl
    assert "topic read edgetally/v1/s/d1/cmd\n" in acl
    assert "edgetally/v1/s/d1/cmd" not in acl.replace("topic read edgetally/v1/s/d1/cmd", "")
    # The update agent's account reads the cmd topic and writes update reports, no more.
    assert (
        "user s/d1/updater\ntopic read edgetally/v1/s/d1/cmd\n"
        "topic write edgetally/v1/s/d1/update\n\n"
    ) in acl
    # One account per fleet connection, one password for them all.
    assert cfg.fleet_accounts == (
        "fleet",
        "fleet-status",
        "fleet-rollouts",
        *(f"fleet-{i}" for i in range(8)),
    )
    users = [line.split(":")[0] for line in (cfg.directory / "passwords").read_text().split()]
    assert users == [*cfg.fleet_accounts, "s/d1", "s/d1/updater", "s/d2", "s/d2/updater"]
    creds = json.loads((cfg.directory / "credentials.json").read_text())
    assert creds["fleet"]["accounts"] == list(cfg.fleet_accounts)
    assert all(f"user {u}\ntopic readwrite edgetally/v1/#\n" in acl for u in cfg.fleet_accounts)
    conf = cfg.config.read_text()
    assert "allow_anonymous false" in conf and "listener 8883 0.0.0.0" in conf
    # A client's id is its user name: on the listener (a listener's option; given before
    # it, Mosquitto would open a second listener on 1883 for it).
    assert conf.index("use_username_as_clientid true\n") > conf.index("listener 8883")
    # Persistence on: the fleet's session and what is queued for it survive a restart.
    data = cfg.directory / "data"
    assert "persistence true\n" in conf and f"persistence_location {data}/\n" in conf
    assert data.is_dir() and data.stat().st_mode & 0o077 == 0


def test_fleet_accounts_per_host_and_worker_slot(tmp_path: Path) -> None:
    cfg = generate_broker_config(
        tmp_path / "b", parse_devices("s/d"), fleet_users=["fleet", "fleet-b"], fleet_workers=2
    )
    assert cfg.fleet_accounts == (
        "fleet",
        "fleet-status",
        "fleet-rollouts",
        "fleet-0",
        "fleet-1",
        "fleet-b",
        "fleet-b-status",
        "fleet-b-rollouts",
        "fleet-b-0",
        "fleet-b-1",
    )
    for bad in (-1, 257):
        with pytest.raises(BrokerConfigError, match="--fleet-workers"):
            generate_broker_config(tmp_path / "c", parse_devices("s/d"), fleet_workers=bad)
    for users, why in [
        ([], "--fleet-users is empty"),
        (["fleet", "fleet-1"], "its account fleet-1 is another fleet user's"),
        (["fleet", "fleet"], "its account fleet is another fleet user's"),
        (["a/b"], "invalid fleet user id"),
        (["a:b"], "cannot hold ':'"),
    ]:
        with pytest.raises(BrokerConfigError, match=why):
            generate_broker_config(tmp_path / "c", parse_devices("s/d"), fleet_users=users)


@pytest.mark.parametrize(
    "devices", ["", "shop1", "shop1/a/b", "shop 1/a", "s/+", "s/#", "s/a,s/a", "s/ä", "s/a:b"]
)
def test_bad_device_lists(devices: str) -> None:
    with pytest.raises(BrokerConfigError):
        parse_devices(devices)
