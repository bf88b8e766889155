"""A Mosquitto configuration for a fleet that lets no one in unasked.

``generate_broker_config`` writes into one directory:

- ``ca.crt`` / ``ca.key``: a demo certificate authority (ECDSA P-256), ``server.crt`` /
  ``server.key`` signed by it for the broker's host names;
- ``passwords``: one password per device, for two accounts (``site/device``, its counting
  side, and ``site/device/updater``, its update agent), and one for the fleet's service
  accounts (:func:`fleet_usernames`), in the PBKDF2 SHA-512 format Mosquitto 2 reads
  (``$7$iterations$salt$hash``, as ``mosquitto_passwd`` writes it);
- ``acl``: a device (user ``site/device``) may publish only under
  ``edgetally/v1/{site}/{device}/{kind}`` (never on its own ``cmd`` topic) and read only that
  ``cmd`` topic; its updater account reads that ``cmd`` topic and writes its ``update`` topic;
  the fleet's service accounts read and write everything under ``edgetally/v1/``;
- ``mosquitto.conf``: a TLS listener, anonymous clients refused, every client's id made its
  user name (``use_username_as_clientid``: a login can take no other client's id, so it can
  neither disconnect that client nor take over its session), publishes larger than
  :data:`MESSAGE_SIZE_LIMIT` dropped by the broker itself;
- ``credentials.json`` (mode 0600): the generated passwords, to provision devices with.

One account per connection: since the client id is the user name, two connections of one
account would throw each other off. So each fleet connection has its own account, named
after the broker URL's user (:func:`service_login`): ``fleet`` for the single ingest,
``fleet-status`` and ``fleet-rollouts`` for the api process's device statuses and rollouts,
``fleet-0`` ... for the ingest workers' slots (``fleet_workers`` of them); a worker slot
restarted logs in under the same name and takes back its persistent session. A second
fleet host (more ingest workers, another api process) logs in as a user of its own, with
a set of accounts of its own (``fleet_users``).
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import ipaddress
import json
import os
import secrets
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from edgetally.fleet.addresses import BrokerAddress
from edgetally.fleet.errors import FleetError
from edgetally.models.errors import WireError
from edgetally.models.topics import TOPIC_KINDS, TOPIC_PREFIX, check_id
from edgetally.models.wire import MAX_PAYLOAD_BYTES

FLEET_USER = "fleet"
# The fleet's connection roles besides the single ingest (its user is the URL's) and the
# ingest workers (their slot numbers): each logs in as USER-ROLE with client id ID-ROLE.
STATUS_ROLE = "status"
ROLLOUTS_ROLE = "rollouts"
DEFAULT_FLEET_WORKERS = 8  # worker accounts fleet-0 ... fleet-7
MAX_FLEET_WORKERS = 256
UPDATER = "updater"  # a device's update agent logs in as site/device/updater
PBKDF2_ITERATIONS = 101  # mosquitto_passwd's default for $7$
CERT_DAYS = 825
# The broker drops a publish whose payload is larger than this (the fleet would refuse one
# over MAX_PAYLOAD_BYTES anyway, as a dead letter): a device cannot make the broker hold and
# forward megabytes. The margin over the wire's limit lets the fleet still see, and record
# as dead letters, messages that are a little too large.
MESSAGE_SIZE_LIMIT = 4 * MAX_PAYLOAD_BYTES
# What a device publishes: every wire kind but ``cmd`` (fleet -> device), plus the update
# reports of rollouts. (Mosquitto's ``deny`` would block reading too, so kinds are listed.)
DEVICE_PUBLISH_KINDS: tuple[str, ...] = tuple(k for k in TOPIC_KINDS if k != "cmd")


class BrokerConfigError(FleetError):
    """The broker configuration cannot be generated (bad device list, unwritable directory)."""


@dataclass(frozen=True, slots=True)
class DeviceRef:
    site: str
    device: str

    @property
    def username(self) -> str:
        return f"{self.site}/{self.device}"

    @property
    def updater_username(self) -> str:
        """The account of the device's update agent (same password as the device's)."""
        return f"{self.username}/{UPDATER}"

    @classmethod
    def parse(cls, text: str) -> DeviceRef:
        parts = text.strip().split("/")
        if len(parts) != 2:
            raise BrokerConfigError(f"device {text!r} must look like site/device")
        try:
            ref = cls(check_id(parts[0], "site"), check_id(parts[1], "device"))
        except WireError as exc:
            raise BrokerConfigError(f"device {text!r}: {exc}") from None
        if ":" in ref.username:  # Mosquitto's password file ends a user name at the first ":"
            raise BrokerConfigError(f"device {text!r}: a broker login cannot hold ':'")
        return ref


@dataclass(frozen=True, slots=True)
class BrokerConfig:
    """Where everything was written, and the passwords (to provision devices with)."""

    directory: Path
    config: Path
    ca_cert: Path
    port: int
    fleet_user: str
    fleet_password: str = field(repr=False)  # every fleet account's (fleet_accounts)
    device_passwords: dict[str, str] = field(repr=False)  # username (site/device) -> password
    fleet_accounts: tuple[str, ...] = ()  # the fleet's service accounts (fleet_usernames)


def fleet_usernames(
    fleet_user: str = FLEET_USER, workers: int = DEFAULT_FLEET_WORKERS
) -> list[str]:
    """The service accounts of one fleet user (a fleet host): the single ingest, statuses,
    rollouts, worker slots."""
    return [
        fleet_user,
        f"{fleet_user}-{STATUS_ROLE}",
        f"{fleet_user}-{ROLLOUTS_ROLE}",
        *(f"{fleet_user}-{slot}" for slot in range(workers)),
    ]


def service_login(
    broker: BrokerAddress, client_id: str, role: str | int | None = None
) -> tuple[BrokerAddress, str]:
    """How the fleet connection ``role`` logs in: (the address with its user, its client id).

    ``None`` is the single ingest: the URL's user and ``client_id`` as given. Any other role
    (:data:`STATUS_ROLE`, :data:`ROLLOUTS_ROLE`, a worker's slot) appends ``-ROLE`` to both,
    so that each connection has an account of its own on a broker that makes the client id
    the user name. Without a user in the URL (a broker without accounts, such as the
    demo's) only the client id changes."""
    if role is None:
        return broker, client_id
    user = None if broker.username is None else f"{broker.username}-{role}"
    return dataclasses.replace(broker, username=user), f"{client_id}-{role}"


def parse_devices(text: str) -> list[DeviceRef]:
    """``site/dev,site/dev2`` -> devices; duplicates and bad ids are errors."""
    refs = [DeviceRef.parse(item) for item in text.split(",") if item.strip()]
    if not refs:
        raise BrokerConfigError("--devices is empty: list them as site/device,site/device2")
    seen: set[str] = set()
    for ref in refs:
        if ref.username in seen:
            raise BrokerConfigError(f"device {ref.username} is listed twice")
        seen.add(ref.username)
    return refs


def mosquitto_password_hash(password: str, *, salt: bytes | None = None) -> str:
    """A Mosquitto 2 password file hash (PBKDF2-HMAC-SHA512, ``$7$``)."""
    salt = salt if salt is not None else secrets.token_bytes(12)
    digest = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, PBKDF2_ITERATIONS)
    return (
        f"$7${PBKDF2_ITERATIONS}$"
        f"{base64.b64encode(salt).decode()}${base64.b64encode(digest).decode()}"
    )


def acl_text(devices: Sequence[DeviceRef], fleet_users: Sequence[str] = (FLEET_USER,)) -> str:
    lines = ["# Generated by edgetally fleet broker-config. Anything not allowed here is denied."]
    for user in fleet_users:
        lines += [f"user {user}", f"topic readwrite {TOPIC_PREFIX}/#", ""]
    for ref in devices:
        own = f"{TOPIC_PREFIX}/{ref.site}/{ref.device}"
        lines.append(f"user {ref.username}")
        lines += [f"topic write {own}/{kind}" for kind in DEVICE_PUBLISH_KINDS]
        lines += [f"topic read {own}/cmd", ""]
        lines += [f"user {ref.updater_username}", f"topic read {own}/cmd"]
        lines += [f"topic write {own}/update", ""]
    return "\n".join(lines)


def generate_broker_config(
    out: Path,
    devices: Sequence[DeviceRef],
    *,
    port: int = 8883,
    bind: str = "0.0.0.0",
    hostnames: Sequence[str] = ("localhost",),
    fleet_users: Sequence[str] = (FLEET_USER,),
    fleet_workers: int = DEFAULT_FLEET_WORKERS,
    run_as: str | None = None,
) -> BrokerConfig:
    """Write CA, server certificate, password file, ACL and mosquitto.conf into ``out``.

    ``run_as`` writes Mosquitto's ``user`` option: started as root, Mosquitto drops to that
    user (its default is ``mosquitto``) before it reads the password file and keys, so that
    user must be able to read ``out``. Persistence is on, in ``out/data/``: the fleet's
    persistent session and the messages queued for it survive a broker restart (without it,
    what devices publish before the fleet reconnects is lost). Run as root, the folder is
    given to the user Mosquitto will run as. Each of ``fleet_users`` (one per fleet host)
    gets its set of accounts (:func:`fleet_usernames`): itself, ``-status``, ``-rollouts``
    and ``fleet_workers`` worker slots ``-0`` ...; they all share one password."""
    if not devices:
        raise BrokerConfigError("a broker configuration needs at least one device")
    if run_as is not None and (not run_as or any(c.isspace() for c in run_as)):
        raise BrokerConfigError(f"--run-as {run_as!r} is not a user name")
    if not 0 <= fleet_workers <= MAX_FLEET_WORKERS:
        raise BrokerConfigError(
            f"--fleet-workers {fleet_workers}: give 0 to {MAX_FLEET_WORKERS} worker accounts"
        )
    if not fleet_users:
        raise BrokerConfigError("--fleet-users is empty: name at least one (fleet)")
    accounts: list[str] = []
    for user in fleet_users:
        try:  # no "/": a device's name always has one, so no fleet account is a device's
            check_id(user, "fleet user")
        except WireError as exc:
            raise BrokerConfigError(str(exc)) from None
        if ":" in user:
            raise BrokerConfigError(f"fleet user {user!r}: a broker login cannot hold ':'")
        for account in fleet_usernames(user, fleet_workers):
            if account in accounts:
                raise BrokerConfigError(
                    f"fleet user {user!r}: its account {account} is another fleet user's "
                    "(name fleet hosts fleet, fleet-b, ...)"
                )
            accounts.append(account)
    try:
        out.mkdir(parents=True, exist_ok=True)
        out = out.resolve()
        ca_key, ca_cert = _make_ca()
        server_key, server_cert = _make_server_cert(ca_key, ca_cert, hostnames)
        _write(out / "ca.key", _key_pem(ca_key), private=True)
        _write(out / "ca.crt", ca_cert.public_bytes(serialization.Encoding.PEM))
        _write(out / "server.key", _key_pem(server_key), private=True)
        _write(out / "server.crt", server_cert.public_bytes(serialization.Encoding.PEM))

        fleet_password = secrets.token_urlsafe(24)
        passwords = {d.username: secrets.token_urlsafe(24) for d in devices}
        entries = [f"{u}:{mosquitto_password_hash(fleet_password)}" for u in accounts]
        for ref in devices:
            for user in (ref.username, ref.updater_username):
                entries.append(f"{user}:{mosquitto_password_hash(passwords[ref.username])}")
        _write(out / "passwords", ("\n".join(entries) + "\n").encode(), private=True)
        _write(out / "acl", acl_text(devices, accounts).encode())
        _data_dir(out / "data", run_as or "mosquitto")
        conf = out / "mosquitto.conf"
        _write(conf, _conf_text(out, port, bind, run_as).encode())
        creds = {
            "broker": {"port": port, "ca": "ca.crt", "tls": True},
            "fleet": {
                "username": fleet_users[0],
                "password": fleet_password,
                "accounts": accounts,  # one per connection, all with this password
            },
            "devices": passwords,
        }
        _write(out / "credentials.json", json.dumps(creds, indent=2).encode(), private=True)
    except OSError as exc:
        raise BrokerConfigError(f"cannot write the broker config to {out}: {exc}") from None
    return BrokerConfig(
        directory=out,
        config=conf,
        ca_cert=out / "ca.crt",
        port=port,
        fleet_user=fleet_users[0],
        fleet_password=fleet_password,
        device_passwords=passwords,
        fleet_accounts=tuple(accounts),
    )


def _conf_text(out: Path, port: int, bind: str, run_as: str | None) -> str:
    return "\n".join(
        [
            "# Generated by edgetally fleet broker-config.",
            *([f"user {run_as}"] if run_as else []),
            "per_listener_settings false",
            "allow_anonymous false",
            f"password_file {out / 'passwords'}",
            f"acl_file {out / 'acl'}",
            "persistence true",
            f"persistence_location {out / 'data'}/",
            "max_queued_messages 100000",
            f"message_size_limit {MESSAGE_SIZE_LIMIT}",
            f"listener {port} {bind}",
            # A listener's option (before "listener" it would open a default one on 1883):
            # a client's id is its user name, whatever id it asks for.
            "use_username_as_clientid true",
            f"cafile {out / 'ca.crt'}",
            f"certfile {out / 'server.crt'}",
            f"keyfile {out / 'server.key'}",
            "tls_version tlsv1.2",
            "",
        ]
    )


def _data_dir(path: Path, user: str) -> None:
    """Mosquitto's persistence folder, writable by ``user`` when we can arrange it (root)."""
    path.mkdir(mode=0o700, exist_ok=True)
    if os.geteuid() == 0 and user != "root":
        import pwd

        try:
            entry = pwd.getpwnam(user)
        except KeyError:
            return  # no such user here: whoever starts Mosquitto makes the folder writable
        os.chown(path, entry.pw_uid, entry.pw_gid)


def _write(path: Path, data: bytes, *, private: bool = False) -> None:
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600 if private else 0o644)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
    os.replace(tmp, path)


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _make_ca() -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "edgetally demo fleet CA")])
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=CERT_DAYS))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return key, cert


def _make_server_cert(
    ca_key: ec.EllipticCurvePrivateKey, ca_cert: x509.Certificate, hostnames: Sequence[str]
) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    key = ec.generate_private_key(ec.SECP256R1())
    names: list[x509.GeneralName] = []
    for host in [*hostnames, "localhost", "127.0.0.1"]:
        try:
            general: x509.GeneralName = x509.IPAddress(ipaddress.ip_address(host))
        except ValueError:
            general = x509.DNSName(host)
        if general not in names:
            names.append(general)
    now = datetime.now(UTC)
    cn = hostnames[0] if hostnames else "localhost"
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=CERT_DAYS))
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    return key, cert
