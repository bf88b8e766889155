"""Speech activity with silero-vad's ONNX model, run by an inference backend.

The model scores 512-sample chunks of 16 kHz audio and carries a recurrent state from chunk
to chunk; like the reference wrapper, each chunk is preceded by the last 64 samples of the
previous one. The Python package ``silero_vad`` is not imported (it pulls in PyTorch): only
its data files are located. ``auto`` runs ``silero_vad.onnx`` on onnxruntime; OpenVINO,
which cannot read that graph, gets the package's 16 kHz variant made for it.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import numpy.typing as npt
from edgetally.models.errors import ModelFileError
from edgetally.runtime.audio.errors import AudioError
from edgetally.runtime.audio.sources import CHUNK, RATE, Samples
from edgetally.runtime.backends import open_backend
from edgetally.runtime.errors import BackendError

CONTEXT = 64
# The files of the silero-vad wheel to look for, most wanted first, by backend.
_MODEL_FILES = {"openvino": ("silero_vad_openvino_16k.onnx", "silero_vad.onnx")}


def default_vad_model(backend: str = "auto") -> Path:
    """silero-vad's model as shipped in its wheel (pip install --no-deps silero-vad): the
    variant ``backend`` reads where the wheel has one."""
    spec = importlib.util.find_spec("silero_vad")
    if spec is None or not spec.submodule_search_locations:
        raise AudioError(
            "speech activity needs silero-vad's model: pip install --no-deps silero-vad, "
            "or pass --vad-model PATH (or --no-vad)"
        )
    for name in _MODEL_FILES.get(backend, ("silero_vad.onnx",)):
        for location in spec.submodule_search_locations:
            path = Path(location) / "data" / name
            if path.is_file():
                return path
    raise AudioError("the silero-vad package has no data/silero_vad.onnx; reinstall it")


class SileroVad:
    """Speech probability per 512-sample chunk at 16 kHz, with the model's recurrent state.

    ``backend`` and ``accelerator`` pick the inference backend and its device, as for the
    detector; ``auto`` is onnxruntime on the CPU."""

    def __init__(
        self,
        model: Path | None = None,
        threshold: float = 0.5,
        *,
        backend: str = "auto",
        accelerator: str | None = None,
    ) -> None:
        path = model or default_vad_model(backend)
        if not path.is_file():
            raise AudioError(f"VAD model not found: {path}")
        if not 0.0 < threshold < 1.0:
            raise AudioError(f"VAD threshold must be in (0, 1), got {threshold}")
        try:
            self.backend = open_backend(path, "onnx", backend, accelerator, threads=1)
        except (BackendError, ModelFileError) as exc:
            raise AudioError(f"cannot load VAD model {path}: {exc}") from exc
        # v5+ takes the chunk, the state and the rate; the 16 kHz-only variants no rate.
        self._names = tuple(i.name for i in self.backend.inputs)
        if not {"input", "state"} <= set(self._names) <= {"input", "state", "sr"}:
            raise AudioError(f"{path} is not a silero-vad v5+ model (inputs {sorted(self._names)})")
        self.threshold = threshold
        self._sr = np.array(RATE, dtype=np.int64)
        self.reset()

    def reset(self) -> None:
        self._state: npt.NDArray[np.generic] = np.zeros((2, 1, 128), np.float32)
        self._context = np.zeros(CONTEXT, np.float32)

    def probability(self, chunk: Samples) -> float:
        if chunk.ndim != 1 or not 0 < chunk.size <= CHUNK:
            raise AudioError(f"VAD chunks are {CHUNK} samples at {RATE} Hz, got {chunk.shape}")
        if chunk.size < CHUNK:  # the last chunk of a file: pad with silence
            chunk = np.pad(chunk, (0, CHUNK - chunk.size))
        x = np.concatenate([self._context, chunk.astype(np.float32, copy=False)])[None, :]
        feeds = {"input": x, "state": self._state, "sr": self._sr}
        try:
            out, self._state = self.backend.run([feeds[name] for name in self._names])[:2]
        except BackendError as exc:
            raise AudioError(f"VAD: {exc}") from exc
        self._context = x[0, -CONTEXT:].copy()
        return float(np.asarray(out).reshape(-1)[0])

    def is_speech(self, chunk: Samples) -> bool:
        return self.probability(chunk) >= self.threshold
