"""Staged rollouts of a signed bundle: pure state machine, no I/O.

A rollout puts the selected devices in a fixed, pseudo-random order and cuts it into
cumulative stages (``5%,25%,100%`` of 50 devices: 3, then 13, then 50). The devices of a
stage are told to update; the rollout moves to the next stage once at least
``success_ratio`` of the stage reported healthy, and halts as soon as more than
``failure_ratio`` of it failed: then every device that installed the bundle is told to roll
back. Operators may pause, resume and abort (which also rolls back). Every step lands in
``history``.

Each transition returns the :class:`Action` s the caller must send (MQTT commands).
"""

from __future__ import annotations

import fnmatch
import hashlib
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Literal

from edgetally.fleet.errors import FleetError
from edgetally.models.wire import UpdateOutcome
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

RolloutState = Literal["running", "paused", "halted", "aborted", "completed"]
DeviceState = Literal["waiting", "notified", "healthy", "failed", "rolled_back"]
ROLLOUT_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$"


class RolloutError(FleetError):
    """A rollout request that cannot be carried out (bad stages, selector, state change)."""


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class DeviceProgress(_Model):
    stage: int = Field(ge=0)
    state: DeviceState = "waiting"
    reason: str | None = None
    notified_at: AwareDatetime | None = None
    updated_at: AwareDatetime | None = None


class HistoryEvent(_Model):
    at: AwareDatetime
    event: str
    detail: str = ""


class BundleRef(_Model):
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    name: str
    version: str
    size: int = Field(ge=0)
    rollback_of: str | None = None  # from the signed manifest: a deliberate rollback


class Rollout(_Model):
    """One rollout as persisted (``rollouts/<id>.json``)."""

    schema_version: Literal[1] = 1
    id: str = Field(pattern=ROLLOUT_ID_PATTERN)
    bundle: BundleRef
    selector: str
    stages: tuple[float, ...]
    success_ratio: float = Field(gt=0, le=1)
    failure_ratio: float = Field(ge=0, lt=1)
    report_timeout_s: float = Field(gt=0)
    state: RolloutState = "running"
    stage: int = 0
    created_at: AwareDatetime
    devices: dict[str, DeviceProgress]
    history: list[HistoryEvent] = Field(default_factory=list)

    def stage_devices(self, stage: int | None = None) -> list[str]:
        k = self.stage if stage is None else stage
        return [d for d, p in self.devices.items() if p.stage == k]

    def counts(self, stage: int | None = None) -> dict[str, int]:
        out = {s: 0 for s in ("waiting", "notified", "healthy", "failed", "rolled_back")}
        for d in self.stage_devices(stage):
            out[self.devices[d].state] += 1
        return out


@dataclass(frozen=True, slots=True)
class Notify:
    """Tell ``device`` (site/device) to install the rollout's bundle."""

    device: str


@dataclass(frozen=True, slots=True)
class Rollback:
    """Tell ``device`` to go back to its previous model."""

    device: str


Action = Notify | Rollback


def parse_stages(text: str) -> tuple[float, ...]:
    """``5%,25%,100%`` -> (5.0, 25.0, 100.0): increasing, ending at 100."""
    out: list[float] = []
    for part in text.split(","):
        item = part.strip().removesuffix("%").strip()
        try:
            value = float(item)
        except ValueError:
            raise RolloutError(f"stage {part.strip()!r} is not a percentage like 25%") from None
        if not 0 < value <= 100 or math.isnan(value):
            raise RolloutError(f"stage {part.strip()!r} must be above 0% and at most 100%")
        if out and value <= out[-1]:
            raise RolloutError(f"stages must increase: {text!r}")
        out.append(value)
    if not out or out[-1] != 100:
        raise RolloutError(f"the last stage must be 100% (got {text!r})")
    return tuple(out)


def select_devices(selector: str, known: Iterable[str]) -> list[str]:
    """Devices (``site/device``) matching any comma-separated glob: ``*``, ``shop1/*``."""
    patterns = [p.strip() for p in selector.split(",") if p.strip()]
    if not patterns:
        raise RolloutError("the selector is empty: use e.g. '*', 'shop1/*' or 'shop1/cam2'")
    for p in patterns:
        if p != "*" and p.count("/") != 1:
            raise RolloutError(f"selector {p!r} must look like site/device (globs allowed) or *")
    return sorted(d for d in set(known) if any(fnmatch.fnmatchcase(d, p) for p in patterns))


def plan_stages(rollout_id: str, devices: Sequence[str], stages: Sequence[float]) -> dict[str, int]:
    """Device -> stage index: a fixed shuffle (by rollout id) cut at cumulative percentages;
    every stage gets at least one device when there are enough devices."""
    order = sorted(devices, key=lambda d: hashlib.sha256(f"{rollout_id}|{d}".encode()).digest())
    n = len(order)
    cut_prev = 0
    out: dict[str, int] = {}
    for k, pct in enumerate(stages):
        cut = n if pct >= 100 else min(n, max(cut_prev + 1, math.ceil(n * pct / 100)))
        for d in order[cut_prev:cut]:
            out[d] = k
        cut_prev = cut
    return out


def new_rollout(
    rollout_id: str,
    bundle: BundleRef,
    selector: str,
    stages: Sequence[float],
    known_devices: Iterable[str],
    *,
    success_ratio: float = 1.0,
    failure_ratio: float = 0.0,
    report_timeout_s: float = 900.0,
    now: datetime | None = None,
) -> tuple[Rollout, list[Action]]:
    """Create a rollout and notify its first stage."""
    if not 0 < success_ratio <= 1 or not 0 <= failure_ratio < 1:
        raise RolloutError("success ratio must be in (0, 1] and failure ratio in [0, 1)")
    devices = select_devices(selector, known_devices)
    if not devices:
        raise RolloutError(f"selector {selector!r} matches no known device")
    now = now or datetime.now(UTC)
    plan = plan_stages(rollout_id, devices, stages)
    rollout = Rollout(
        id=rollout_id,
        bundle=bundle,
        selector=selector,
        stages=tuple(stages),
        success_ratio=success_ratio,
        failure_ratio=failure_ratio,
        report_timeout_s=report_timeout_s,
        created_at=now,
        devices={d: DeviceProgress(stage=k) for d, k in plan.items()},
    )
    _log(rollout, now, "created", f"{len(devices)} devices, stages {_stages_text(stages)}")
    return rollout, _start_stage(rollout, now)


def record_report(
    rollout: Rollout,
    device: str,
    outcome: UpdateOutcome,
    reason: str | None = None,
    *,
    now: datetime | None = None,
) -> list[Action]:
    """A device's report; returns what to send next (next stage, or rollbacks)."""
    now = now or datetime.now(UTC)
    progress = rollout.devices.get(device)
    if progress is None:
        raise RolloutError(f"device {device} is not part of rollout {rollout.id}")
    if progress.state == "waiting":
        raise RolloutError(f"device {device} reported before it was told to update")
    progress.state = outcome
    progress.reason = reason
    progress.updated_at = now
    detail = f"{device}" + (f": {reason}" if reason else "")
    _log(rollout, now, f"device {outcome}", detail)
    return _evaluate(rollout, now)


def expire(rollout: Rollout, *, now: datetime | None = None) -> list[Action]:
    """Count devices silent for longer than ``report_timeout_s`` as failed."""
    now = now or datetime.now(UTC)
    if rollout.state != "running":
        return []
    limit = timedelta(seconds=rollout.report_timeout_s)
    actions: list[Action] = []
    for device in rollout.stage_devices():
        p = rollout.devices[device]
        if p.state == "notified" and p.notified_at is not None and now - p.notified_at > limit:
            actions += record_report(
                rollout,
                device,
                "failed",
                f"no report within {rollout.report_timeout_s:g} s",
                now=now,
            )
    return actions


def pause(rollout: Rollout, *, now: datetime | None = None) -> list[Action]:
    _require(rollout, ("running",), "pause")
    rollout.state = "paused"
    _log(rollout, now or datetime.now(UTC), "paused", f"at stage {rollout.stage + 1}")
    return []


def resume(rollout: Rollout, *, now: datetime | None = None) -> list[Action]:
    _require(rollout, ("paused",), "resume")
    now = now or datetime.now(UTC)
    rollout.state = "running"
    _log(rollout, now, "resumed", f"at stage {rollout.stage + 1}")
    return _evaluate(rollout, now)


def abort(rollout: Rollout, *, now: datetime | None = None) -> list[Action]:
    _require(rollout, ("running", "paused", "halted"), "abort")
    now = now or datetime.now(UTC)
    rollout.state = "aborted"
    _log(rollout, now, "aborted", f"at stage {rollout.stage + 1}")
    return _roll_back_installed(rollout, now)


def _evaluate(rollout: Rollout, now: datetime) -> list[Action]:
    if rollout.state != "running":
        return []
    devices = rollout.stage_devices()
    size = len(devices)
    counts = rollout.counts()
    failed = counts["failed"] + counts["rolled_back"]
    if size and failed / size > rollout.failure_ratio:
        rollout.state = "halted"
        _log(
            rollout,
            now,
            "halted",
            f"stage {rollout.stage + 1}: {failed} of {size} devices failed "
            f"(more than {rollout.failure_ratio:.0%})",
        )
        return _roll_back_installed(rollout, now)
    if size and counts["healthy"] / size + 1e-12 >= rollout.success_ratio:
        _log(
            rollout,
            now,
            "stage passed",
            f"stage {rollout.stage + 1}: {counts['healthy']} of {size} devices healthy",
        )
        if rollout.stage + 1 >= len(rollout.stages):
            rollout.state = "completed"
            _log(rollout, now, "completed", f"{len(rollout.devices)} devices")
            return []
        rollout.stage += 1
        return _start_stage(rollout, now)
    return []


def _start_stage(rollout: Rollout, now: datetime) -> list[Action]:
    devices = rollout.stage_devices()
    _log(
        rollout,
        now,
        "stage started",
        f"stage {rollout.stage + 1} of {len(rollout.stages)}: {len(devices)} devices",
    )
    actions: list[Action] = []
    for d in devices:
        p = rollout.devices[d]
        p.state = "notified"
        p.notified_at = now
        actions.append(Notify(d))
    if not devices:  # an empty stage (fewer devices than stages) passes at once
        return actions + _evaluate_empty(rollout, now)
    return actions


def _evaluate_empty(rollout: Rollout, now: datetime) -> list[Action]:
    if rollout.stage + 1 >= len(rollout.stages):
        rollout.state = "completed"
        _log(rollout, now, "completed", f"{len(rollout.devices)} devices")
        return []
    rollout.stage += 1
    return _start_stage(rollout, now)


def _roll_back_installed(rollout: Rollout, now: datetime) -> list[Action]:
    """Every device that may run the new bundle (healthy, or told and not yet reported)."""
    actions: list[Action] = []
    for d, p in rollout.devices.items():
        if p.state in ("healthy", "notified"):
            actions.append(Rollback(d))
            p.updated_at = now
    if actions:
        _log(rollout, now, "rollback sent", f"{len(actions)} devices")
    return actions


def _require(rollout: Rollout, states: tuple[RolloutState, ...], what: str) -> None:
    if rollout.state not in states:
        raise RolloutError(f"cannot {what} rollout {rollout.id}: it is {rollout.state}")


def _log(rollout: Rollout, now: datetime, event: str, detail: str) -> None:
    rollout.history.append(HistoryEvent(at=now, event=event, detail=detail))


def _stages_text(stages: Sequence[float]) -> str:
    return ",".join(f"{s:g}%" for s in stages)
