"""A re-provisioned device in a closed fleet (TLS, one password per device, the ACL of
`fleet broker-config`): its outbox still holds shop1/cam1's buckets when it logs in as
shop1/cam2. The broker refuses them (MQTT v5 PUBACK 0x87, not authorized); `device run`
keeps them, says why in one line and counts them; logged in as shop1/cam1 again, the same
buckets reach the fleet, each once."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from edgetally.models.topics import topic_for
from edgetally.ports import free_port

from tests.runtime.test_closed_fleet import CLI, ClosedFleet, _error_line, _waiting
from tests.runtime.test_closed_fleet import closed as closed  # the fixture
from tests.runtime.uplink.test_publisher import wait_until

pytestmark = pytest.mark.slow


def _run(
    outbox: Path, device: str, clip: Path, *broker_args: str, drain: str = "60"
) -> subprocess.CompletedProcess[str]:
    """`device run` as shop1/``device`` on 60 frames of ``clip``, 1 s buckets, --json."""
    return subprocess.run(
        [
            *CLI,
            "device",
            "run",
            str(clip),
            "--line",
            "door=380,100,380,576",
            "--site",
            "shop1",
            "--device-id",
            device,
            "--max-frames",
            "60",
            "--bucket-seconds",
            "1",
            "--outbox",
            str(outbox),
            "--drain-timeout",
            drain,
            "--json",
            *broker_args,
        ],
        capture_output=True,
        text=True,
        check=False,
        timeout=600,
    )


def test_a_reprovisioned_device_keeps_the_buckets_of_its_old_name_until_they_can_go(
    closed: ClosedFleet,
    vtest_avi: Path,  # the fixture imported above
) -> None:
    cf = closed
    outbox = cf.tmp / "box-outbox.db"
    url = f"mqtts://127.0.0.1:{cf.port}"
    login = ("--broker", url, "--ca", str(cf.ca))
    cam1_pw, cam2_pw = cf.password_file("shop1/cam1"), cf.password_file("shop1/cam2")

    # As shop1/cam1, with no broker to reach: its buckets wait in the outbox.
    first = _run(
        outbox,
        "cam1",
        vtest_avi,
        "--broker",
        f"mqtts://127.0.0.1:{free_port()}",
        "--ca",
        str(cf.ca),
        "--mqtt-password-file",
        str(cam1_pw),
        drain="1",
    )
    assert first.returncode == 3, first.stderr
    cam1_rows = _waiting(outbox)
    cam1_agg = topic_for("shop1", "cam1", "agg")
    assert cam1_rows and all(t == cam1_agg for _, t in cam1_rows)

    # Re-provisioned as shop1/cam2, the same outbox: its own buckets go, cam1's stay.
    second = _run(outbox, "cam2", vtest_avi, *login, "--mqtt-password-file", str(cam2_pw))
    assert second.returncode == 3, second.stderr  # undelivered: warned, not failed
    out = json.loads(second.stdout.strip().splitlines()[-1])
    assert out["refused"] == out["waiting"] == len(cam1_rows)
    assert _waiting(outbox) == cam1_rows  # nothing refused was deleted
    assert wait_until(lambda: cf.stored("cam2")[0] >= out["aggregates"], 60)
    assert cf.stored("cam2")[0] == out["aggregates"]
    told = [ln for ln in second.stderr.splitlines() if f"refused {cam1_agg} " in ln]
    assert told == [
        f"edgetally: warning: the broker {url} refused {cam1_agg} (not authorized): kept in "
        "the outbox, sent again later; is this device logged in as shop1/cam1? it logs in as "
        "shop1/cam2"
    ]  # once, though every bucket was refused, and again on each retry
    last = _error_line(second.stderr)
    assert last.startswith(f"edgetally: warning: {len(cam1_rows)} messages still wait in ")
    assert f"refused {len(cam1_rows)}: {len(cam1_rows)} on {cam1_agg} (not authorized;" in last
    assert cf.stored("cam1") == (0, 0)

    # As shop1/cam1 again: the kept buckets arrive, each once, with the new ones.
    third = _run(outbox, "cam1", vtest_avi, *login, "--mqtt-password-file", str(cam1_pw))
    assert third.returncode == 0, third.stderr
    out3 = json.loads(third.stdout.strip().splitlines()[-1])
    assert out3["refused"] == out3["waiting"] == 0
    expected = len(cam1_rows) + out3["aggregates"]
    assert wait_until(lambda: cf.stored("cam1")[0] >= expected, 60)
    seqs = cf.seqs("cam1")
    assert len(seqs) == len(set(seqs)) == expected
    assert seqs[: len(cam1_rows)] == list(range(len(cam1_rows)))
    assert _waiting(outbox) == []
