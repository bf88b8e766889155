"""Parse what the user types for the broker (``mqtt://HOST:PORT``) and HTTP (``HOST:PORT``).

A password never shows: not in an error, not in a ``repr``.
"""

from __future__ import annotations

import dataclasses
import ipaddress
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import unquote, urlsplit

from edgetally.fleet.errors import FleetError

MAX_PASSWORD_BYTES = 4096


@dataclass(frozen=True, slots=True)
class BrokerAddress:
    """Where the MQTT broker is; ``mqtts`` means TLS. Credentials are optional."""

    host: str
    port: int
    tls: bool = False
    username: str | None = None
    password: str | None = field(default=None, repr=False)

    def with_password(self, password: str) -> BrokerAddress:
        """The same address logging in with ``password`` (from a file); it needs a user in
        the URL, and a URL with its own password too is refused (which one was meant?)."""
        if self.username is None:
            raise FleetError(
                "--broker-password-file needs the user in --broker (mqtts://USER@HOST:PORT)"
            )
        if self.password is not None:
            raise FleetError(
                "the broker URL holds a password and --broker-password-file gives one: "
                "give it once, in the file"
            )
        return dataclasses.replace(self, password=password)

    def __str__(self) -> str:
        user = f"{self.username}@" if self.username else ""
        return f"{'mqtts' if self.tls else 'mqtt'}://{user}{self.host}:{self.port}"


def redact_url(url: str) -> str:
    """``url`` with the password of its userinfo (``USER:PASS@``) replaced by ``***``."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        scheme, rest = "", url
    userinfo, at, hostpart = rest.rpartition("@")
    if not at or ":" not in userinfo:
        return url
    return f"{scheme}{sep}{userinfo.split(':', 1)[0]}:***@{hostpart}"


def parse_broker_url(url: str) -> BrokerAddress:
    """``mqtt://[USER[:PASS]@]HOST[:PORT]`` or ``mqtts://...`` (ports 1883 / 8883 by default)."""
    shown = repr(redact_url(url)[:100])
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        # the message would quote what it took for the port: part of a password, maybe
        reason = (
            "the port is not a number in 0-65535"
            if "port" in str(exc).lower()
            else "it does not parse as a URL"
        )
        if "@" in url:
            reason += " (write / ? # @ in a password as %2F, %3F, %23, %40)"
        raise FleetError(f"invalid broker URL {shown}: {reason}") from None
    if parts.scheme not in ("mqtt", "mqtts"):
        raise FleetError(f"invalid broker URL {shown}: use mqtt://HOST:PORT or mqtts://")
    if not parts.hostname:
        raise FleetError(f"invalid broker URL {shown}: no host")
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise FleetError(f"invalid broker URL {shown}: no path or query expected")
    tls = parts.scheme == "mqtts"
    return BrokerAddress(
        host=parts.hostname,
        port=port if port is not None else (8883 if tls else 1883),
        tls=tls,
        username=unquote(parts.username) if parts.username else None,
        password=unquote(parts.password) if parts.password else None,
    )


def read_password_file(path: Path) -> str:
    """The first line of ``path``, without surrounding white space."""
    try:
        data = path.read_bytes()[: MAX_PASSWORD_BYTES + 1]
    except OSError as exc:
        raise FleetError(f"cannot read the password file {path}: {exc.strerror or exc}") from None
    try:
        lines = data.decode("utf-8").splitlines()
    except UnicodeDecodeError:
        raise FleetError(f"password file {path}: not UTF-8 text") from None
    password = lines[0].strip() if lines else ""
    if not password or len(data) > MAX_PASSWORD_BYTES:
        raise FleetError(f"password file {path}: expected one line with the password")
    return password


def is_loopback(host: str) -> bool:
    """Whether an HTTP bind address is reachable from this machine only."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a name: it may resolve to any interface


def parse_host_port(text: str, *, default_port: int = 8080) -> tuple[str, int]:
    """``HOST:PORT``, ``:PORT`` or ``HOST`` -> (host, port); port 0 picks a free one."""
    host, sep, port_text = text.rpartition(":")
    if not sep:
        host, port_text = text, str(default_port)
    host = host.strip("[]") or "127.0.0.1"
    try:
        port = int(port_text)
    except ValueError:
        raise FleetError(f"invalid HTTP address {text[:100]!r}: use HOST:PORT") from None
    if not 0 <= port <= 65535:
        raise FleetError(f"invalid HTTP address {text[:100]!r}: port must be 0-65535")
    return host, port
