"""The signed command envelope: what the fleet signs, what a device accepts, and why it
refuses the rest (unsigned, another key, altered, mis-addressed, stale, from the future)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from edgetally.models.bundle import key_id
from edgetally.models.commands import (
    COMMAND_DOMAIN,
    DEFAULT_MAX_AGE_S,
    FUTURE_SKEW_S,
    CommandRefused,
    check_command,
    new_command_id,
    open_command,
    sign_command,
    signed_bytes,
)
from edgetally.models.errors import WireError
from edgetally.models.topics import topic_for
from edgetally.models.wire import MAX_PAYLOAD_BYTES, Command, parse, to_json
from hypothesis import given, settings
from hypothesis import strategies as st

FLEET = Ed25519PrivateKey.generate()
OTHER = Ed25519PrivateKey.generate()
PINNED = FLEET.public_key()
NOW = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)
SHA = "ab" * 32


def update(key: Ed25519PrivateKey = FLEET, **kw: Any) -> Command:
    args: dict[str, Any] = dict(
        site="shop1",
        device="cam1",
        action="update",
        rollout="ro-1",
        bundle_sha256=SHA,
        version="2",
        url=f"https://fleet.lan/bundles/{SHA}",
        size=4096,
        at=NOW,
    )
    args.update(kw)
    return sign_command(key, **args)


def rollback(key: Ed25519PrivateKey = FLEET, **kw: Any) -> Command:
    args: dict[str, Any] = dict(
        site="shop1",
        device="cam1",
        action="rollback",
        rollout="ro-1",
        bundle_sha256=SHA,
        version="2",
        at=NOW,
    )
    args.update(kw)
    return sign_command(key, **args)


def refusal(payload: bytes) -> CommandRefused:
    with pytest.raises(CommandRefused) as caught:
        open_command(payload, PINNED)
    return caught.value


def check(cmd: Command, **kw: Any) -> None:
    args: dict[str, Any] = dict(site="shop1", device="cam1", now=NOW)
    args.update(kw)
    check_command(cmd, **args)


# --------------------------------------------------------------------------- what is signed


def test_a_signed_command_opens_with_every_field_it_was_given() -> None:
    cmd = update()
    got = open_command(to_json(cmd), PINNED)
    assert got == cmd
    assert (got.site, got.device, got.action, got.rollout) == ("shop1", "cam1", "update", "ro-1")
    assert (got.bundle_sha256, got.version, got.size, got.rollback) == (SHA, "2", 4096, False)
    assert got.at == NOW and got.key_id == key_id(PINNED)
    assert got.v == 2 and got.kind == "cmd"
    # the wire's one road: parse() on the device's cmd topic takes it too
    assert parse(topic_for("shop1", "cam1", "cmd"), to_json(cmd), window=None) == cmd


def test_a_rollback_command_opens() -> None:
    cmd = rollback()
    assert open_command(to_json(cmd), PINNED) == cmd
    assert cmd.url is None and cmd.size is None


def test_every_command_gets_its_own_id() -> None:
    ids = {new_command_id() for _ in range(1000)} | {update().command_id for _ in range(100)}
    assert len(ids) == 1100
    assert all(len(i) == 32 and int(i, 16) >= 0 for i in ids)


def test_the_signature_covers_a_domain_string_then_canonical_json() -> None:
    cmd = update()
    data = signed_bytes(cmd)
    assert data.startswith(COMMAND_DOMAIN)
    body = json.loads(data[len(COMMAND_DOMAIN) :])
    assert "sig" not in body
    assert body == {k: v for k, v in json.loads(to_json(cmd)).items() if k != "sig"}
    PINNED.verify(bytes.fromhex(cmd.sig), data)  # raises if not
    # the same content however it is spelled (key order, blanks, offset): same signature
    spelled = json.loads(to_json(cmd))
    spelled["at"] = "2025-06-01T14:00:00+02:00"
    respelled = json.dumps(dict(reversed(list(spelled.items()))), indent=3).encode()
    assert open_command(respelled, PINNED) == cmd


def test_a_signature_without_the_domain_string_does_not_verify() -> None:
    """What the key signs for a bundle (a manifest's bytes) never passes for a command."""
    cmd = update()
    bare = FLEET.sign(signed_bytes(cmd)[len(COMMAND_DOMAIN) :]).hex()
    assert refusal(to_json(cmd.model_copy(update={"sig": bare}))).kind == "bad_signature"


# --------------------------------------------------------------------------- forgeries


def test_unsigned_commands_are_refused_as_unsigned() -> None:
    old_style = {
        "v": 1,
        "kind": "cmd",
        "site": "shop1",
        "device": "cam1",
        "command_id": "c1",
        "at": NOW.isoformat(),
        "action": "rollback",
        "params": {"rollout": "ro-1"},
    }
    no_sig = {k: v for k, v in json.loads(to_json(rollback())).items() if k != "sig"}
    empty_sig = json.loads(to_json(rollback())) | {"sig": ""}
    for data in (old_style, no_sig, empty_sig):
        got = refusal(json.dumps(data).encode())
        assert got.kind == "unsigned", data
        assert "unsigned command" in str(got)


def test_a_command_signed_with_another_key_is_refused() -> None:
    got = refusal(to_json(rollback(OTHER)))
    assert got.kind == "wrong_key"
    assert key_id(OTHER.public_key()) in str(got) and key_id(PINNED) in str(got)


def test_another_key_claiming_the_pinned_key_id_is_a_bad_signature() -> None:
    forged = rollback(OTHER).model_copy(update={"key_id": key_id(PINNED)})
    resigned = forged.model_copy(update={"sig": OTHER.sign(signed_bytes(forged)).hex()})
    got = refusal(to_json(resigned))
    assert got.kind == "bad_signature"
    assert "forged or altered" in str(got)


_ALTERED: dict[str, object] = {
    "site": "shop2",
    "device": "cam2",
    "command_id": "f" * 32,
    "action": "rollback",
    "rollout": "ro-2",
    "bundle_sha256": "cd" * 32,
    "version": "3",
    "url": "https://evil/x",
    "size": 4097,
    "rollback": True,
    "at": "2025-06-01T12:00:01Z",
}


@pytest.mark.parametrize("field", sorted(_ALTERED))
def test_any_field_changed_after_signing_breaks_the_signature(field: str) -> None:
    data = json.loads(to_json(update()))
    data[field] = _ALTERED[field]
    if field == "action":  # a rollback takes no url or size: keep it well formed
        data.pop("url")
        data.pop("size")
    assert refusal(json.dumps(data).encode()).kind == "bad_signature"


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=400) | st.text(max_size=200).map(str.encode))
def test_junk_is_malformed_or_unsigned_never_a_command(payload: bytes) -> None:
    assert refusal(payload).kind in ("malformed", "unsigned")


def test_a_payload_over_the_wire_limit_is_malformed() -> None:
    data = json.loads(to_json(update()))
    data["url"] = "x" * (MAX_PAYLOAD_BYTES + 1)
    got = refusal(json.dumps(data).encode())
    assert got.kind == "malformed" and "too large" in str(got)


def test_deep_nesting_is_refused_not_raised() -> None:
    assert refusal(b"[" * 100_000).kind == "malformed"
    assert refusal(b'{"a":' * 50_000).kind == "malformed"


def test_the_fields_of_each_action() -> None:
    with pytest.raises(WireError, match="needs url and size"):
        parse(
            topic_for("shop1", "cam1", "cmd"),
            json.dumps(
                {k: v for k, v in json.loads(to_json(update())).items() if k != "size"}
            ).encode(),
        )
    with pytest.raises(ValueError, match="takes no url, size or rollback flag"):
        rollback(url="https://fleet.lan/x")
    with pytest.raises(ValueError):
        update(action="reboot")


# --------------------------------------------------------------------------- address and age


def test_a_command_for_another_device_is_misaddressed() -> None:
    for site, device in (("shop1", "cam2"), ("shop2", "cam1")):
        with pytest.raises(CommandRefused) as caught:
            check(update(site=site, device=device))
        assert caught.value.kind == "misaddressed"
        assert f"addressed to {site}/{device}, not to this device shop1/cam1" in str(caught.value)


def test_a_command_is_valid_for_max_age_and_then_stale() -> None:
    cmd = update()
    check(cmd, now=NOW + timedelta(seconds=DEFAULT_MAX_AGE_S))
    with pytest.raises(CommandRefused) as caught:
        check(cmd, now=NOW + timedelta(seconds=DEFAULT_MAX_AGE_S + 1))
    assert caught.value.kind == "stale"
    assert "is stale: issued 2025-06-01T12:00:00Z, 601 s before" in str(caught.value)
    check(cmd, now=NOW + timedelta(seconds=50), max_age_s=60)
    with pytest.raises(CommandRefused, match="stays valid 30 s"):
        check(cmd, now=NOW + timedelta(seconds=31), max_age_s=30)


def test_a_little_clock_skew_is_allowed_not_more() -> None:
    cmd = update()
    check(cmd, now=NOW - timedelta(seconds=FUTURE_SKEW_S))
    with pytest.raises(CommandRefused) as caught:
        check(cmd, now=NOW - timedelta(seconds=FUTURE_SKEW_S + 1))
    assert caught.value.kind == "future"
    assert "61 s ahead of this device's clock" in str(caught.value)
    assert "is the clock right?" in str(caught.value)
