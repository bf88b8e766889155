"""One helper shows every URL without its secrets, on the device and in the fleet alike."""

from __future__ import annotations

import pytest
from edgetally.models.broker_url import redact_url as broker_redact
from edgetally.models.redact import redact_url, scrub, url_secrets


@pytest.mark.parametrize(
    ("url", "shown", "secrets"),
    [
        ("mqtt://u:p4ss@h:1", "mqtt://u:***@h:1", ("p4ss",)),
        ("mqtts://:hunter22@h:1", "mqtts://:***@h:1", ("hunter22",)),
        ("mqtts://shop1%2Fcam1:pw%40x@h", "mqtts://shop1%2Fcam1:***@h", ("pw%40x", "pw@x")),
        (
            "mqtt://fleet:s3cret/pw@fleet.lan:8883",
            "mqtt://fleet:***@fleet.lan:8883",
            ("s3cret/pw",),
        ),
        ("mqtt://u:pa?ss@h", "mqtt://u:***@h", ("pa?ss",)),  # a raw ? in the password
        ("u:p4ss@h:1883", "u:***@h:1883", ("p4ss",)),  # a bare HOST:PORT with a login
        (
            "postgresql://fleet:db-pw@db:5432/fleet",
            "postgresql://fleet:***@db:5432/fleet",
            ("db-pw",),
        ),
        (
            "postgresql://fleet@db/fleet?sslmode=require&password=db-pw",
            "postgresql://fleet@db/fleet?sslmode=require&password=***",
            ("db-pw",),
        ),
        (
            "postgresql://fleet@db/fleet?PassWord=a%26b",
            "postgresql://fleet@db/fleet?PassWord=***",
            ("a%26b", "a&b"),
        ),
        (
            "https://fleet.lan/bundles/x?token=t0k3n",
            "https://fleet.lan/bundles/x?token=***",
            ("t0k3n",),
        ),
        (
            "host=db user=fleet password='db pw' dbname=f",
            "host=db user=fleet password=*** dbname=f",
            ("db pw",),
        ),
        (
            "postgresql://db:5432/f?application_name=a@b",
            "postgresql://db:5432/f?application_name=a@b",
            (),
        ),
        ("mqtt://127.0.0.1:1883", "mqtt://127.0.0.1:1883", ()),
        ("fleet.duckdb", "fleet.duckdb", ()),
    ],
)
def test_a_url_is_shown_without_its_secrets(url: str, shown: str, secrets: tuple[str, ...]) -> None:
    assert redact_url(url) == shown
    assert broker_redact(url) == shown  # the broker URL's helper is the same one
    assert url_secrets(url) == secrets
    for secret in secrets:
        assert secret not in redact_url(url)


def test_scrub_takes_every_secret_out_of_a_message() -> None:
    url = "postgresql://fleet:se%ZZcret@db/f?password=other"
    said = 'invalid percent-encoded token: "se%ZZcret" (and other)'
    assert scrub(said, url_secrets(url)) == 'invalid percent-encoded token: "***" (and ***)'
    assert scrub("nothing here", ()) == "nothing here"
