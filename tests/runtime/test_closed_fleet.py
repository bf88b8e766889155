"""A device joins a closed fleet end to end: `fleet broker-config` writes the broker's
configuration, a real Mosquitto runs it (TLS, one password per device, ACL, no anonymous
clients), the fleet logs in with its service account, and `device run` (its own process, a
real clip) publishes with the device's own credentials. A wrong password, an unknown CA and
a wrong port each end with one line saying so; what the device counted stays in its outbox
and the next run with the right password delivers it, exactly once. `device update-agent`
(the agent alone) installs a rollout's bundle over the same broker."""

from __future__ import annotations

import getpass
import json
import os
import signal
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from edgetally.fleet.broker_config import generate_broker_config, parse_devices
from edgetally.fleet.config import FleetConfig
from edgetally.fleet.http.auth import add_token
from edgetally.fleet.server import FleetServer
from edgetally.models.bundle import generate_keypair
from edgetally.models.topics import topic_for
from edgetally.models.wire import DeviceStatus, to_json
from edgetally.ports import free_port
from paho.mqtt.enums import CallbackAPIVersion

from tests.conftest import Broker
from tests.runtime.updates.updater_support import make_bundle
from tests.runtime.uplink.test_publisher import wait_until

pytestmark = pytest.mark.slow
DEVICES = "shop1/cam1,shop1/cam2,shop1/cam3"
CLI = [sys.executable, "-m", "edgetally"]


@dataclass
class ClosedFleet:
    tmp: Path
    port: int
    ca: Path
    creds: dict[str, object]
    fleet: FleetServer
    pubkey: Path
    key: Path
    device_token: str

    def password(self, who: str) -> str:
        devices = self.creds["devices"]
        assert isinstance(devices, dict)
        return str(devices[who])

    def password_file(self, who: str, password: str | None = None) -> Path:
        path = self.tmp / f"{who.replace('/', '-')}.pw"
        path.write_text((password or self.password(who)) + "\n")
        return path

    def seqs(self, device: str) -> list[int]:
        """The sequence numbers of ``device``'s aggregates in the fleet's store, sorted."""
        rows = self.fleet.store.fetch(
            f"SELECT seq FROM aggregates WHERE site='shop1' AND device='{device}' ORDER BY seq"
        ).rows
        return [int(r[0]) for r in rows]

    def stored(self, device: str) -> tuple[int, int]:
        """(rows, distinct buckets) of ``device``'s aggregates in the fleet's store."""
        row = self.fleet.store.fetch(
            "SELECT count(*), count(DISTINCT (source, line, start)) FROM aggregates "
            f"WHERE site='shop1' AND device='{device}'"
        ).rows[0]
        return int(row[0]), int(row[1])


@pytest.fixture
def closed(tmp_path: Path) -> Iterator[ClosedFleet]:
    port = free_port()
    out = tmp_path / "broker"
    args = [
        "fleet",
        "broker-config",
        "--out",
        str(out),
        "--devices",
        DEVICES,
        "--port",
        str(port),
        "--bind",
        "127.0.0.1",
    ]
    if os.geteuid() == 0:  # started as root, Mosquitto drops to this user
        args += ["--run-as", getpass.getuser()]
    done = subprocess.run([*CLI, *args], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    creds = json.loads((out / "credentials.json").read_text())
    broker = Broker(port=port, config=out / "mosquitto.conf")
    broker.start()
    tokens = tmp_path / "tokens.json"
    device_token = add_token(tokens, "cam3", "device")
    key, pub = generate_keypair(tmp_path / "keys")
    fleet_pw = creds["fleet"]["password"]
    config = FleetConfig.of(
        f"mqtts://fleet:{fleet_pw}@127.0.0.1:{port}",
        str(tmp_path / "fleet.duckdb"),
        "127.0.0.1:0",
        ca_file=str(out / "ca.crt"),
        tokens_file=str(tokens),
        rollouts_dir=str(tmp_path / "rollouts"),
        fleet_key=str(key),
        rollout_tick_s=0.5,
    )
    try:
        with FleetServer(config) as fleet:
            yield ClosedFleet(tmp_path, port, out / "ca.crt", creds, fleet, pub, key, device_token)
    finally:
        broker.stop()


def _device_run(
    cf: ClosedFleet, device: str, clip: Path, *broker_args: str, drain: str = "60"
) -> subprocess.CompletedProcess[str]:
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
            str(cf.tmp / f"{device}-outbox.db"),
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


def _waiting(outbox: Path) -> list[tuple[int, str]]:
    """(row id, topic) of what waits in ``outbox``, oldest first."""
    with sqlite3.connect(outbox) as db:
        return [(i, t) for i, t in db.execute("SELECT id, topic FROM outbox ORDER BY id")]


def _aggregates(rows: list[tuple[int, str]], device: str) -> int:
    return sum(t == topic_for("shop1", device, "agg") for _, t in rows)


def _error_line(stderr: str) -> str:
    """The line the run ends with; warnings logged meanwhile come before it, in one voice."""
    lines = [ln for ln in stderr.splitlines() if ln.strip()]
    assert lines and all(ln.startswith("edgetally: ") for ln in lines), stderr
    assert sum(ln.startswith("edgetally: error:") for ln in lines) <= 1, stderr
    return lines[-1]


def test_device_publishes_with_its_own_login_every_bucket_once(
    closed: ClosedFleet, vtest_avi: Path
) -> None:
    cf = closed
    url = f"mqtts://127.0.0.1:{cf.port}"
    pw = cf.password_file("shop1/cam1")
    run = _device_run(
        cf, "cam1", vtest_avi, "--broker", url, "--mqtt-password-file", str(pw), "--ca", str(cf.ca)
    )
    assert run.returncode == 0, run.stderr
    assert cf.password("shop1/cam1") not in run.stdout + run.stderr
    produced = json.loads(run.stdout.strip().splitlines()[-1])["aggregates"]
    assert produced > 0
    assert wait_until(lambda: cf.stored("cam1")[0] >= produced, 60)
    assert cf.stored("cam1") == (produced, produced)
    assert _waiting(cf.tmp / "cam1-outbox.db") == []


def test_wrong_password_keeps_the_outbox_and_the_right_one_delivers_it(
    closed: ClosedFleet, vtest_avi: Path
) -> None:
    cf = closed
    url = f"mqtts://127.0.0.1:{cf.port}"
    run = _device_run(
        cf,
        "cam2",
        vtest_avi,
        "--broker",
        url,
        "--ca",
        str(cf.ca),
        "--mqtt-password",
        "not-the-password",
    )
    assert run.returncode == 1
    line = _error_line(run.stderr)
    assert "refused shop1/cam2: not authorised" in line and "not-the-password" not in line
    waiting = _waiting(cf.tmp / "cam2-outbox.db")
    assert _aggregates(waiting, "cam2") > 0
    assert f"{len(waiting)} messages wait in the outbox" in line
    assert cf.stored("cam2") == (0, 0)  # nothing got through

    # An unknown CA and a wrong port say so, and keep the rows too (each run counts the
    # next 60 frames of the clip: a file resumes where the last run stopped).
    other = generate_broker_config(cf.tmp / "other", parse_devices("x/y"), port=1)
    right = cf.password("shop1/cam2")
    bad_ca = _device_run(
        cf, "cam2", vtest_avi, "--broker", url, "--ca", str(other.ca_cert), "--mqtt-password", right
    )
    assert bad_ca.returncode == 1
    assert "not signed by the CA of --ca" in _error_line(bad_ca.stderr)
    wrong_port = _device_run(
        cf,
        "cam2",
        vtest_avi,
        "--broker",
        f"mqtts://127.0.0.1:{free_port()}",
        "--ca",
        str(cf.ca),
        "--mqtt-password",
        right,
        drain="1",
    )
    assert wrong_port.returncode == 3  # the broker may come back: warned, not failed
    assert "connection refused" in _error_line(wrong_port.stderr)
    kept = _waiting(cf.tmp / "cam2-outbox.db")
    assert kept[: len(waiting)] == waiting and len(kept) > len(waiting)

    # The right password, this time in the URL: everything counted arrives, once.
    rerun = _device_run(
        cf,
        "cam2",
        vtest_avi,
        "--broker",
        f"mqtts://:{right}@127.0.0.1:{cf.port}",
        "--ca",
        str(cf.ca),
    )
    assert rerun.returncode == 0, rerun.stderr
    assert right not in rerun.stdout + rerun.stderr
    expected = _aggregates(kept, "cam2") + json.loads(rerun.stdout.splitlines()[-1])["aggregates"]
    assert wait_until(lambda: cf.stored("cam2")[0] >= expected, 60)
    # Once each: every sequence number the device gave, no other. (Four passes over the
    # same clip as fast as it decodes, each stamped from when it started, may give two
    # passes a bucket with the same start, so distinct starts would not prove it.)
    assert cf.seqs("cam2") == list(range(expected))
    assert _waiting(cf.tmp / "cam2-outbox.db") == []


def _announce(cf: ClosedFleet, device: str) -> None:
    """The device's counting side says it is online (so the fleet knows it)."""
    c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"{device}-counting")
    c.username_pw_set(f"shop1/{device}", cf.password(f"shop1/{device}"))
    c.tls_set(ca_certs=str(cf.ca))
    c.connect("127.0.0.1", cf.port)
    c.loop_start()
    status = DeviceStatus.model_validate(
        {"site": "shop1", "device": device, "at": datetime.now(UTC), "state": "online"}
    )
    c.publish(topic_for("shop1", device, "status"), to_json(status), qos=1).wait_for_publish(30)
    c.disconnect()
    c.loop_stop()


def test_update_agent_alone_installs_a_rollouts_bundle(closed: ClosedFleet) -> None:
    cf = closed
    models = cf.tmp / "cam3-models"
    agent = subprocess.Popen(
        [
            *CLI,
            "device",
            "update-agent",
            "--site",
            "shop1",
            "--device-id",
            "cam3",
            "--broker",
            f"mqtts://127.0.0.1:{cf.port}",
            "--ca",
            str(cf.ca),
            "--mqtt-password-file",
            str(cf.password_file("shop1/cam3")),
            "--models-dir",
            str(models),
            "--fleet-pubkey",
            str(cf.pubkey),
            "--device-class",
            "sim",
            "--fleet-token",
            cf.device_token,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert agent.stdout is not None
        assert "listening for rollouts" in agent.stdout.readline()
        _announce(cf, "cam3")
        assert wait_until(lambda: "shop1/cam3" in cf.fleet._device_ids(), 30)
        service = cf.fleet.rollouts
        assert service is not None
        sha = service.add_bundle(make_bundle(cf.tmp, cf.key, "door-model")).sha256
        rollout = service.create(sha, "shop1/cam3", "100%").id
        assert wait_until(lambda: service.get(rollout).state == "completed", 120), service.get(
            rollout
        ).devices
        assert (models / "current").resolve().name == sha
        agent.send_signal(signal.SIGTERM)
        out, err = agent.communicate(timeout=60)
    finally:
        if agent.poll() is None:
            agent.kill()
            agent.wait()
    assert agent.returncode == 0, err
    assert "model in use: door-model@1" in out


def test_update_agent_with_a_wrong_password_stops_with_one_line(
    closed: ClosedFleet, tmp_path: Path
) -> None:
    done = subprocess.run(
        [
            *CLI,
            "device",
            "update-agent",
            "--site",
            "shop1",
            "--device-id",
            "cam3",
            "--broker",
            f"mqtts://:wrong@127.0.0.1:{closed.port}",
            "--ca",
            str(closed.ca),
            "--models-dir",
            str(tmp_path / "m"),
            "--fleet-pubkey",
            str(closed.pubkey),
            "--device-class",
            "sim",
        ],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert done.returncode == 1
    # The agent's own account (the device's password; its client id is its user name).
    assert "refused shop1/cam3/updater: not authorised" in _error_line(done.stderr)
