"""LiteRT (ai-edge-litert, the successor of tflite-runtime), with external delegates."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from edgetally.runtime.backends.base import BackendInfo, TensorSpec, describe
from edgetally.runtime.errors import BackendError


@dataclass(frozen=True, slots=True)
class LiteRtConfig:
    # Path of an external delegate library (for example libvx_delegate.so on i.MX 8M Plus,
    # libedgetpu.so.1 for Coral) and its options.
    delegate: str | None = None
    delegate_options: dict[str, str] = field(default_factory=dict)
    threads: int = 0


class LiteRtBackend:
    def __init__(self, path: Path, device: str | None, config: LiteRtConfig) -> None:
        try:
            from ai_edge_litert import interpreter as litert
        except ImportError as exc:  # pragma: no cover - a core dependency
            raise BackendError("ai-edge-litert is not installed") from exc
        delegate_path = device or config.delegate
        delegates = []
        if delegate_path and delegate_path.upper() != "CPU":
            try:
                delegates.append(litert.load_delegate(delegate_path, dict(config.delegate_options)))
            except (ValueError, OSError, RuntimeError) as exc:
                raise BackendError(
                    f"LiteRT delegate {delegate_path} failed to load: {exc}"
                ) from exc
        try:
            self._interp = litert.Interpreter(
                model_path=str(path),
                experimental_delegates=delegates or None,
                num_threads=config.threads or None,
            )
            self._interp.allocate_tensors()
        except (ValueError, RuntimeError) as exc:
            first = describe(exc)
            raise BackendError(f"LiteRT cannot load {path.name}: {first}") from exc
        used = Path(delegate_path).name if delegates and delegate_path else "CPU"
        self.info = BackendInfo("litert", used)
        self._in = self._interp.get_input_details()
        self._out = self._interp.get_output_details()
        self.inputs = tuple(
            TensorSpec(d["name"], tuple(int(x) for x in d["shape"]), np.dtype(d["dtype"]).name)
            for d in self._in
        )
        self.outputs = tuple(
            TensorSpec(d["name"], tuple(int(x) for x in d["shape"]), np.dtype(d["dtype"]).name)
            for d in self._out
        )

    @property
    def input_quantization(self) -> tuple[float, int]:
        """(scale, zero point) of the first input; (0.0, 0) when it is not quantized."""
        scale, zero = self._in[0]["quantization"]
        return float(scale), int(zero)

    @staticmethod
    def _dequantize(
        detail: dict[str, Any], raw: npt.NDArray[np.generic]
    ) -> npt.NDArray[np.generic]:
        # Full-integer models give int8/uint8 outputs: hand the post-processing real values.
        scale, zero = detail["quantization"]
        if raw.dtype in (np.int8, np.uint8) and scale:
            return ((raw.astype(np.float32) - zero) * scale).astype(np.float32)
        return np.asarray(raw)

    def run(self, inputs: list[npt.NDArray[np.generic]]) -> list[npt.NDArray[np.generic]]:
        try:
            for detail, array in zip(self._in, inputs, strict=True):
                self._interp.set_tensor(detail["index"], array)
            self._interp.invoke()
            return [self._dequantize(d, self._interp.get_tensor(d["index"])) for d in self._out]
        except (ValueError, RuntimeError) as exc:
            raise BackendError(f"LiteRT inference failed: {exc}") from exc
