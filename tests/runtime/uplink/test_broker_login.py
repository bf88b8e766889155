"""The device's broker login: URL, password (flag, file, URL userinfo), TLS CA; never shown."""

from __future__ import annotations

import ssl
from pathlib import Path
from typing import TypedDict, Unpack

import pytest
from edgetally.models.broker_url import redact_url
from edgetally.runtime.config import load_config, parse_config
from edgetally.runtime.errors import ConfigError
from edgetally.runtime.uplink.broker import (
    BrokerAddress,
    BrokerLogin,
    broker_login,
    describe_connect_error,
)

SECRET = "s3cr%t:pw"  # characters that need quoting in a URL


class LoginOptions(TypedDict, total=False):
    password: str | None
    password_file: Path | None
    ca_file: Path | None


def _login(url: str, **kw: Unpack[LoginOptions]) -> BrokerLogin:
    return broker_login(url, site="shop1", device="cam1", **kw)


def test_plain_and_tls_urls_and_default_ports() -> None:
    assert _login("mqtt://h").address == BrokerAddress("h", 1883, tls=False)
    assert _login("mqtts://h").address == BrokerAddress("h", 8883, tls=True)
    assert _login("mqtts://h:9000").address.port == 9000
    anonymous = _login("mqtt://h:1")
    assert anonymous.username is None and anonymous.password is None


def test_password_from_flag_file_or_url_logs_in_as_site_slash_device(tmp_path: Path) -> None:
    by_flag = _login("mqtts://h", password=SECRET)
    pw = tmp_path / "pw"
    pw.write_text(SECRET + "\n")
    by_file = _login("mqtts://h", password_file=pw)
    by_url = _login("mqtts://:s3cr%25t%3Apw@h:8883")
    by_url_with_user = _login("mqtts://shop1%2Fcam1:s3cr%25t%3Apw@h")
    for login in (by_flag, by_file, by_url, by_url_with_user):
        assert (login.username, login.password) == ("shop1/cam1", SECRET)
        assert login.address == BrokerAddress("h", 8883, tls=True)


def test_the_password_is_never_shown(tmp_path: Path) -> None:
    login = _login("mqtts://:hunter22@h", ca_file=None)
    assert "hunter22" not in str(login) and "hunter22" not in repr(login)
    assert redact_url("mqtts://:hunter22@h:1") == "mqtts://:***@h:1"
    assert redact_url("mqtt://h:1") == "mqtt://h:1"
    with pytest.raises(ConfigError) as err:
        _login("mqtts://other%2Fdev:hunter22@h")
    assert "hunter22" not in str(err.value) and "shop1/cam1" in str(err.value)
    cfg = parse_config(
        {
            "site": "shop1",
            "device": "cam1",
            "broker": "mqtt://h",
            "mqtt_password": "hunter22",
            "cameras": [
                {"id": "c", "source": "x.avi", "lines": [{"id": "l", "points": [0, 0, 9, 9]}]}
            ],
        }
    )
    assert "hunter22" not in repr(cfg)


@pytest.mark.parametrize(
    ("url", "kw", "says"),
    [
        ("mqtts://shop1/cam1:pw@h", {}, "mqtts://:PASSWORD@HOST"),
        ("mqtts://:a@h", {"password": "b"}, "different password"),
        ("mqtt://h", {"ca_file": Path("ca.crt")}, "use mqtts://h:8883"),
        ("mqtts://h", {"ca_file": Path("missing-ca.crt")}, "no such file"),
        ("mqtts://h", {"password": "a", "password_file": Path("pw")}, "once"),
        ("mqtts://h", {"password_file": Path("missing-pw")}, "cannot read the password file"),
        ("http://h:1", {}, "unsupported scheme"),
        ("mqtts://h:99999", {}, "1-65535"),
    ],
)
def test_bad_logins_are_one_line_config_errors(url: str, kw: LoginOptions, says: str) -> None:
    with pytest.raises(ConfigError) as err:
        _login(url, **kw)
    assert says in str(err.value) and "\n" not in str(err.value)


def test_empty_password_file_is_refused(tmp_path: Path) -> None:
    pw = tmp_path / "pw"
    pw.write_text("\n")
    with pytest.raises(ConfigError, match="one line with the password"):
        _login("mqtts://h", password_file=pw)


def test_config_file_keys_relative_to_the_file_and_updates_password_kept(
    tmp_path: Path,
) -> None:
    (tmp_path / "pw").write_text("from-file\n")
    (tmp_path / "ca.crt").write_text("not read here\n")
    conf = tmp_path / "device.yaml"
    conf.write_text(
        "site: shop1\ndevice: cam1\nbroker: mqtts://127.0.0.1:8883\n"
        "mqtt_password_file: pw\nmqtt_ca: ca.crt\n"
        "cameras:\n  - id: c\n    source: x.avi\n    lines: [{id: l, points: [0, 0, 9, 9]}]\n"
    )
    login = load_config(conf).broker_login()
    assert (login.username, login.password) == ("shop1/cam1", "from-file")
    assert login.ca_file == tmp_path / "ca.crt"
    # A config written for the update agent alone (updates.mqtt_password) logs in both.
    old = parse_config(
        {
            "site": "shop1",
            "device": "cam1",
            "updates": {
                "models_dir": "m",
                "fleet_pubkey": "k",
                "device_class": "x",
                "mqtt_password": "agent-pw",
            },
            "cameras": [
                {"id": "c", "source": "x.avi", "lines": [{"id": "l", "points": [0, 0, 9, 9]}]}
            ],
        }
    )
    assert old.broker_login().password == "agent-pw"


def test_connect_errors_say_what_to_do() -> None:
    login = _login("mqtts://h:8883", ca_file=None)
    refused, fatal = describe_connect_error(ConnectionRefusedError(111, "refused"), login)
    assert "connection refused" in refused and "port" in refused and not fatal
    cert = ssl.SSLCertVerificationError(1, "certificate verify failed")
    cert.verify_message = "self-signed certificate in certificate chain"
    untrusted, fatal = describe_connect_error(cert, login)
    assert "not signed" in untrusted and "--ca" in untrusted and fatal
