"""Parse what the user types for the broker (``mqtt://HOST:PORT``) and HTTP (``HOST:PORT``)."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

from edgetally.fleet.errors import FleetError


@dataclass(frozen=True, slots=True)
class BrokerAddress:
    """Where the MQTT broker is; ``mqtts`` means TLS. Credentials are optional."""

    host: str
    port: int
    tls: bool = False
    username: str | None = None
    password: str | None = None

    def __str__(self) -> str:
        user = f"{self.username}@" if self.username else ""
        return f"{'mqtts' if self.tls else 'mqtt'}://{user}{self.host}:{self.port}"


def parse_broker_url(url: str) -> BrokerAddress:
    """``mqtt://[USER[:PASS]@]HOST[:PORT]`` or ``mqtts://...`` (ports 1883 / 8883 by default)."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise FleetError(f"invalid broker URL {url[:100]!r}: {exc}") from None
    if parts.scheme not in ("mqtt", "mqtts"):
        raise FleetError(f"invalid broker URL {url[:100]!r}: use mqtt://HOST:PORT or mqtts://")
    if not parts.hostname:
        raise FleetError(f"invalid broker URL {url[:100]!r}: no host")
    if parts.path not in ("", "/") or parts.query:
        raise FleetError(f"invalid broker URL {url[:100]!r}: no path or query expected")
    tls = parts.scheme == "mqtts"
    return BrokerAddress(
        host=parts.hostname,
        port=port if port is not None else (8883 if tls else 1883),
        tls=tls,
        username=unquote(parts.username) if parts.username else None,
        password=unquote(parts.password) if parts.password else None,
    )


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
