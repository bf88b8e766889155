"""Health checks a new model must pass before the device switches to it.

:class:`OnnxHealthCheck` does it for real: onnxruntime loads the bundle's ONNX file and runs
it on reference inputs within the manifest's latency budget; then, when given, a counter
(counts on a reference clip, old vs new model) and a power probe (mean watts while running,
old vs new) must stay within the manifest's tolerances.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

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


ModelProbe = Callable[[Path], float]
"""Model file -> a number: counts on the reference clip, or mean watts while running."""


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
        latencies = []
        try:
            for i in range(max(1, self.runs)):
                feed = inputs[i % len(inputs)]
                t0 = time.perf_counter()
                session.run(None, feed)
                latencies.append((time.perf_counter() - t0) * 1000)
        except Exception as exc:
            return HealthResult(False, f"model does not run: {_one_line(exc)}")
        budget = manifest.health.latency_ms
        median = statistics.median(latencies)
        if median > budget:
            return HealthResult(False, f"latency {median:.1f} ms over the budget of {budget:g} ms")
        old_model = _model_file(old_slot) if old_slot is not None else None
        if old_model is not None and self.counter is not None:
            old_n, new_n = self.counter(old_model), self.counter(model)
            delta = abs(new_n - old_n) / max(old_n, 1.0)
            if delta > manifest.health.max_count_delta:
                return HealthResult(
                    False,
                    f"counts on the reference clip moved {delta:.0%} ({old_n:g} -> {new_n:g}), "
                    f"more than {manifest.health.max_count_delta:.0%}",
                )
        if old_model is not None and self.power is not None:
            old_w, new_w = self.power(old_model), self.power(model)
            rise = (new_w - old_w) / max(old_w, 1e-6)
            if rise > manifest.health.max_power_increase:
                return HealthResult(
                    False,
                    f"power rose {rise:.0%} ({old_w:.2f} W -> {new_w:.2f} W), "
                    f"more than {manifest.health.max_power_increase:.0%}",
                )
        return HealthResult(True)

    def _inputs(self, session: object) -> list[dict[str, npt.NDArray[np.generic]]]:
        specs = session.get_inputs()  # type: ignore[attr-defined]
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


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return (text[:200] + "...") if len(text) > 200 else text
