"""How the device reaches its broker: the address, the login and TLS, shared by the
publisher and the update agent, and one-line reasons when a connection fails.

``mqtt://HOST[:PORT]`` is plain MQTT (port 1883 by default), ``mqtts://HOST[:PORT]`` is TLS
(8883), checked against the CA file given (``--ca``) or the system's CAs. A closed fleet's
broker (``edgetally fleet broker-config``) knows each device as user ``SITE/DEVICE``; its
password comes from ``--mqtt-password``, a password file or the URL's userinfo
(``mqtts://:PASSWORD@HOST``). The password is never printed: :class:`BrokerLogin` and the
URLs shown drop it.

A refused login and a TLS handshake that cannot succeed are *fatal*: retrying will not
help, the caller should stop and say why. A broker that does not answer (nothing listens,
the network is down) is not: the device keeps counting into its outbox and retries.

A client made for MQTT v5 falls back to 3.1.1 when the broker answers its CONNECT with
"unsupported protocol version" (what a 3.1.1-only broker must say) or closes the connection
before answering; a 3.1.1 attempt closed the same way goes back to v5 (the protocol was not
the cause). A v5 CONNECT that a broker never heard over v5 leaves unanswered for
``CONNACK_WAIT_S`` counts as closed (:meth:`WatchedClient.check_connack`): amqtt, for one,
misreads a v5 CONNECT that carries a will and waits for bytes that never come. Whoever knows
that a broker speaks only 3.1.1 (the demo, which starts amqtt) says so with
:func:`assume_mqtt311` and spares the clients the try. Only v5 lets a broker say
that it refused a publish: :func:`describe_publish_refusal` puts such a refusal in words.
"""

from __future__ import annotations

import contextlib
import socket
import ssl
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from edgetally.models.broker_url import DEFAULT_TLS_PORT, BrokerUrlError, redact_url
from edgetally.models.broker_url import parse_broker_url as parse_url
from edgetally.models.broker_url import read_password_file as read_file
from edgetally.models.errors import WireError
from edgetally.models.topics import parse_topic
from edgetally.runtime.errors import ConfigError
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode, MQTTProtocolVersion

MAX_PASSWORD_BYTES = 512
# CONNACK reason codes (MQTT 5 numbering, which paho also uses for 3.1.1 answers).
_BAD_LOGIN = 134  # bad user name or password
_NOT_AUTHORISED = 135
_UNSUPPORTED_PROTOCOL = 132  # paho's name for a 3.1.1 broker's "unacceptable protocol level"
# PUBACK reason codes (MQTT 5): 0x80 and above mean the broker did not take the message.
REFUSED = 0x80
NOT_AUTHORISED = 0x87
QUOTA_EXCEEDED = 0x97
CONNACK_WAIT_S = 5.0  # a v5 CONNECT unanswered this long: try 3.1.1
_SPEAKS_ONLY_311: set[tuple[str, int]] = set()  # (host, port) of brokers known to


@dataclass(frozen=True, slots=True)
class BrokerAddress:
    host: str
    port: int
    tls: bool = False

    def __str__(self) -> str:
        return f"{'mqtts' if self.tls else 'mqtt'}://{self.host}:{self.port}"


@dataclass(frozen=True, slots=True)
class BrokerLogin:
    """Where the broker is and how to log in; ``str()`` never shows the password."""

    address: BrokerAddress
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    ca_file: Path | None = None

    def __str__(self) -> str:
        return str(self.address)

    @property
    def who(self) -> str:
        return self.username or "an anonymous client"


def assume_mqtt311(host: str, port: int, *, speaks_only_311: bool = True) -> None:
    """Clients made from now on for ``host:port`` start with MQTT 3.1.1 (or no longer, with
    ``speaks_only_311=False``): for a broker known to speak nothing newer."""
    if speaks_only_311:
        _SPEAKS_ONLY_311.add((host, port))
    else:
        _SPEAKS_ONLY_311.discard((host, port))


def _split(url: str) -> tuple[BrokerAddress, str | None, str | None]:
    try:
        u = parse_url(url)
    except BrokerUrlError as exc:
        raise ConfigError(str(exc)) from None
    return BrokerAddress(u.host, u.port, u.tls), u.username, u.password


def parse_broker_url(url: str) -> BrokerAddress:
    """``mqtt[s]://[USER[:PASS]@]HOST[:PORT]`` (or ``tcp://``, or plain ``HOST[:PORT]``)."""
    return _split(url)[0]


def read_password_file(path: Path) -> str:
    """The first line of ``path``, without surrounding white space."""
    try:
        return read_file(path, max_bytes=MAX_PASSWORD_BYTES)
    except BrokerUrlError as exc:
        raise ConfigError(str(exc)) from None


def broker_login(
    url: str,
    *,
    site: str,
    device: str,
    password: str | None = None,
    password_file: Path | None = None,
    ca_file: Path | None = None,
) -> BrokerLogin:
    """The device's login: user ``SITE/DEVICE`` whenever a password is given (a flag, a
    file or the URL), TLS for ``mqtts://`` (checked against ``ca_file`` when given)."""
    address, url_user, url_password = _split(url)
    user = f"{site}/{device}"
    if url_user is not None and url_user != user:
        raise ConfigError(
            f"broker {redact_url(url)!r}: this device logs in as {user}, not {url_user}"
        )
    if password is not None and password_file is not None:
        raise ConfigError("give the broker password once: --mqtt-password or a password file")
    if password_file is not None:
        password = read_password_file(password_file)
    if password is not None and url_password is not None and password != url_password:
        raise ConfigError(
            f"broker {redact_url(url)!r}: the URL holds a different password than the one given"
        )
    password = password if password is not None else url_password
    if ca_file is not None:
        if not address.tls:
            raise ConfigError(
                f"--ca is for a TLS broker: use mqtts://{address.host}:{DEFAULT_TLS_PORT}"
            )
        if not ca_file.is_file():
            raise ConfigError(f"CA file {ca_file}: no such file")
    login_user = user if (password is not None or url_user is not None) else None
    return BrokerLogin(address, login_user, password, ca_file)


def make_client(login: BrokerLogin, client_id: str, **kwargs: Any) -> WatchedClient:
    """A paho client set up with ``login``'s user, password and TLS."""
    client = WatchedClient(login, CallbackAPIVersion.VERSION2, client_id=client_id, **kwargs)
    if login.username is not None:
        client.username_pw_set(login.username, login.password)
    if login.address.tls:
        try:
            client.tls_set(
                ca_certs=str(login.ca_file) if login.ca_file else None,
                cert_reqs=ssl.CERT_REQUIRED,
            )
        except (ssl.SSLError, OSError) as exc:
            raise ConfigError(f"CA file {login.ca_file}: not a PEM certificate ({exc})") from None
    return client


class WatchedClient(mqtt.Client):
    """A paho client that remembers why its last connection attempt failed.

    paho's network thread swallows the exception of a failed (re)connect; this keeps it as
    a one-line :attr:`problem`, with :attr:`fatal` when retrying cannot help. Made for MQTT
    v5, it falls back to 3.1.1 for a broker that speaks only that (see the module's text);
    :attr:`only_311` is True once such a broker accepted the 3.1.1 connection."""

    def __init__(self, login: BrokerLogin, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.login = login
        self.problem: str | None = None
        self.fatal = False
        self._answered = False
        self._fell_back = False  # a v5 attempt failed and 3.1.1 is being tried
        self.only_311 = False
        self._v5_heard = False  # the broker answered a v5 CONNECT once
        self._waiting: tuple[Any, float] | None = None  # (socket, since) until the CONNACK
        a = login.address
        if self.v5 and (a.host, a.port) in _SPEAKS_ONLY_311:
            self._use(mqtt.MQTTv311)
            self._fell_back = True

    @property
    def v5(self) -> bool:
        return self.protocol == mqtt.MQTTv5

    def _use(self, protocol: MQTTProtocolVersion) -> None:
        # paho keeps the protocol in a private field and switches it itself (3.1.1 -> 3.1)
        # when a broker refuses the level; the next (re)connect uses it. tests/runtime/uplink
        # run the fallback against a 3.1.1-only broker, so a paho that changes this fails there.
        self._protocol = protocol
        if protocol != mqtt.MQTTv5:
            self._clean_session = True  # set by paho's constructor for 3.1.1 clients only

    def reconnect(self) -> MQTTErrorCode:
        self._answered = False
        self._waiting = None
        try:
            rc = super().reconnect()
        except OSError as exc:
            self.problem, self.fatal = describe_connect_error(exc, self.login)
            raise
        self._waiting = (self.socket(), time.monotonic())
        return rc

    def check_connack(self, wait: float = CONNACK_WAIT_S) -> None:
        """Call from any thread now and then: a v5 CONNECT unanswered for ``wait`` seconds,
        by a broker never heard over v5, is given up (its socket shut down, which paho's
        thread sees as a close before the answer, so the next attempt is 3.1.1)."""
        waiting = self._waiting
        if waiting is None or self._answered or not self.v5 or self._v5_heard:
            return
        sock, since = waiting
        if time.monotonic() - since < wait:
            return
        self._waiting = None
        with contextlib.suppress(OSError, AttributeError):  # closed meanwhile: nothing to do
            sock.shutdown(socket.SHUT_RDWR)

    def note_connack(self, reason: Any) -> bool:
        """Record the broker's answer; True when it accepted the connection."""
        self._answered = True
        self._waiting = None
        if self.v5 and getattr(reason, "value", None) == _UNSUPPORTED_PROTOCOL:
            self._use(mqtt.MQTTv311)
            self._fell_back = True
            self.problem = f"the broker {self.login} does not speak MQTT v5; trying 3.1.1"
            self.fatal = False
            return False
        self._v5_heard = self._v5_heard or self.v5
        if not getattr(reason, "is_failure", False):
            self.problem, self.fatal = None, False
            self.only_311 = self._fell_back
            return True
        self.problem, self.fatal = describe_refusal(reason, self.login)
        return False

    def note_disconnect(self) -> None:
        """The connection closed; before the broker answered, that says something."""
        if self._answered:
            return
        if self.v5 and not self._v5_heard:  # some 3.1.1-only brokers close without a word
            self._use(mqtt.MQTTv311)
            self._fell_back = True
        elif self._fell_back and not self.only_311:  # 3.1.1 closed too: not the protocol
            self._use(mqtt.MQTTv5)
            self._fell_back = False
        if self.problem is None:
            a = self.login.address
            hint = "a TLS port? then use mqtts://" if not a.tls else "is the port right?"
            self.problem = f"the broker {a} closed the connection before answering ({hint})"


def describe_refusal(reason: Any, login: BrokerLogin) -> tuple[str, bool]:
    """A CONNACK refusal -> (one-line reason, fatal)."""
    value = getattr(reason, "value", None)
    if value in (_BAD_LOGIN, _NOT_AUTHORISED):
        how = "check its password" if login.username else "it needs the password of SITE/DEVICE"
        return (
            f"the broker {login} refused {login.who}: not authorised; {how} "
            "(--mqtt-password or --mqtt-password-file)",
            True,
        )
    return f"the broker {login} refused {login.who}: {reason}", False


def reason_name(reason: Any) -> str:
    """A paho reason code in words, lower case: ``not authorized``, ``quota exceeded``."""
    value = getattr(reason, "value", reason)
    try:
        name = str(reason.getName()) if hasattr(reason, "getName") else str(reason)
    except (KeyError, ValueError):  # a code paho has no name for
        name = ""
    return name.lower() if name and not name.isdigit() else f"reason code 0x{int(value):02x}"


def describe_publish_refusal(topic: str, code: int, name: str, login: BrokerLogin) -> str:
    """Why the broker may have refused a publish on ``topic`` and what to check, in words;
    ``""`` when there is nothing more to say than the reason's name."""
    if code == NOT_AUTHORISED:
        try:
            t = parse_topic(topic)
            owner: str | None = f"{t.site}/{t.device}"
        except WireError:
            owner = None
        if login.username is None:
            return (
                f"the device logs in anonymously: give it the password of {owner}"
                if owner
                else "the device logs in anonymously"
            )
        if owner is not None and owner != login.username:
            return f"is this device logged in as {owner}? it logs in as {login.username}"
        return f"does the broker's ACL let {login.username} publish there?"
    if code == QUOTA_EXCEEDED:
        return "the broker's quota for this device is used up for now"
    return ""


def describe_connect_error(exc: OSError, login: BrokerLogin) -> tuple[str, bool]:
    """An exception of a connection attempt -> (one-line reason, fatal)."""
    a = login.address
    if isinstance(exc, ssl.SSLCertVerificationError):
        detail = exc.verify_message or exc.reason or "certificate refused"
        if "hostname" in str(detail).lower() or "ip address mismatch" in str(detail).lower():
            hint = f"connect by a name its certificate holds, not {a.host}"
        else:
            hint = (
                f"its certificate is not signed by the CA of --ca {login.ca_file}"
                if login.ca_file
                else "its certificate is not signed by a CA of the system; give its CA with --ca"
            )
        return f"TLS with the broker {a} failed: {detail} ({hint})", True
    if isinstance(exc, ssl.SSLError):
        detail = exc.reason or str(exc)
        return (
            f"TLS with the broker {a} failed: {detail} "
            f"(is {a.port} a TLS port? mqtts:// is for TLS listeners, mqtt:// for plain ones)",
            True,
        )
    if isinstance(exc, ConnectionRefusedError):
        return (
            f"nothing listens at {a} (connection refused; is the broker running, "
            "is the port right?)",
            False,
        )
    if isinstance(exc, ConnectionResetError) and a.tls:
        return (
            f"the broker {a} reset the connection during the TLS handshake (is {a.port} a TLS "
            "port? mqtt:// is for plain listeners)",
            False,
        )
    if isinstance(exc, TimeoutError):
        return f"the broker {a} did not answer (timed out)", False
    text = exc.strerror or str(exc) or type(exc).__name__
    return f"cannot reach the broker {a}: {text}", False
