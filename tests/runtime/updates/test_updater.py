"""The device updater against a real fleet HTTP server: verify, A/B, health, rollback,
resumable download."""

from __future__ import annotations

import shutil
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Unpack

import httpx
import pytest
from edgetally.fleet.http.auth import TokenStore, add_token
from edgetally.fleet.http.rollout import create_rollout_app
from edgetally.fleet.rollout.service import RolloutService
from edgetally.models.bundle import (
    generate_keypair,
    load_private_key,
    load_public_key,
    sha256_file,
)
from edgetally.runtime.updates.health import OnnxHealthCheck
from edgetally.runtime.updates.updater import Updater, UpdateRequest
from edgetally.runtime.uplink.outbox import Outbox

from tests.runtime.updates.updater_support import TARGET, UpdaterOptions, make_bundle, serve


def _model_offset(bundle: Path) -> int:
    with tarfile.open(bundle) as tar:
        return tar.getmember("files/model.onnx").offset_data


@dataclass
class Fleet:
    url: str
    service: RolloutService
    keys: tuple[Path, Path]
    device_token: str
    tmp: Path

    def publish(self, bundle: Path) -> UpdateRequest:
        ref = self.service.add_bundle(bundle)
        return UpdateRequest("ro-1", f"{self.url}/bundles/{ref.sha256}", ref.sha256, ref.size)

    def smuggle(self, bundle: Path) -> UpdateRequest:
        """Put a file in the served store without the fleet's verification (a compromised
        or buggy server): the device must still refuse it."""
        sha = sha256_file(bundle)
        shutil.copyfile(bundle, self.service.bundle_path(sha, must_exist=False))
        return UpdateRequest("ro-1", f"{self.url}/bundles/{sha}", sha, bundle.stat().st_size)


@pytest.fixture
def fleet(tmp_path: Path) -> Iterator[Fleet]:
    keys = generate_keypair(tmp_path / "keys")
    tokens = tmp_path / "tokens.json"
    token = add_token(tokens, "s/d", "device")
    holder: dict[str, str] = {}
    service = RolloutService(
        tmp_path / "fleet",
        load_private_key(keys[0]),
        publish=lambda t, p: None,
        devices=lambda: ["s/d"],
        bundle_url=lambda sha: f"{holder['url']}/bundles/{sha}",
    )
    with serve(create_rollout_app(service, TokenStore.load(tokens))) as url:
        holder["url"] = url
        yield Fleet(url, service, keys, token, tmp_path)


def _updater(fleet: Fleet, **kw: Unpack[UpdaterOptions]) -> Updater:
    kw.setdefault("fleet_host", "127.0.0.1")
    return Updater(
        fleet.tmp / "device",
        load_public_key(fleet.keys[1]),
        TARGET,
        OnnxHealthCheck(),
        token=fleet.device_token,
        **kw,
    )


@pytest.fixture
def provisioned(fleet: Fleet) -> tuple[Updater, Path]:
    up = _updater(fleet)
    v1 = up.install_first(make_bundle(fleet.tmp, fleet.keys[0], "v1"))
    return up, v1


def test_good_update_switches_and_keeps_previous(
    fleet: Fleet, provisioned: tuple[Updater, Path]
) -> None:
    up, v1 = provisioned
    req = fleet.publish(make_bundle(fleet.tmp, fleet.keys[0], "v2", version="2", scale=1.05))
    result = up.apply(req)
    assert result.ok, result.reason
    assert up.current == fleet.tmp / "device" / "slots" / req.sha256
    assert up.previous == v1
    assert (fleet.tmp / "device" / "current").is_symlink()
    assert not up.trial_marker.exists()
    assert up.rollback() == v1 and up.previous == result.active


def test_flipped_byte_wrong_key_and_other_target_are_refused(
    fleet: Fleet, provisioned: tuple[Updater, Path]
) -> None:
    up, v1 = provisioned
    bundle = make_bundle(fleet.tmp, fleet.keys[0], "v2", version="2")
    data = bytearray(bundle.read_bytes())
    data[_model_offset(bundle) + 20] ^= 0x40  # inside the model file
    flipped = fleet.tmp / "flipped.bundle"
    flipped.write_bytes(bytes(data))
    other_keys = generate_keypair(fleet.tmp / "other")
    cases = {
        "does not match the manifest": fleet.smuggle(flipped),
        "does not verify with the pinned public key": fleet.smuggle(
            make_bundle(fleet.tmp / "o", other_keys[0], "v3", version="2")
        ),
        "not for this device": fleet.publish(
            make_bundle(fleet.tmp, fleet.keys[0], "v4", version="2", target="openvino:int8:npu")
        ),
    }
    for why, req in cases.items():
        result = up.apply(req)
        assert not result.ok and why in (result.reason or ""), result.reason
        assert up.current == v1
    assert sorted(p.name for p in (fleet.tmp / "device" / "slots").iterdir()) == [v1.name]


def test_fleet_refuses_to_serve_a_tampered_upload(fleet: Fleet) -> None:
    bundle = make_bundle(fleet.tmp, fleet.keys[0], "v2", version="2")
    data = bytearray(bundle.read_bytes())
    data[_model_offset(bundle) + 20] ^= 0x40
    r = httpx.put(f"{fleet.url}/bundles", content=bytes(data), headers={"Authorization": "x"})
    assert r.status_code == 401


def test_model_that_crashes_fails_its_health_check(
    fleet: Fleet, provisioned: tuple[Updater, Path]
) -> None:
    up, v1 = provisioned
    req = fleet.publish(make_bundle(fleet.tmp, fleet.keys[0], "bad", version="2", broken=True))
    result = up.apply(req)
    assert not result.ok and "model does not run" in (result.reason or "")
    assert up.current == v1 and not (fleet.tmp / "device" / "slots" / req.sha256).exists()


def test_health_budgets_latency_counts_power(
    fleet: Fleet, provisioned: tuple[Updater, Path]
) -> None:
    up, v1 = provisioned
    slow = fleet.publish(
        make_bundle(fleet.tmp, fleet.keys[0], "slow", version="2", latency_ms=1e-6)
    )
    r = up.apply(slow)
    assert not r.ok and "latency" in (r.reason or "") and up.current == v1

    drift = make_bundle(fleet.tmp, fleet.keys[0], "drift", version="2", scale=3.0)
    req = fleet.publish(drift)
    counter_up = _updater(fleet)
    counter_up._check = OnnxHealthCheck(counter=lambda m: 150.0 if req.sha256 in str(m) else 100.0)
    r = counter_up.apply(req)
    assert not r.ok and "counts on the reference clip moved 50%" in (r.reason or "")
    power_up = _updater(fleet)
    power_up._check = OnnxHealthCheck(power=lambda m: 9.0 if req.sha256 in str(m) else 5.0)
    r = power_up.apply(req)
    assert not r.ok and "power rose 80%" in (r.reason or "")
    assert power_up.current == v1


def test_crash_after_switch_rolls_back_on_restart_keeping_aggregates(
    fleet: Fleet, provisioned: tuple[Updater, Path]
) -> None:
    _up, v1 = provisioned
    outbox = Outbox(fleet.tmp / "outbox.db")
    outbox.put("edgetally/v1/s/d/agg", lambda seq, _e: b'{"old model": %d}' % seq)

    class PowerCut(BaseException):
        pass

    def trial_run(slot: Path, manifest: object) -> None:
        # the new model counts a bucket, then the device dies before confirming
        outbox.put("edgetally/v1/s/d/agg", lambda seq, _e: b'{"new model": %d}' % seq)
        raise PowerCut

    crashing = _updater(fleet, trial_run=trial_run)
    req = fleet.publish(make_bundle(fleet.tmp, fleet.keys[0], "v2", version="2", scale=1.01))
    with pytest.raises(PowerCut):
        crashing.apply(req)
    assert crashing.current is not None and crashing.current.name == req.sha256
    assert crashing.trial_marker.exists()
    outbox.close()

    restarted = _updater(fleet)
    reason = restarted.recover()
    assert reason and "rolled back" in reason
    assert restarted.current == v1 and not restarted.trial_marker.exists()
    assert restarted.recover() is None
    with Outbox(fleet.tmp / "outbox.db") as again:
        assert again.count() == 2  # both buckets survive, whichever model counted them


def test_failure_after_switch_rolls_back_at_once(
    fleet: Fleet, provisioned: tuple[Updater, Path]
) -> None:
    _up, v1 = provisioned

    def trial_run(slot: Path, manifest: object) -> None:
        raise RuntimeError("pipeline could not reload the model")

    failing = _updater(fleet, trial_run=trial_run)
    req = fleet.publish(make_bundle(fleet.tmp, fleet.keys[0], "v2", version="2", scale=1.01))
    r = failing.apply(req)
    assert not r.ok and "could not reload" in (r.reason or "")
    assert failing.current == v1 and not failing.trial_marker.exists()


class _CutAfter(httpx.BaseTransport):
    """A real HTTP transport whose response body breaks after ``limit`` bytes."""

    def __init__(self, limit: int) -> None:
        self._inner = httpx.HTTPTransport()
        self._limit = limit

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        resp = self._inner.handle_request(request)
        assert isinstance(resp.stream, httpx.SyncByteStream)
        stream: httpx.SyncByteStream = resp.stream
        limit = self._limit

        class Body(httpx.SyncByteStream):
            def __iter__(self) -> Iterator[bytes]:
                sent = 0
                for chunk in stream:
                    take = chunk[: max(0, limit - sent)]
                    sent += len(take)
                    if take:
                        yield take
                    if sent >= limit:
                        raise httpx.ReadError("connection reset")

            def close(self) -> None:
                resp.close()

        return httpx.Response(resp.status_code, headers=resp.headers, stream=Body())


def test_interrupted_download_resumes_with_range(
    fleet: Fleet, provisioned: tuple[Updater, Path]
) -> None:
    up, _v1 = provisioned
    src = fleet.tmp / "src-big"
    src.mkdir()
    big = src / "weights.bin"
    big.write_bytes(bytes(range(256)) * 4096)  # 1 MiB next to the model
    from edgetally.models.bundle import create_bundle

    from tests.runtime.updates.updater_support import write_model

    bundle = fleet.tmp / "big.bundle"
    create_bundle(
        [write_model(src / "model.onnx"), big],
        private_key=load_private_key(fleet.keys[0]),
        out=bundle,
        name="big",
        version="2",
        targets=[TARGET],
    )
    req = fleet.publish(bundle)
    half = req.size // 2
    cut = _updater(fleet, http=httpx.Client(transport=_CutAfter(half)))
    r = cut.apply(req)
    assert not r.ok and "interrupted" in (r.reason or "")
    part = fleet.tmp / "device" / "downloads" / f"{req.sha256}.part"
    have = part.stat().st_size
    assert 0 < have <= half  # what arrived before the cut is kept

    seen: list[tuple[str | None, int]] = []
    client = httpx.Client(
        event_hooks={
            "response": [
                lambda resp: seen.append((resp.request.headers.get("range"), resp.status_code))
            ]
        }
    )
    r = _updater(fleet, http=client).apply(req)
    assert r.ok, r.reason
    assert seen == [(f"bytes={have}-", 206)]
    assert up.current == fleet.tmp / "device" / "slots" / req.sha256


def test_download_needs_a_token(fleet: Fleet) -> None:
    req = fleet.publish(make_bundle(fleet.tmp, fleet.keys[0], "v2", version="2"))
    up = Updater(
        fleet.tmp / "dev2",
        load_public_key(fleet.keys[1]),
        TARGET,
        OnnxHealthCheck(),
        fleet_host="127.0.0.1",
    )
    r = up.download
    with pytest.raises(Exception, match="HTTP 401"):
        r(req)
