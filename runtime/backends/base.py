"""The one protocol every inference backend implements."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np
import numpy.typing as npt


@dataclass(frozen=True, slots=True)
class TensorSpec:
    name: str
    shape: tuple[int | None, ...]  # None where the dimension is dynamic
    dtype: str  # numpy dtype name
    # An integer tensor of a quantized model holds real = (q - zero_point) * scale; scale is 0
    # where the tensor holds real values or the backend cannot say.
    scale: float = 0.0
    zero_point: int = 0


@dataclass(frozen=True, slots=True)
class BackendInfo:
    """What actually runs the model: the backend, and the device or delegate it uses."""

    name: str
    device: str


class Backend(Protocol):
    """A loaded model that maps input arrays to output arrays."""

    info: BackendInfo
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]

    def run(self, inputs: list[npt.NDArray[np.generic]]) -> list[npt.NDArray[np.generic]]:
        """Run once; ``inputs`` in the order of ``self.inputs``, outputs in the order of
        ``self.outputs``. An input may take any size along a dimension its spec leaves
        dynamic (None). Where a backend knows a tensor's quantization (``scale``), a float
        input to an integer tensor is quantized and an integer output is given as real
        values (float32)."""
        ...


def describe(exc: BaseException) -> str:
    """One line from a framework's (often multi-line) error: its last meaningful line."""
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    return lines[-1] if lines else type(exc).__name__
