"""`device run` with model updates: the counting device and its update agent side by side.

At start the updater recovers (a trial marker left by a crash switches ``current`` back),
the model comes from ``MODELS_DIR/current`` when there is one (else the configured model; a
signed bundle given as the model is installed as the first slot), and the agent listens on
the device's cmd topic on the same broker. Bundles are downloaded from ``fleet_url``, or
without one only from the broker's host. A rollout swaps the pipelines' detectors at a
frame boundary (:mod:`edgetally.runtime.updates.model_slot`) and the status says which model runs.
The agent logs in to the broker as the device does (:meth:`DeviceConfig.broker_login`).

:func:`run_agent` is the agent alone (``device update-agent``), for a device whose counting
runs elsewhere: it installs, checks and switches ``MODELS_DIR/current`` for whatever loads it.
"""

from __future__ import annotations

import tarfile
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from edgetally.models.bundle import BundleManifest, BundleTarget, load_public_key
from edgetally.models.commands import DEFAULT_MAX_AGE_S
from edgetally.runtime.config import DeviceConfig
from edgetally.runtime.device import Device, DeviceReport, default_pipeline
from edgetally.runtime.errors import ConfigError, EdgeRuntimeError
from edgetally.runtime.types import Progress
from edgetally.runtime.updates.agent import UpdateAgent
from edgetally.runtime.updates.health import DetectorHealthCheck, HealthCheck, OnnxHealthCheck
from edgetally.runtime.updates.model_slot import (
    ModelSlot,
    ReferenceClip,
    detector_loader,
    family_of,
)
from edgetally.runtime.updates.updater import DEFAULT_MAX_BUNDLE_BYTES, Updater
from edgetally.runtime.uplink.broker import BrokerLogin


@dataclass(frozen=True, slots=True)
class UpdateOptions:
    models_dir: Path
    fleet_pubkey: Path
    device_class: str
    fleet_url: str | None = None
    fleet_token: str | None = field(default=None, repr=False)
    confirm_frames: int = 300
    precision: str | None = None
    reference: ReferenceClip | None = None
    max_bundle_bytes: int = DEFAULT_MAX_BUNDLE_BYTES
    max_command_age_s: float = DEFAULT_MAX_AGE_S  # older fleet commands are refused


@dataclass(frozen=True, slots=True)
class UpdateSummary:
    model: str | None  # the model in use at the end
    recovered: str | None  # why the start rolled back, when it did
    swaps: int  # models switched to and confirmed during this run
    failures: tuple[str, ...]  # trials that failed after the switch

    def as_json(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "recovered": self.recovered,
            "swaps": self.swaps,
            "failures": list(self.failures),
        }


def slot_manifest(slot: Path) -> BundleManifest:
    return BundleManifest.model_validate_json((slot / ".manifest.json").read_bytes())


def _is_bundle(model: str) -> bool:
    path = Path(model)
    return path.is_file() and tarfile.is_tarfile(path)


def run_with_updates(
    config: DeviceConfig,
    options: UpdateOptions,
    stop: threading.Event,
    progress: Progress | None = None,
) -> tuple[DeviceReport, UpdateSummary]:
    """Run ``config``'s device with an update agent; returns its report and what changed
    (``progress`` as :class:`Device` takes it)."""
    device: Device | None = None

    def on_change(label: str, backend: str | None) -> None:
        if device is not None:
            device.set_model(label, backend)

    def sampler() -> Any:
        return getattr(device, "power_sampler", None)

    slot = ModelSlot(
        detector_loader(config, lambda: family_of(slot.proxies)),
        device_class=options.device_class,
        confirm_frames=options.confirm_frames,
        precision=options.precision,
        sampler=sampler,
        power_window_s=max(3.0, 3 * config.power.interval_s),
        on_change=on_change,
        reference=options.reference,
    )
    login = config.broker_login()
    updater = Updater(
        options.models_dir,
        load_public_key(options.fleet_pubkey),
        slot.target,
        slot.health_check(),
        token=options.fleet_token,
        trial_run=slot.trial_run,
        fleet_url=options.fleet_url,
        fleet_host=login.address.host,
        max_bundle_bytes=options.max_bundle_bytes,
        https_only=login.address.tls,  # the token never in clear beside a TLS broker
    )
    recovered = updater.recover()
    if updater.current is None and _is_bundle(config.model):
        updater.install_first(Path(config.model), any_target=True)
    current = updater.current
    if current is not None:
        manifest = slot_manifest(current)
        config = config.model_copy(update={"model": str(current / manifest.model_file)})
        slot.label = f"{manifest.name}@{manifest.version}"
    elif _is_bundle(config.model):
        raise ConfigError(f"model {config.model}: a bundle, but it could not be installed")
    agent = UpdateAgent(
        updater,
        config.site,
        config.device,
        login=login,
        max_command_age_s=options.max_command_age_s,
    )
    device = Device(
        config, pipeline_factory=slot.wrap(default_pipeline), stop=stop, progress=progress
    )
    agent.start(wait=False)
    try:
        report = device.run()
    finally:
        slot.close()
        agent.stop()
    model = slot.proxies[0].info.model if slot.proxies else None
    summary = UpdateSummary(model, recovered, slot.swaps, tuple(slot.failures))
    return report, summary


def _label(slot: Path | None) -> str | None:
    if slot is None:
        return None
    manifest = slot_manifest(slot)
    return f"{manifest.name}@{manifest.version}"


def _standalone_check(backend: str, models_dir: Path) -> HealthCheck:
    """ONNX models are checked with ONNX Runtime; other backends load through the device's
    detectors and run on a reference frame (there is no camera to take one from)."""
    if backend == "onnxruntime":
        return OnnxHealthCheck()

    def load(model: Path) -> Any:
        from edgetally.runtime.counting.detectors import load_detector

        return load_detector(str(model), backend)

    def in_use() -> Path | None:
        link = models_dir / "current"
        slot = link.resolve() if link.is_symlink() else None
        return None if slot is None else slot / slot_manifest(slot).model_file

    frame = np.random.default_rng(0).integers(0, 256, (480, 640, 3), dtype=np.uint8)
    return DetectorHealthCheck(load=load, frames=lambda: [frame], in_use=in_use)


def run_agent(
    login: BrokerLogin,
    site: str,
    device: str,
    options: UpdateOptions,
    stop: threading.Event,
    *,
    backend: str = "onnxruntime",
    on_ready: Callable[[], None] = lambda: None,
) -> str | None:
    """The update agent alone until ``stop``: takes part in rollouts for ``site/device``
    (target ``backend:precision:device_class``); returns the model current at the end. A
    refused login or a failed TLS handshake ends it with an error. ``on_ready`` is called
    once the agent listens on its cmd topic."""
    target = BundleTarget(
        backend=backend,
        precision=options.precision or "fp32",  # type: ignore[arg-type]  # pydantic validates it
        device_class=options.device_class,
    )
    updater = Updater(
        options.models_dir,
        load_public_key(options.fleet_pubkey),
        target,
        _standalone_check(backend, options.models_dir),
        token=options.fleet_token,
        fleet_url=options.fleet_url,
        fleet_host=login.address.host,
        max_bundle_bytes=options.max_bundle_bytes,
        https_only=login.address.tls,  # the token never in clear beside a TLS broker
    )
    agent = UpdateAgent(
        updater, site, device, login=login, max_command_age_s=options.max_command_age_s
    )
    agent.start(wait=False)
    ready = False
    try:
        while not stop.wait(0.2):
            if agent.subscribed and not ready:
                ready = True
                on_ready()
            if agent.fatal:
                raise EdgeRuntimeError(f"update agent {site}/{device}: {agent.problem}")
    finally:
        agent.stop()
    return _label(updater.current)
