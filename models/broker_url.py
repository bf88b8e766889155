"""The broker address as a user types it, parsed once for the device and the fleet.

``mqtt://[USER[:PASSWORD]@]HOST[:PORT]`` is plain MQTT (port 1883 by default),
``mqtts://...`` is TLS (8883); ``tcp://`` is read as ``mqtt://`` and a bare ``HOST[:PORT]``
too. A user name or password with ``/ ? # @ :`` in it is written percent-encoded
(``SITE%2FDEVICE``). A password never shows: not in an error, not in a ``repr``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import unquote, urlsplit

from edgetally.models.errors import ModelsError
from edgetally.models.redact import redact_url as redact_url  # shown URLs: one helper

DEFAULT_PORT = 1883
DEFAULT_TLS_PORT = 8883


class BrokerUrlError(ModelsError):
    """A broker URL or password file that cannot be used; the message shows no password."""


@dataclass(frozen=True, slots=True)
class BrokerUrl:
    """Where the broker is (``tls``: mqtts) and the login the URL carries, if any."""

    host: str
    port: int
    tls: bool = False
    username: str | None = None
    password: str | None = field(default=None, repr=False)

    def __str__(self) -> str:
        user = f"{self.username}@" if self.username else ""
        return f"{'mqtts' if self.tls else 'mqtt'}://{user}{self.host}:{self.port}"


def parse_broker_url(url: str) -> BrokerUrl:
    """``mqtt[s]://[USER[:PASS]@]HOST[:PORT]``, ``tcp://...`` or ``HOST[:PORT]``; raises
    :class:`BrokerUrlError` with a one-line reason."""
    shown = repr(redact_url(url.strip())[:100])
    text = url.strip()
    if "://" not in text:
        text = "mqtt://" + text
    try:
        parts = urlsplit(text)
        port = parts.port
    except ValueError as exc:
        # the message would quote what it took for the port: part of a password, maybe
        reason = (
            "the port is not a number in 1-65535"
            if "port" in str(exc).lower()
            else "it does not parse as a URL"
        )
        if "@" in text:
            reason += " (write / ? # @ in a password as %2F, %3F, %23, %40)"
        raise BrokerUrlError(f"invalid broker URL {shown}: {reason}") from None
    if parts.scheme not in ("mqtt", "mqtts", "tcp"):
        raise BrokerUrlError(
            f"invalid broker URL {shown}: unsupported scheme {parts.scheme[:20]!r} "
            "(use mqtt://HOST:PORT or mqtts://HOST:PORT)"
        )
    if "@" in parts.path:
        raise BrokerUrlError(
            f"invalid broker URL {shown}: a login in the URL is written "
            "mqtts://:PASSWORD@HOST (or SITE%2FDEVICE:PASSWORD@HOST)"
        )
    if not parts.hostname:
        raise BrokerUrlError(f"invalid broker URL {shown}: no host")
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise BrokerUrlError(
            f"invalid broker URL {shown}: no path or query expected (mqtt://HOST:PORT)"
        )
    if port == 0:
        raise BrokerUrlError(f"invalid broker URL {shown}: the port is not a number in 1-65535")
    tls = parts.scheme == "mqtts"
    return BrokerUrl(
        host=parts.hostname,
        port=port if port is not None else (DEFAULT_TLS_PORT if tls else DEFAULT_PORT),
        tls=tls,
        username=unquote(parts.username) if parts.username else None,
        password=unquote(parts.password) if parts.password else None,
    )


def read_password_file(path: Path, *, max_bytes: int = 4096, what: str = "password") -> str:
    """The first line of ``path``, without surrounding white space (``what``: the secret's
    name in an error, e.g. ``token``)."""
    try:
        with path.open("rb") as fh:
            data = fh.read(max_bytes + 1)
    except OSError as exc:
        raise BrokerUrlError(f"cannot read the {what} file {path}: {exc.strerror or exc}") from None
    try:
        lines = data.decode("utf-8").splitlines()
    except UnicodeDecodeError:
        raise BrokerUrlError(f"{what} file {path}: not UTF-8 text") from None
    secret = lines[0].strip() if lines else ""
    if not secret or len(data) > max_bytes:
        raise BrokerUrlError(f"{what} file {path}: expected one line with the {what}")
    return secret
