"""onnxruntime, with the execution providers present on this machine."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import numpy.typing as npt
from edgetally.models.errors import ModelFileError
from edgetally.runtime.backends.base import BackendInfo, TensorSpec, describe
from edgetally.runtime.errors import BackendError
from edgetally.runtime.hardware import inference_threads

log = logging.getLogger(__name__)

_ORT_TYPES = {
    "tensor(float)": "float32",
    "tensor(float16)": "float16",
    "tensor(uint8)": "uint8",
    "tensor(int8)": "int8",
    "tensor(int32)": "int32",
    "tensor(int64)": "int64",
}


@dataclass(frozen=True, slots=True)
class OnnxRuntimeConfig:
    # Execution providers to ask for, most wanted first; CPU is always the last resort.
    providers: tuple[str, ...] = ()
    threads: int = 0  # 0: onnxruntime's default
    options: dict[str, str] = field(default_factory=dict)


def _shape(dims: list[object]) -> tuple[int | None, ...]:
    return tuple(d if isinstance(d, int) else None for d in dims)


class OnnxRuntimeBackend:
    def __init__(self, path: Path, device: str | None, config: OnnxRuntimeConfig) -> None:
        try:
            import onnxruntime as ort
        except ImportError as exc:  # an install without this runtime's extra
            raise BackendError(
                "onnxruntime is not installed: pip install 'edgetally[onnxruntime]'"
            ) from exc
        present = ort.get_available_providers()
        wanted = list(config.providers)
        if device:
            wanted.insert(
                0, device if device.endswith("ExecutionProvider") else f"{device}ExecutionProvider"
            )
        missing = [p for p in wanted if p not in present]
        if missing:
            raise BackendError(
                f"onnxruntime execution provider {', '.join(missing)} not available "
                f"(present: {', '.join(present)})"
            )
        providers = [*wanted, "CPUExecutionProvider"] if wanted else ["CPUExecutionProvider"]
        options = ort.SessionOptions()
        # On a big.LITTLE Arm SoC, onnxruntime's default (a thread per core) waits on the
        # little cores at every parallel step: the big cores only, unless told otherwise.
        threads = config.threads or inference_threads()
        if threads:
            options.intra_op_num_threads = threads
        options.log_severity_level = 3
        try:
            self._session = ort.InferenceSession(str(path), options, providers=providers)
        except Exception as exc:  # onnxruntime raises its own Fail/InvalidGraph types
            if "INVALID_PROTOBUF" in str(exc) or "Protobuf parsing failed" in str(exc):
                # The file itself is broken: no other backend will do better.
                raise ModelFileError(
                    f"corrupt model file {path.name}: not a valid ONNX model"
                ) from exc
            first = describe(exc)
            raise BackendError(f"onnxruntime cannot load {path.name}: {first}") from exc
        used = self._session.get_providers()[0].removesuffix("ExecutionProvider")
        self.info = BackendInfo("onnxruntime", used)
        self.inputs = tuple(
            TensorSpec(i.name, _shape(i.shape), _ORT_TYPES.get(i.type, i.type))
            for i in self._session.get_inputs()
        )
        self.outputs = tuple(
            TensorSpec(o.name, _shape(o.shape), _ORT_TYPES.get(o.type, o.type))
            for o in self._session.get_outputs()
        )
        self._input_names = [i.name for i in self.inputs]

    def run(self, inputs: list[npt.NDArray[np.generic]]) -> list[npt.NDArray[np.generic]]:
        try:
            result = self._session.run(None, dict(zip(self._input_names, inputs, strict=True)))
        except Exception as exc:
            raise BackendError(f"onnxruntime inference failed: {exc}") from exc
        return [np.asarray(r) for r in result]
