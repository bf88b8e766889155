"""Parse what the user types for the broker (``mqtt://HOST:PORT``) and HTTP (``HOST:PORT``).

A password never shows: not in an error, not in a ``repr``.
"""

from __future__ import annotations

import dataclasses
import ipaddress
from dataclasses import dataclass, field
from pathlib import Path

from edgetally.fleet.errors import FleetError
from edgetally.models import broker_url
from edgetally.models.broker_url import BrokerUrlError

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
        return str(broker_url.BrokerUrl(self.host, self.port, self.tls, self.username))


def parse_broker_url(url: str) -> BrokerAddress:
    """``mqtt://[USER[:PASS]@]HOST[:PORT]`` or ``mqtts://...`` (ports 1883 / 8883 by
    default), parsed as the device parses it (:mod:`edgetally.models.broker_url`)."""
    try:
        u = broker_url.parse_broker_url(url)
    except BrokerUrlError as exc:
        raise FleetError(str(exc)) from None
    return BrokerAddress(u.host, u.port, u.tls, u.username, u.password)


def read_password_file(path: Path) -> str:
    """The first line of ``path``, without surrounding white space."""
    try:
        return broker_url.read_password_file(path, max_bytes=MAX_PASSWORD_BYTES)
    except BrokerUrlError as exc:
        raise FleetError(str(exc)) from None


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
