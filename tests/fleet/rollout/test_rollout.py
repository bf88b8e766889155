"""The rollout state machine, without I/O."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from edgetally.fleet.rollout.plan import (
    Action,
    BundleRef,
    Notify,
    Rollback,
    Rollout,
    RolloutError,
    abort,
    expire,
    new_rollout,
    parse_stages,
    pause,
    plan_stages,
    record_report,
    resume,
    select_devices,
)

T0 = datetime(2025, 1, 1, tzinfo=UTC)
BUNDLE = BundleRef(sha256="a" * 64, name="det", version="2", size=10)
DEVICES = [f"s{i % 3}/d{i:02d}" for i in range(50)]


def test_parse_stages() -> None:
    assert parse_stages("5%,25%,100%") == (5, 25, 100)
    assert parse_stages("100") == (100,)
    for bad in ("", "5%,25%", "25%,5%,100%", "0%,100%", "x,100%", "5%,150%"):
        with pytest.raises(RolloutError):
            parse_stages(bad)


def test_plan_is_cumulative_and_fixed() -> None:
    plan = plan_stages("r1", DEVICES, (5, 25, 100))
    sizes = [sum(1 for k in plan.values() if k == s) for s in range(3)]
    assert sizes == [3, 10, 37]
    assert plan == plan_stages("r1", list(reversed(DEVICES)), (5, 25, 100))
    assert plan != plan_stages("r2", DEVICES, (5, 25, 100))


def test_selectors() -> None:
    assert len(select_devices("*", DEVICES)) == 50
    assert all(d.startswith("s1/") for d in select_devices("s1/*", DEVICES))
    assert select_devices("s0/d00,s1/d01", DEVICES) == ["s0/d00", "s1/d01"]
    for bad in ("", "d00", "a/b/c"):
        with pytest.raises(RolloutError):
            select_devices(bad, DEVICES)


def _healthy(r: Rollout, devices: Iterable[str], now: datetime = T0) -> list[Action]:
    actions: list[Action] = []
    for d in devices:
        actions += record_report(r, d, "healthy", now=now)
    return actions


def test_stage_by_stage_to_completion() -> None:
    r, actions = new_rollout("r1", BUNDLE, "*", (5, 25, 100), DEVICES, now=T0)
    first = [a.device for a in actions]
    assert all(isinstance(a, Notify) for a in actions) and len(first) == 3
    nxt = _healthy(r, first[:2])
    assert nxt == [] and r.stage == 0
    nxt = _healthy(r, first[2:])
    assert r.stage == 1 and len(nxt) == 10 and all(isinstance(a, Notify) for a in nxt)
    last = _healthy(r, [a.device for a in nxt])
    assert r.stage == 2 and len(last) == 37
    assert _healthy(r, [a.device for a in last]) == []
    assert r.state == "completed"
    events = [e.event for e in r.history]
    assert events.count("stage passed") == 3 and events[-1] == "completed"


def test_failure_halts_and_rolls_back_the_stage() -> None:
    r, actions = new_rollout("r1", BUNDLE, "*", (5, 25, 100), DEVICES, now=T0)
    first = [a.device for a in actions]
    assert _healthy(r, first[:1]) == []
    back = record_report(r, first[1], "failed", "latency 900 ms > budget 500 ms", now=T0)
    assert r.state == "halted"
    # the healthy one and the one that has not reported yet are told to roll back
    assert {a.device for a in back} == {first[0], first[2]}
    assert all(isinstance(a, Rollback) for a in back)
    assert sum(1 for p in r.devices.values() if p.state == "waiting") == 47
    assert "latency 900 ms" in r.history[-3].detail or any("latency" in e.detail for e in r.history)
    # later reports are recorded but never advance a halted rollout
    assert record_report(r, first[2], "healthy", now=T0) == []
    assert r.state == "halted" and r.stage == 0


def test_failure_ratio_tolerates_some_failures() -> None:
    r, actions = new_rollout(
        "r1", BUNDLE, "*", (100,), DEVICES[:10], success_ratio=0.8, failure_ratio=0.2, now=T0
    )
    ds = [a.device for a in actions]
    record_report(r, ds[0], "failed", "x", now=T0)
    record_report(r, ds[1], "failed", "x", now=T0)
    states = [r.state]
    _healthy(r, ds[2:])
    states.append(r.state)
    assert states == ["running", "completed"]


def test_pause_resume_abort() -> None:
    r, actions = new_rollout("r1", BUNDLE, "*", (5, 100), DEVICES, now=T0)
    pause(r, now=T0)
    assert _healthy(r, [a.device for a in actions]) == []  # paused: no advance
    assert r.stage == 0
    with pytest.raises(RolloutError, match="paused"):
        pause(r, now=T0)
    nxt = resume(r, now=T0)
    assert r.stage == 1 and len(nxt) == 47
    back = abort(r, now=T0)
    assert r.state == "aborted" and len(back) == 50
    with pytest.raises(RolloutError, match="aborted"):
        resume(r, now=T0)


def test_silent_devices_time_out() -> None:
    r, actions = new_rollout("r1", BUNDLE, "*", (5, 100), DEVICES, report_timeout_s=60, now=T0)
    assert expire(r, now=T0 + timedelta(seconds=30)) == []
    back = expire(r, now=T0 + timedelta(seconds=61))
    assert r.state == "halted" and all(isinstance(a, Rollback) for a in back)
    assert "no report within 60 s" in (r.devices[actions[0].device].reason or "")


def test_unknown_device_and_empty_selection() -> None:
    r, _ = new_rollout("r1", BUNDLE, "*", (100,), DEVICES, now=T0)
    with pytest.raises(RolloutError, match="not part"):
        record_report(r, "zz/zz", "healthy", now=T0)
    with pytest.raises(RolloutError, match="matches no"):
        new_rollout("r2", BUNDLE, "nope/*", (100,), DEVICES, now=T0)


def test_persisted_form_round_trips() -> None:
    from edgetally.fleet.rollout.plan import Rollout

    r, actions = new_rollout("r1", BUNDLE, "*", (5, 100), DEVICES, now=T0)
    record_report(r, actions[0].device, "failed", "boom", now=T0)
    again = Rollout.model_validate_json(r.model_dump_json())
    assert again == r


def test_a_rollback_bundle_is_announced_as_one(tmp_path: Path) -> None:
    """The command says rollback only for a bundle whose signed manifest is a rollback (the
    device needs both)."""
    from edgetally.fleet.rollout.service import RolloutService
    from edgetally.models.bundle import generate_keypair, load_private_key, load_public_key
    from edgetally.models.commands import open_command

    from tests.runtime.updates.updater_support import make_bundle

    keys = generate_keypair(tmp_path / "keys")
    sent: list[bytes] = []
    service = RolloutService(
        tmp_path / "fleet",
        load_private_key(keys[0]),
        publish=lambda t, p: sent.append(p),
        devices=lambda: ["s/d"],
        bundle_url=lambda sha: f"http://fleet/bundles/{sha}",
    )
    plain = service.add_bundle(make_bundle(tmp_path, keys[0], "v5", version="5"))
    back = service.add_bundle(make_bundle(tmp_path, keys[0], "v4r", version="4", rollback_of="5"))
    assert (plain.rollback_of, back.rollback_of) == (None, "5")
    service.create(plain.sha256, "*", "100%")
    service.create(back.sha256, "*", "100%")
    first, second = (open_command(p, load_public_key(keys[1])) for p in sent)
    assert first.rollback is False and first.version == "5"
    assert second.rollback is True and second.version == "4"
