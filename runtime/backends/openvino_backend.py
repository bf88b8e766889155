"""OpenVINO on CPU, GPU, NPU or AUTO; reads ONNX, IR, TFLite and TF frozen graphs."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import numpy.typing as npt
from edgetally.runtime.backends.base import BackendInfo, TensorSpec, describe
from edgetally.runtime.errors import BackendError


@dataclass(frozen=True, slots=True)
class OpenVinoConfig:
    device: str = "CPU"  # CPU, GPU, NPU, AUTO (or AUTO:NPU,CPU ...)
    performance_hint: str = "LATENCY"
    threads: int = 0
    properties: dict[str, str] = field(default_factory=dict)


def _dims(partial: object) -> tuple[int | None, ...]:
    dims = []
    for d in partial:  # type: ignore[attr-defined]  # an OpenVINO PartialShape (untyped)
        dims.append(d.get_length() if d.is_static else None)
    return tuple(dims)


class OpenVinoBackend:
    def __init__(self, path: Path, device: str | None, config: OpenVinoConfig) -> None:
        try:
            import openvino as ov
        except ImportError as exc:  # an install without this runtime's extra
            raise BackendError(
                "openvino is not installed: pip install 'edgetally[openvino]'"
            ) from exc
        core = ov.Core()
        target = (device or config.device).upper()
        present = core.available_devices
        base = target.split(":")[0].split(".")[0]
        if base not in ("AUTO", "MULTI", "HETERO") and not any(
            d == base or d.startswith(base + ".") for d in present
        ):
            raise BackendError(
                f"OpenVINO device {target} not available (present: {', '.join(present)})"
            )
        try:
            model = core.read_model(str(path))
        except Exception as exc:
            first = describe(exc)
            raise BackendError(f"OpenVINO cannot read {path.name}: {first}") from exc
        self._dynamic = any(not i.get_partial_shape().is_static for i in model.inputs)
        props: dict[str, object] = {"PERFORMANCE_HINT": config.performance_hint}
        if config.threads and base == "CPU":
            props["INFERENCE_NUM_THREADS"] = config.threads
        props.update(config.properties)
        try:
            self._compiled = core.compile_model(model, target, props)
        except Exception as exc:
            first = describe(exc)
            raise BackendError(
                f"OpenVINO cannot compile {path.name} for {target}: {first}"
            ) from exc
        self._request = self._compiled.create_infer_request()
        self.info = BackendInfo("openvino", target)
        self.inputs = tuple(
            TensorSpec(
                i.get_any_name(), _dims(i.get_partial_shape()), i.get_element_type().to_dtype().name
            )
            for i in model.inputs
        )
        self.outputs = tuple(
            TensorSpec(
                o.get_any_name(), _dims(o.get_partial_shape()), o.get_element_type().to_dtype().name
            )
            for o in model.outputs
        )

    def run(self, inputs: list[npt.NDArray[np.generic]]) -> list[npt.NDArray[np.generic]]:
        try:
            result = self._request.infer(inputs)
        except Exception as exc:
            raise BackendError(f"OpenVINO inference failed: {exc}") from exc
        return [np.asarray(result[o]) for o in self._compiled.outputs]
