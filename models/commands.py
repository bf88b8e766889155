"""Signed commands: what makes a :class:`~edgetally.models.wire.Command` one a device obeys.

The fleet signs every command with its bundle signing key (the Ed25519 key of
``edgetally bundle keygen``, whose public half every device pins already); a device checks
it with that pinned key. A broker password (the fleet's account, a device's, or none on a
plain broker) lets one publish on a ``cmd`` topic but never sign, so a command from anyone
but the key's holder is refused.

The signature covers :data:`COMMAND_DOMAIN` and the command's every field but ``sig`` as
canonical JSON (sorted keys, no blanks): who it is for, what it is, when it was issued and
its id. The domain string keeps a command's signature from ever passing for a bundle's
(a manifest is JSON, so it never starts with it) and the other way round.

What the device checks, in this order (each refusal a :class:`CommandRefused` whose
``kind`` names the check):

- :func:`open_command`: it parses (``malformed``), it is signed (``unsigned``), by the
  pinned key (``wrong_key``), and the signature holds (``bad_signature``);
- :func:`check_command`: it is for this device (``misaddressed``), not issued more than
  ``max_age_s`` ago (``stale``) nor more than ``future_s`` ahead of the device's clock
  (``future``);
- the device itself remembers the ids it has seen and refuses one again (``replayed``).
"""

from __future__ import annotations

import json
import secrets
from datetime import UTC, datetime, timedelta
from typing import Final, Literal

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from edgetally.models.bundle import key_id
from edgetally.models.errors import ModelsError, WireError
from edgetally.models.topics import DeviceId, SiteId
from edgetally.models.wire import Command, CommandAction, CommandId, from_json

COMMAND_DOMAIN: Final = b"edgetally signed command v2\n"
DEFAULT_MAX_AGE_S: Final = 600.0  # a command older than this is refused as stale
FUTURE_SKEW_S: Final = 60.0  # how far ahead of the device's clock a command may be issued
_PLACEHOLDER_SIG: Final = "0" * 128

RefusalKind = Literal[
    "malformed",
    "unsigned",
    "wrong_key",
    "bad_signature",
    "misaddressed",
    "stale",
    "future",
    "replayed",
]


class CommandRefused(ModelsError):
    """A command a device must not obey; ``kind`` names the check it failed, the message
    says why in one line."""

    def __init__(self, kind: RefusalKind, message: str) -> None:
        super().__init__(message)
        self.kind: RefusalKind = kind


def signed_bytes(command: Command) -> bytes:
    """What the signature covers: the domain string, then every field but ``sig`` as
    canonical JSON."""
    fields = command.model_dump(mode="json", exclude={"sig"})
    body = json.dumps(fields, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return COMMAND_DOMAIN + body.encode()


def new_command_id() -> CommandId:
    """128 random bits as hex: never the same twice."""
    return CommandId(secrets.token_hex(16))


def sign_command(
    private_key: Ed25519PrivateKey,
    *,
    site: str,
    device: str,
    action: CommandAction,
    rollout: str,
    bundle_sha256: str,
    version: str,
    url: str | None = None,
    size: int | None = None,
    rollback: bool = False,
    at: datetime | None = None,
    command_id: str | None = None,
) -> Command:
    """A new command for ``site/device``, issued ``at`` (now) with a fresh id, signed."""
    unsigned = Command(
        site=SiteId(site),
        device=DeviceId(device),
        command_id=CommandId(command_id or new_command_id()),
        at=at or datetime.now(UTC),
        action=action,
        rollout=CommandId(rollout),
        bundle_sha256=bundle_sha256,
        version=version,
        url=url,
        size=size,
        rollback=rollback,
        key_id=key_id(private_key.public_key()),
        sig=_PLACEHOLDER_SIG,
    )
    return unsigned.model_copy(update={"sig": private_key.sign(signed_bytes(unsigned)).hex()})


def open_command(payload: bytes, public_key: Ed25519PublicKey) -> Command:
    """The command in ``payload`` if it parses and its signature holds with the pinned
    ``public_key``; else :class:`CommandRefused` (malformed, unsigned, wrong_key,
    bad_signature)."""
    try:
        command = from_json(Command, payload)
    except WireError as exc:
        if _unsigned(payload):
            raise CommandRefused(
                "unsigned",
                "unsigned command (no sig): the fleet signs every command with its bundle "
                "key, an unsigned one is never obeyed",
            ) from None
        raise CommandRefused("malformed", str(exc)) from None
    pinned = key_id(public_key)
    if command.key_id != pinned:
        raise CommandRefused(
            "wrong_key",
            f"command {command.command_id} is signed with key {command.key_id}, not the "
            f"pinned fleet key {pinned}",
        )
    try:
        public_key.verify(bytes.fromhex(command.sig), signed_bytes(command))
    except InvalidSignature:
        raise CommandRefused(
            "bad_signature",
            f"command {command.command_id}: the signature does not verify with the pinned "
            f"fleet key {pinned}: forged or altered",
        ) from None
    return command


def check_command(
    command: Command,
    *,
    site: str,
    device: str,
    now: datetime,
    max_age_s: float = DEFAULT_MAX_AGE_S,
    future_s: float = FUTURE_SKEW_S,
) -> None:
    """Whether a signed ``command`` is for ``site/device`` and fresh at ``now`` (issued at
    most ``max_age_s`` before it and at most ``future_s`` after it); else
    :class:`CommandRefused` (misaddressed, stale, future)."""
    if (command.site, command.device) != (site, device):
        raise CommandRefused(
            "misaddressed",
            f"command {command.command_id} is addressed to {command.site}/{command.device}, "
            f"not to this device {site}/{device}",
        )
    issued = command.at
    if issued > now + timedelta(seconds=future_s):
        ahead = (issued - now).total_seconds()
        raise CommandRefused(
            "future",
            f"command {command.command_id} is issued {_iso(issued)}, {ahead:.0f} s ahead of "
            f"this device's clock ({_iso(now)}; at most {future_s:g} s allowed): is the "
            "clock right?",
        )
    if issued < now - timedelta(seconds=max_age_s):
        age = (now - issued).total_seconds()
        raise CommandRefused(
            "stale",
            f"command {command.command_id} is stale: issued {_iso(issued)}, {age:.0f} s "
            f"before this device's clock ({_iso(now)}; a command stays valid {max_age_s:g} s)",
        )


def _iso(at: datetime) -> str:
    return at.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def _unsigned(payload: bytes) -> bool:
    """Whether ``payload`` is a JSON object without a signature (an old or forged command)."""
    try:
        data = json.loads(payload)
    except Exception:  # not JSON, or nested deeper than the parser goes
        return False
    return isinstance(data, dict) and not data.get("sig")
