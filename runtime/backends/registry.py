"""Backends by name, each with its config class and the model formats it runs.

What was requested is kept apart from what is available: an explicit ``--backend`` that
cannot be met is an error naming what is missing; ``auto`` tries the candidates for the
model's format in order, logs each fallback, and fails only when none works.
"""

from __future__ import annotations

import importlib.util
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgetally.runtime.backends.base import Backend
from edgetally.runtime.errors import BackendError

log = logging.getLogger(__name__)


def _onnxruntime(path: Path, device: str | None, config: Any, threads: int) -> Backend:
    from edgetally.runtime.backends.onnxruntime_backend import OnnxRuntimeBackend, OnnxRuntimeConfig

    return OnnxRuntimeBackend(path, device, config or OnnxRuntimeConfig(threads=threads))


def _openvino(path: Path, device: str | None, config: Any, threads: int) -> Backend:
    from edgetally.runtime.backends.openvino_backend import OpenVinoBackend, OpenVinoConfig

    return OpenVinoBackend(path, device, config or OpenVinoConfig(threads=threads))


def _litert(path: Path, device: str | None, config: Any, threads: int) -> Backend:
    from edgetally.runtime.backends.litert_backend import LiteRtBackend, LiteRtConfig

    return LiteRtBackend(path, device, config or LiteRtConfig(threads=threads))


@dataclass(frozen=True, slots=True)
class BackendEntry:
    name: str
    module: str  # the Python module that must be importable
    formats: tuple[str, ...]
    # (model path, device or delegate, the backend's config or None, CPU threads) -> Backend
    factory: Callable[[Path, str | None, Any, int], Backend]


BACKENDS: dict[str, BackendEntry] = {
    "onnxruntime": BackendEntry("onnxruntime", "onnxruntime", ("onnx",), _onnxruntime),
    "openvino": BackendEntry(
        "openvino", "openvino", ("onnx", "openvino", "tflite", "tf-frozen"), _openvino
    ),
    "litert": BackendEntry("litert", "ai_edge_litert", ("tflite",), _litert),
}

# Which backend ``auto`` tries first for each model format.
AUTO_ORDER: dict[str, tuple[str, ...]] = {
    "onnx": ("onnxruntime", "openvino"),
    "openvino": ("openvino",),
    "tflite": ("litert", "openvino"),
    "tf-frozen": ("openvino",),
}


def available_backends() -> dict[str, bool]:
    """Which backends' Python packages are importable here."""
    return {name: importlib.util.find_spec(e.module) is not None for name, e in BACKENDS.items()}


def open_backend(
    path: Path,
    model_format: str,
    request: str = "auto",
    device: str | None = None,
    config: Any = None,
    *,
    threads: int = 0,
) -> Backend:
    """Load ``path`` on the requested backend (or the first that works, for ``auto``).

    ``threads`` caps the CPU threads of whichever backend runs it (0: the backend's own
    default); a ``config`` given for an explicit backend says it instead."""
    if request != "auto":
        entry = BACKENDS.get(request)
        if entry is None:
            raise BackendError(f"unknown backend {request!r}: expected auto, {', '.join(BACKENDS)}")
        if model_format not in entry.formats:
            raise BackendError(
                f"backend {request} cannot run {model_format} models "
                f"(it runs: {', '.join(entry.formats)})"
            )
        if importlib.util.find_spec(entry.module) is None:
            raise BackendError(
                f"backend {request} needs the Python package {entry.module}: "
                f"pip install 'edgetally[{entry.name}]'"
            )
        return entry.factory(path, device, config, threads)

    candidates = AUTO_ORDER.get(model_format, ())
    failures: list[str] = []
    for name in candidates:
        entry = BACKENDS[name]
        if importlib.util.find_spec(entry.module) is None:
            failures.append(f"{name}: package {entry.module} missing")
            continue
        try:
            # A device is backend-specific: only the first choice is asked for it.
            backend = entry.factory(path, device if not failures else None, None, threads)
        except BackendError as exc:
            failures.append(f"{name}: {exc}")
            log.info("backend %s unavailable (%s)", name, exc)
            continue
        if failures:
            log.warning("auto backend: falling back to %s (%s)", name, "; ".join(failures))
        return backend
    raise BackendError(
        f"no backend can run this {model_format} model: " + ("; ".join(failures) or "none known")
    )
