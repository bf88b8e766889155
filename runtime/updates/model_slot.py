"""A model that can change under a running device.

Each camera's pipeline gets a :class:`SwappableDetector` in place of its detector. The
updater's trial run (:meth:`ModelSlot.trial_run`) loads the new model once per camera and
offers it; every camera takes it at its next frame (a frame boundary: the tracker, the line
states and the open bucket stay as they are, so nothing counted is lost or counted twice).
The new model is confirmed once every camera ran it for ``confirm_frames`` frames without an
error. If it raises on a frame, that camera goes back to the old detector at once (which
counts that same frame) and the trial fails: the updater switches ``current`` back and
reports why.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from edgetally.models.bundle import BundleManifest, BundleTarget
from edgetally.runtime.counting.pipeline import parse_counters
from edgetally.runtime.errors import ConfigError, EdgeRuntimeError
from edgetally.runtime.updates.health import DetectorHealthCheck

if TYPE_CHECKING:
    from edgetally.runtime.config import CameraConfig, DeviceConfig
    from edgetally.runtime.counting.detectors import Detector
    from edgetally.runtime.device import Pipeline, PipelineFactory
    from edgetally.runtime.power import PowerSampler

log = logging.getLogger(__name__)

Loader = Callable[[Path], "Detector"]
_PRECISIONS = {"fp32": "fp32", "fp16": "fp16", "int8": "int8", "uint8": "int8"}


class TrialError(EdgeRuntimeError):
    """The new model failed on the device after the switch (or the device stopped first)."""


class SwappableDetector:
    """Delegates to the active detector; takes an offered one at the next frame."""

    def __init__(self, detector: Detector, owner: ModelSlot, label: str | None) -> None:
        self._active = detector
        self._owner = owner
        self._label = label
        self._pending: tuple[Detector, str] | None = None
        self._previous: tuple[Detector, str | None] | None = None
        self._lock = threading.Lock()
        self.trial_frames = 0
        self.failure: str | None = None
        self.frames = 0

    # --- what the pipeline uses -------------------------------------------------------

    @property
    def info(self) -> Any:
        info = self._active.info
        return dataclasses.replace(info, model=self._label) if self._label else info

    @property
    def model_path(self) -> Path | None:
        model = getattr(self._active, "model", None)
        return getattr(model, "path", None)

    @property
    def score_threshold(self) -> float:
        return float(self._active.score_threshold)

    @score_threshold.setter
    def score_threshold(self, value: float) -> None:
        self._active.score_threshold = value

    def detect(self, image: Any) -> Any:
        with self._lock:
            if self._pending is not None:
                new, label = self._pending
                new.score_threshold = self._active.score_threshold
                self._previous = (self._active, self._label)
                self._active, self._label, self._pending = new, label, None
                self.trial_frames, self.failure = 0, None
            detector, trial = self._active, self._previous is not None
        self.frames += 1
        if self.frames % 25 == 1:
            self._owner.keep_frame(image)
        try:
            out = detector.detect(image)
        except Exception as exc:
            if not trial:
                raise
            log.error("the new model failed on a frame, back to the old one: %s", exc)
            with self._lock:
                self._revert()
                self.failure = f"{type(exc).__name__}: {' '.join(str(exc).split())[:200]}"
                old = self._active
            self._owner.changed()
            return old.detect(image)  # the old model counts this frame
        if trial:
            with self._lock:
                self.trial_frames += 1
            self._owner.changed()
        return out

    # --- what the trial uses ----------------------------------------------------------

    def offer(self, detector: Detector, label: str) -> None:
        with self._lock:
            self._pending = (detector, label)
            self.trial_frames, self.failure = 0, None

    def revert(self) -> None:
        with self._lock:
            self._revert()

    def confirm(self) -> None:
        with self._lock:
            self._previous = None  # the old detector is released

    def _revert(self) -> None:
        self._pending = None
        if self._previous is not None:
            self._active, self._label = self._previous
            self._previous = None


@dataclass(frozen=True, slots=True)
class ReferenceClip:
    """A short clip and its lines: the old and the new model must count it alike."""

    path: Path
    lines: tuple[str, ...]
    max_frames: int = 300

    def __post_init__(self) -> None:
        if not self.lines:
            raise ConfigError("a reference clip needs at least one line (x1,y1,x2,y2)")
        if not self.path.exists():
            raise ConfigError(f"reference clip not found: {self.path}")
        parse_counters(self.lines, prefix="ref")  # a bad line is a config error now

    def count(self, detector: Detector) -> float:
        """People counted crossing the lines (in + out), every frame inferred."""
        from edgetally.runtime.counting.pipeline import build_pipeline, run_count
        from edgetally.runtime.counting.sources import SourceOptions, open_source

        pipeline = build_pipeline(detector, self.lines, gate=False, prefix="ref")
        frames = open_source(str(self.path), SourceOptions(max_frames=self.max_frames))
        report = run_count(frames, pipeline)
        return float(sum(line["in"] + line["out"] for line in report.lines))


class ModelSlot:
    """The device's side of model updates: one :class:`SwappableDetector` per camera, the
    health check, the trial run, and the device's target for bundles."""

    def __init__(
        self,
        load: Loader,
        *,
        device_class: str,
        confirm_frames: int = 300,
        label: str | None = None,
        precision: str | None = None,
        sampler: Callable[[], PowerSampler | None] = lambda: None,
        power_window_s: float = 3.0,
        on_change: Callable[[str, str | None], None] | None = None,
        start_timeout_s: float = 300.0,
        reference: ReferenceClip | None = None,
    ) -> None:
        self._load = load
        self._reference = reference
        self._counts: dict[tuple[Path, float], float] = {}
        self.device_class = device_class
        self.confirm_frames = max(1, confirm_frames)
        self.label = label
        self._precision = precision
        self._sampler = sampler
        self._power_window_s = power_window_s
        self._on_change = on_change
        self._start_timeout_s = start_timeout_s
        self.proxies: list[SwappableDetector] = []
        self._frames: deque[Any] = deque(maxlen=4)
        self._cond = threading.Condition()
        self._ready = threading.Event()
        self._closed = False
        self.swaps = 0
        self.failures: list[str] = []

    # --- wiring -----------------------------------------------------------------------

    def wrap(self, factory: PipelineFactory) -> PipelineFactory:
        """A pipeline factory whose pipelines' detectors can be swapped by this slot."""

        def make(camera: CameraConfig, config: DeviceConfig) -> Pipeline:
            pipeline = factory(camera, config)
            detector = getattr(pipeline, "detector", None)
            if detector is None:
                raise EdgeRuntimeError("model updates need a pipeline with a detector")
            proxy = SwappableDetector(detector, self, self.label)
            pipeline.detector = proxy  # type: ignore[attr-defined]  # it has one (checked above)
            self.proxies.append(proxy)
            self._ready.set()
            return pipeline

        return make

    def target(self) -> BundleTarget:
        """backend:precision:class of the running model (waits until a camera loaded it)."""
        if not self._ready.wait(self._start_timeout_s):
            raise EdgeRuntimeError("no pipeline started: the device's target is not known yet")
        info = self.proxies[0].info
        precision = self._precision or _PRECISIONS.get(str(info.precision), "fp32")
        return BundleTarget(
            backend=info.backend,
            precision=precision,  # type: ignore[arg-type]  # pydantic validates it
            device_class=self.device_class,
        )

    def keep_frame(self, image: Any) -> None:
        self._frames.append(np.array(image, copy=True))

    def reference_frames(self) -> list[Any]:
        frames = list(self._frames)
        if frames:
            return frames
        rng = np.random.default_rng(0)
        return [rng.integers(0, 256, (480, 640, 3), dtype=np.uint8)]

    def in_use(self) -> Path | None:
        return self.proxies[0].model_path if self.proxies else None

    def health_check(self, runs: int = 5) -> DetectorHealthCheck:
        return DetectorHealthCheck(
            load=self._load,
            frames=self.reference_frames,
            in_use=self.in_use,
            runs=runs,
            counter=self.count_probe,
            power=self.power_probe,
        )

    def count_probe(self, model: Path) -> float | None:
        """Crossings ``model`` counts on the reference clip (kept per file and mtime, so the
        model in use is counted once); None without a reference clip."""
        if self._reference is None:
            return None
        key = (model.resolve(), model.stat().st_mtime)
        if key not in self._counts:
            self._counts[key] = self._reference.count(self._load(model))
        return self._counts[key]

    def power_probe(self, model: Path) -> float | None:
        """Mean watts of the device while ``model`` runs on the reference frames, from the
        running power sampler (measured or estimated); None without a sampler."""
        sampler = self._sampler()
        if sampler is None:
            return None
        detector = self._load(model)
        frames = self.reference_frames()
        start = time.monotonic()
        i = 0
        while time.monotonic() - start < self._power_window_s:
            detector.detect(frames[i % len(frames)])
            i += 1
        return sampler.mean_watts(start)

    # --- the trial --------------------------------------------------------------------

    def changed(self) -> None:
        with self._cond:
            self._cond.notify_all()

    def close(self) -> None:
        """The device stops: a trial in progress fails (the new model is not confirmed)."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def trial_run(self, slot: Path, manifest: BundleManifest) -> None:
        """Swap every camera to the model in ``slot``; return once each ran it for
        ``confirm_frames`` frames, or raise (the updater then rolls back)."""
        if not self._ready.is_set():
            raise TrialError("no pipeline is running")
        model = slot / manifest.model_file
        label = f"{manifest.name}@{manifest.version}"
        loaded = [self._load(model) for _ in self.proxies]
        for proxy, detector in zip(self.proxies, loaded, strict=True):
            proxy.offer(detector, label)
        failure = self._wait_for_trial()
        if failure is not None:
            for proxy in self.proxies:
                proxy.revert()
            self.failures.append(failure)
            raise TrialError(failure)
        for proxy in self.proxies:
            proxy.confirm()
        self.label = label
        self.swaps += 1
        log.warning("model %s confirmed after %d frames", label, self.confirm_frames)
        if self._on_change is not None:
            self._on_change(label, self.proxies[0].info.backend)

    def _wait_for_trial(self) -> str | None:
        with self._cond:
            while True:
                failed = [p.failure for p in self.proxies if p.failure]
                if failed:
                    return failed[0]
                if all(p.trial_frames >= self.confirm_frames for p in self.proxies):
                    return None
                if self._closed:
                    return "the device stopped before the new model was confirmed"
                self._cond.wait(1.0)


def detector_loader(
    config: DeviceConfig, family: Callable[[], str | None] = lambda: None
) -> Loader:
    """Model file -> detector on the device's backend and accelerator; ``family`` is the
    processing family for a file the zoo does not know (that of the running model)."""

    def load(model: Path) -> Detector:
        from edgetally.runtime.counting.detectors import load_detector

        return load_detector(str(model), config.backend, config.accelerator, family=family())

    return load


def family_of(proxies: Sequence[SwappableDetector]) -> str | None:
    return str(proxies[0].info.family) if proxies else None
