"""Health checks a new model must pass before the device switches to it.

:class:`OnnxHealthCheck` does it for real: onnxruntime loads the bundle's ONNX file and runs
it on reference inputs within the manifest's latency budget; then, when given, a counter
(counts on a reference clip, old vs new model) and a power probe (mean watts while running,
old vs new) must stay within the manifest's tolerances.

:class:`DetectorHealthCheck` is the same on a device: the model loads through the device's own
backend and runs on reference frames (recent camera frames); the power step compares with the
model in use, and is skipped when the probe has nothing to measure with (no power sampler).
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt
from edgetally.models.bundle import BundleManifest


@dataclass(frozen=True, slots=True)
class HealthResult:
    ok: bool
    reason: str | None = None


class HealthCheck(Protocol):
    def __call__(
        self, slot: Path, manifest: BundleManifest, old_slot: Path | None
    ) -> HealthResult: ...


ModelProbe = Callable[[Path], float | None]
"""Model file -> a number: counts on the reference clip, or mean watts while running;
None when there is nothing to measure with (the step is skipped)."""


class Runner(Protocol):
    def detect(self, image: Any) -> object: ...


def _model_file(slot: Path) -> Path | None:
    manifest_path = slot / ".manifest.json"
    if not manifest_path.exists():
        return None
    manifest = BundleManifest.model_validate_json(manifest_path.read_bytes())
    return slot / manifest.model_file


@dataclass(frozen=True, slots=True)
class OnnxHealthCheck:
    reference_inputs: Sequence[npt.NDArray[np.generic]] = ()
    runs: int = 5
    counter: ModelProbe | None = None
    power: ModelProbe | None = None
    providers: tuple[str, ...] = field(default=("CPUExecutionProvider",))

    def __call__(self, slot: Path, manifest: BundleManifest, old_slot: Path | None) -> HealthResult:
        import onnxruntime as ort

        model = slot / manifest.model_file
        try:
            session = ort.InferenceSession(str(model), providers=list(self.providers))
        except Exception as exc:
            return HealthResult(False, f"model does not load: {_one_line(exc)}")
        inputs = self._inputs(session)
        old_model = _model_file(old_slot) if old_slot is not None else None
        return judge(
            manifest,
            lambda i: session.run(None, inputs[i % len(inputs)]),
            self.runs,
            model,
            old_model,
            counter=self.counter,
            power=self.power,
        )

    def _inputs(self, session: object) -> list[dict[str, npt.NDArray[np.generic]]]:
        specs = session.get_inputs()  # type: ignore[attr-defined]  # an onnxruntime session (untyped)
        if self.reference_inputs:
            name = specs[0].name
            return [{name: x} for x in self.reference_inputs]
        feed: dict[str, npt.NDArray[np.generic]] = {}
        rng = np.random.default_rng(0)
        for spec in specs:
            shape = [d if isinstance(d, int) and d > 0 else 1 for d in spec.shape]
            dtype = np.float32 if "float" in spec.type else np.int64
            feed[spec.name] = rng.random(shape).astype(dtype)
        return [feed]


@dataclass(frozen=True, slots=True)
class DetectorHealthCheck:
    """The device's check: ``load`` (model file -> detector, through the device's backend)
    must work, the detector must run on ``frames()`` within the latency budget, and, with a
    ``power`` probe, the mean power must not rise past the budget compared with ``in_use()``
    (the model running now)."""

    load: Callable[[Path], Runner]
    frames: Callable[[], Sequence[Any]]
    in_use: Callable[[], Path | None]
    runs: int = 5
    counter: ModelProbe | None = None
    power: ModelProbe | None = None

    def __call__(self, slot: Path, manifest: BundleManifest, old_slot: Path | None) -> HealthResult:
        model = slot / manifest.model_file
        try:
            detector = self.load(model)
        except Exception as exc:
            return HealthResult(False, f"model does not load: {_one_line(exc)}")
        frames = list(self.frames())
        if not frames:
            return HealthResult(False, "no reference frames to run the model on")
        return judge(
            manifest,
            lambda i: detector.detect(frames[i % len(frames)]),
            self.runs,
            model,
            self.in_use(),
            counter=self.counter,
            power=self.power,
        )


def judge(
    manifest: BundleManifest,
    run_once: Callable[[int], object],
    runs: int,
    model: Path,
    old_model: Path | None,
    *,
    counter: ModelProbe | None = None,
    power: ModelProbe | None = None,
) -> HealthResult:
    """The steps after loading: latency over ``runs`` runs, then counts and power against
    ``old_model`` (each skipped without an old model, a probe, or a measurement)."""
    latencies = []
    try:
        for i in range(max(1, runs)):
            t0 = time.perf_counter()
            run_once(i)
            latencies.append((time.perf_counter() - t0) * 1000)
    except Exception as exc:
        return HealthResult(False, f"model does not run: {_one_line(exc)}")
    budget = manifest.health.latency_ms
    median = statistics.median(latencies)
    if median > budget:
        return HealthResult(False, f"latency {median:.1f} ms over the budget of {budget:g} ms")
    if old_model is None:
        return HealthResult(True)
    counts = _measure(counter, old_model, model)
    if counts is not None:
        old_n, new_n = counts
        delta = abs(new_n - old_n) / max(old_n, 1.0)
        if delta > manifest.health.max_count_delta:
            return HealthResult(
                False,
                f"counts on the reference clip moved {delta:.0%} ({old_n:g} -> {new_n:g}), "
                f"more than {manifest.health.max_count_delta:.0%}",
            )
    watts = _measure(power, old_model, model)
    if watts is not None:
        old_w, new_w = watts
        rise = (new_w - old_w) / max(old_w, 1e-6)
        if rise > manifest.health.max_power_increase:
            return HealthResult(
                False,
                f"power rose {rise:.0%} ({old_w:.2f} W -> {new_w:.2f} W), "
                f"more than {manifest.health.max_power_increase:.0%}",
            )
    return HealthResult(True)


def _measure(probe: ModelProbe | None, old: Path, new: Path) -> tuple[float, float] | None:
    if probe is None:
        return None
    old_v = probe(old)
    new_v = probe(new) if old_v is not None else None
    return None if old_v is None or new_v is None else (old_v, new_v)


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return (text[:200] + "...") if len(text) > 200 else text
