"""LiteRT (ai-edge-litert, the successor of tflite-runtime), with external delegates."""

from __future__ import annotations

import ctypes
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from edgetally.runtime.backends.base import BackendInfo, TensorSpec, describe
from edgetally.runtime.errors import BackendError
from edgetally.runtime.hardware import DELEGATE_OPTIONS, DELEGATE_PACKAGES

log = logging.getLogger(__name__)

# Delegates that run only models compiled for them: the custom operator the compiler puts
# in the model, and the compiler's command.
COMPILED_FOR: dict[str, tuple[bytes, str]] = {
    "libedgetpu.so.1": (b"edgetpu-custom-op", "edgetpu_compiler"),
    "libethosu_delegate.so": (b"ethos-u", "vela --accelerator-config ethos-u65-256"),
}


def check_delegate_library(path: str) -> None:
    """A one-line BackendError when the delegate library is missing or does not load."""
    name = Path(path).name
    install = DELEGATE_PACKAGES.get(name)
    hint = f": install {install}" if install else ""
    if "/" in path and not Path(path).exists():
        raise BackendError(f"LiteRT delegate library {path} not found{hint}")
    try:
        ctypes.CDLL(path)
    except OSError as exc:
        first = describe(exc)
        raise BackendError(f"LiteRT delegate library {path} does not load ({first}){hint}") from exc


def warn_if_not_compiled(model: Path, delegate: str) -> None:
    """Warn when an NPU that runs only compiled models is given a model not compiled for
    it: every operator would run on the CPU."""
    known = COMPILED_FOR.get(Path(delegate).name)
    if known is None:
        return
    marker, compiler = known
    try:
        data = model.read_bytes()
    except OSError:
        return
    if marker not in data:
        log.warning(
            "%s is not compiled for %s: it runs on the CPU; compile it first: %s %s",
            model.name,
            Path(delegate).name,
            compiler,
            model.name,
        )


@dataclass(frozen=True, slots=True)
class LiteRtConfig:
    # Path of an external delegate library (for example libvx_delegate.so on i.MX 8M Plus,
    # libethosu_delegate.so on i.MX 93, libedgetpu.so.1 for Coral) and its options (none
    # given: the known library's defaults, hardware.DELEGATE_OPTIONS).
    delegate: str | None = None
    delegate_options: dict[str, str] = field(default_factory=dict)
    threads: int = 0


class LiteRtBackend:
    def __init__(self, path: Path, device: str | None, config: LiteRtConfig) -> None:
        try:
            from ai_edge_litert import interpreter as litert
        except ImportError as exc:  # an install without this runtime's extra
            raise BackendError(
                "ai-edge-litert is not installed: pip install 'edgetally[litert]'"
            ) from exc
        delegate_path = device or config.delegate
        delegates = []
        if delegate_path and delegate_path.upper() != "CPU":
            check_delegate_library(delegate_path)
            warn_if_not_compiled(path, delegate_path)
            try:
                options = dict(config.delegate_options) or dict(
                    DELEGATE_OPTIONS.get(Path(delegate_path).name, {})
                )
                delegates.append(litert.load_delegate(delegate_path, options))
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
        self.inputs = tuple(_spec(d) for d in self._in)
        self.outputs = tuple(_spec(d) for d in self._out)

    @property
    def input_quantization(self) -> tuple[float, int]:
        """(scale, zero point) of the first input; (0.0, 0) when it is not quantized."""
        return self.inputs[0].scale, self.inputs[0].zero_point

    def _fit(self, inputs: list[npt.NDArray[np.generic]]) -> None:
        """Resize inputs whose dynamic dimensions the arrays give other sizes to."""
        resized = False
        for detail, spec, array in zip(self._in, self.inputs, inputs, strict=True):
            fits = len(spec.shape) == array.ndim and all(
                d is None or d == n for d, n in zip(spec.shape, array.shape, strict=True)
            )
            if fits and tuple(detail["shape"]) != array.shape:
                self._interp.resize_tensor_input(detail["index"], list(array.shape))
                resized = True
        if resized:
            self._interp.allocate_tensors()
            self._in = self._interp.get_input_details()
            self._out = self._interp.get_output_details()

    def run(self, inputs: list[npt.NDArray[np.generic]]) -> list[npt.NDArray[np.generic]]:
        try:
            self._fit(inputs)
            for detail, spec, array in zip(self._in, self.inputs, inputs, strict=True):
                self._interp.set_tensor(detail["index"], _quantize(spec, array))
            self._interp.invoke()
            return [
                _dequantize(spec, self._interp.get_tensor(d["index"]))
                for spec, d in zip(self.outputs, self._out, strict=True)
            ]
        except (ValueError, RuntimeError) as exc:
            raise BackendError(f"LiteRT inference failed: {exc}") from exc


_INTEGER = (np.int8, np.uint8, np.int16)


def _spec(detail: dict[str, Any]) -> TensorSpec:
    """A tensor's spec: dynamic dimensions (-1 in its signature) as None."""
    signature = detail.get("shape_signature", detail["shape"])
    dtype = np.dtype(detail["dtype"])
    scale, zero = detail["quantization"] if dtype in _INTEGER else (0.0, 0)
    return TensorSpec(
        detail["name"],
        tuple(int(x) if x >= 0 else None for x in signature),
        dtype.name,
        float(scale),
        int(zero),
    )


def _quantize(spec: TensorSpec, array: npt.NDArray[np.generic]) -> npt.NDArray[np.generic]:
    """Real values into a quantized integer input: round(x / scale) + zero, clipped."""
    if not spec.scale or array.dtype.kind != "f":
        return array
    info = np.iinfo(spec.dtype)
    q = np.round(np.asarray(array, np.float32) / spec.scale) + spec.zero_point
    # numpy's stubs type np.clip on an array of unknown dtype as Any.
    quantized: npt.NDArray[np.generic] = np.clip(q, info.min, info.max).astype(spec.dtype)
    return quantized


def _dequantize(spec: TensorSpec, raw: npt.NDArray[np.generic]) -> npt.NDArray[np.generic]:
    # Full-integer models give integer outputs: hand the post-processing real values.
    if spec.scale and raw.dtype in _INTEGER:
        return ((raw.astype(np.float32) - spec.zero_point) * spec.scale).astype(np.float32)
    return np.asarray(raw)
