"""`device run` with model updates, end to end: a real Mosquitto, the fleet (ingest, API,
tokens, rollouts) in process, the device as its own process on a real clip and the default
model. A bad bundle is refused while the device keeps counting, a good one is swapped in
mid-run, every bucket reaches the fleet exactly once, and a device killed while the new
model is on trial rolls back when it starts again."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from edgetally.fleet.config import FleetConfig
from edgetally.fleet.http.auth import add_token
from edgetally.fleet.rollout.service import RolloutService
from edgetally.fleet.server import FleetServer
from edgetally.models.bundle import (
    BundleTarget,
    create_bundle,
    generate_keypair,
    load_private_key,
)
from edgetally.models.zoo import resolve_model

from tests.conftest import Broker
from tests.runtime.updates.updater_support import write_model
from tests.runtime.uplink.test_publisher import wait_until

pytestmark = pytest.mark.slow
TARGET = "openvino:fp32:test-box"


@dataclass
class Setup:
    fleet: FleetServer
    service: RolloutService
    key: Path
    pubkey: Path
    token: str
    tmp: Path

    def bundle(self, name: str, version: str, model: Path) -> Path:
        out = self.tmp / f"{name}-{version}.bundle"
        create_bundle(
            [model],
            private_key=load_private_key(self.key),
            out=out,
            name=name,
            version=version,
            targets=[BundleTarget.parse(TARGET)],
        )
        return out

    def versions(self) -> tuple[Path, Path]:
        """The default model signed as version 1 and as version 2."""
        model = resolve_model("pedestrian-ssdlite").path
        return self.bundle("pedestrian-ssdlite", "1", model), self.bundle(
            "pedestrian-ssdlite", "2", model
        )

    def device_args(self, clip: Path, broker: Broker, *extra: str) -> list[str]:
        return [
            sys.executable,
            "-m",
            "edgetally",
            "device",
            "run",
            str(clip),
            "--line",
            "door=380,100,380,576",
            "--site",
            "shop",
            "--device-id",
            "box1",
            "--broker",
            broker.url,
            "--outbox",
            str(self.tmp / "outbox.db"),
            "--bucket-seconds",
            "2",
            "--drain-timeout",
            "60",
            "--json",
            "--models-dir",
            str(self.tmp / "models"),
            "--fleet-pubkey",
            str(self.pubkey),
            "--device-class",
            "test-box",
            "--fleet-token",
            self.token,
            *extra,
        ]

    def known(self) -> bool:
        rows = self.fleet.store.fetch("SELECT device FROM devices").rows
        return ("box1",) in [tuple(r) for r in rows]

    def device_state(self, rollout: str) -> tuple[str, str | None]:
        p = self.service.get(rollout).devices["shop/box1"]
        return p.state, p.reason


@pytest.fixture
def setup(tmp_path: Path, mosquitto: Broker) -> Iterator[Setup]:
    tokens = tmp_path / "tokens.json"
    token = add_token(tokens, "box1", "device")
    key, pub = generate_keypair(tmp_path / "keys")
    config = FleetConfig.of(
        mosquitto.url,
        str(tmp_path / "fleet.duckdb"),
        "127.0.0.1:0",
        tokens_file=str(tokens),
        rollouts_dir=str(tmp_path / "rollouts"),
        fleet_key=str(key),
        rollout_tick_s=0.5,
    )
    with FleetServer(config) as fleet:
        assert fleet.rollouts is not None
        yield Setup(fleet, fleet.rollouts, key, pub, token, tmp_path)


def _slot(models: Path, link: str) -> str | None:
    path = models / link
    return path.resolve().name if path.is_symlink() else None


def _json(out: str) -> dict[str, object]:
    result: dict[str, object] = json.loads(out.strip().splitlines()[-1])
    return result


def test_rollout_mid_run_bad_bundle_refused_good_one_swapped_no_bucket_lost(
    setup: Setup, mosquitto: Broker, vtest_avi: Path
) -> None:
    s = setup
    first, second = s.versions()
    broken = write_model(s.tmp / "broken.onnx")
    broken.write_bytes(broken.read_bytes()[: broken.stat().st_size // 2])  # truncated ONNX
    bad = s.bundle("broken", "2", broken)  # newer than the first, so it is tried
    models = s.tmp / "models"
    proc = subprocess.Popen(
        s.device_args(
            vtest_avi,
            mosquitto,
            "--model",
            str(first),
            "--max-frames",
            "240",
            "--realtime",
            "--confirm-frames",
            "15",
        ),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert wait_until(s.known, 120), "the device never said it is online"
        v1 = _slot(models, "current")
        assert v1 is not None  # the bundle given as --model became the first slot

        # A model that onnx cannot even load: refused, the device keeps the old one.
        r_bad = s.service.create(s.service.add_bundle(bad).sha256, "shop/box1", "100%").id
        assert wait_until(lambda: s.device_state(r_bad)[0] == "failed", 180)
        reason = s.device_state(r_bad)[1]
        assert reason is not None and "health check failed: model does not load" in reason
        assert _slot(models, "current") == v1

        # The good one is swapped in while the clip still plays, and kept.
        good = s.service.add_bundle(second).sha256
        r_good = s.service.create(good, "shop/box1", "100%").id
        assert wait_until(lambda: s.device_state(r_good)[0] == "healthy", 240)
        assert proc.poll() is None, "the rollout should land mid-run"
        assert s.service.get(r_good).state == "completed"
        out, err = proc.communicate(timeout=600)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err
    report = _json(out)
    updates = report["updates"]
    assert isinstance(updates, dict)
    assert updates["model"] == "pedestrian-ssdlite@2" and updates["swaps"] == 1
    assert updates["failures"] == []
    assert _slot(models, "current") == good and _slot(models, "previous") == v1
    assert not (models / "trial.json").exists()

    # Every bucket the device counted, before, across and after the swap, exactly once.
    produced = report["aggregates"]
    assert isinstance(produced, int) and produced > 0
    store = s.fleet.store

    def stored() -> int:
        return int(store.fetch("SELECT count(*) FROM aggregates WHERE device='box1'").rows[0][0])

    assert wait_until(lambda: stored() >= produced, 60)
    rows = store.fetch(
        "SELECT count(*), count(DISTINCT (source, line, start)), sum(in_count), sum(out_count) "
        "FROM aggregates WHERE device='box1'"
    ).rows[0]
    lines = report["lines"]
    assert isinstance(lines, list)
    assert rows[0] == rows[1] == produced
    assert (rows[2], rows[3]) == (lines[0]["in"], lines[0]["out"])
    model = store.fetch("SELECT model FROM devices WHERE device='box1'").rows[0][0]
    assert model == "pedestrian-ssdlite@2"  # the status says which model runs


def test_sigkill_while_the_new_model_is_on_trial_rolls_back_on_restart(
    setup: Setup, mosquitto: Broker, vtest_avi: Path
) -> None:
    s = setup
    first, second = s.versions()
    models = s.tmp / "models"
    proc = subprocess.Popen(
        s.device_args(
            vtest_avi,
            mosquitto,
            "--model",
            str(first),
            "--max-frames",
            "600",
            "--realtime",
            "--confirm-frames",
            "100000",  # never confirmed in this run
        ),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        assert wait_until(s.known, 120)
        v1 = _slot(models, "current")
        good = s.service.add_bundle(second).sha256
        rollout = s.service.create(good, "shop/box1", "100%").id
        assert wait_until(
            lambda: (models / "trial.json").exists() and _slot(models, "current") == good, 240
        )
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    assert s.device_state(rollout)[0] == "notified"  # no verdict yet

    again = subprocess.run(
        s.device_args(vtest_avi, mosquitto, "--model", str(first), "--max-frames", "10"),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert again.returncode == 0, again.stderr
    updates = _json(again.stdout)["updates"]
    assert isinstance(updates, dict)
    assert "rolled back" in str(updates["recovered"])
    assert updates["model"] == "pedestrian-ssdlite@1"
    assert _slot(models, "current") == v1 and not (models / "trial.json").exists()
    assert wait_until(lambda: s.device_state(rollout)[0] == "failed", 60)
    assert "restart" in str(s.device_state(rollout)[1])
