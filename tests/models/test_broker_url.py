"""One broker-URL parser for the device and the fleet: both read a URL the same way."""

from __future__ import annotations

import pytest
from edgetally.fleet.addresses import parse_broker_url as fleet_parse
from edgetally.fleet.errors import FleetError
from edgetally.models.broker_url import BrokerUrlError, parse_broker_url
from edgetally.runtime.errors import ConfigError
from edgetally.runtime.uplink.broker import broker_login


@pytest.mark.parametrize(
    ("url", "host", "port", "tls", "user"),
    [
        ("mqtt://h", "h", 1883, False, None),
        ("mqtts://h", "h", 8883, True, None),
        ("tcp://h:1884", "h", 1884, False, None),
        ("h:1999", "h", 1999, False, None),
        ("fleet.lan", "fleet.lan", 1883, False, None),
        ("mqtts://shop1%2Fcam1:pw@h:9000", "h", 9000, True, "shop1/cam1"),
        ("mqtt://[::1]:1883", "::1", 1883, False, None),
    ],
)
def test_device_and_fleet_read_a_url_alike(
    url: str, host: str, port: int, tls: bool, user: str | None
) -> None:
    shared = parse_broker_url(url)
    fleet = fleet_parse(url)
    assert (shared.host, shared.port, shared.tls, shared.username) == (host, port, tls, user)
    assert (fleet.host, fleet.port, fleet.tls, fleet.username) == (host, port, tls, user)
    if user is None:  # the device logs in as site/device; a URL user must be that one
        login = broker_login(url, site="shop1", device="cam1")
        assert (login.address.host, login.address.port, login.address.tls) == (host, port, tls)


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("ftp://h", "unsupported scheme"),
        ("mqtt://h:99999", "1-65535"),
        ("mqtt://h:0", "1-65535"),
        ("mqtt://", "no host"),
        ("mqtt://h/topic", "no path"),
        ("mqtts://user:se/cret@h", "%2F"),
    ],
)
def test_bad_urls_are_the_same_one_line_error_on_both_sides(url: str, says: str) -> None:
    with pytest.raises(BrokerUrlError) as shared:
        parse_broker_url(url)
    with pytest.raises(FleetError) as fleet:
        fleet_parse(url)
    with pytest.raises(ConfigError) as device:
        broker_login(url, site="shop1", device="cam1")
    for err in (shared, fleet, device):
        text = str(err.value)
        assert says in text and "\n" not in text and "cret" not in text
