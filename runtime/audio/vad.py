"""Speech activity with silero-vad's ONNX model, run through onnxruntime.

The model scores 512-sample chunks of 16 kHz audio and carries a recurrent state from chunk
to chunk; like the reference wrapper, each chunk is preceded by the last 64 samples of the
previous one. The Python package ``silero_vad`` is not imported (it pulls in PyTorch): only
its data file is located.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import numpy as np
from edgetally.runtime.audio.errors import AudioError
from edgetally.runtime.audio.sources import CHUNK, RATE, Samples

CONTEXT = 64


def default_vad_model() -> Path:
    """silero_vad.onnx as shipped in the silero-vad wheel (pip install --no-deps silero-vad)."""
    spec = importlib.util.find_spec("silero_vad")
    if spec is None or not spec.submodule_search_locations:
        raise AudioError(
            "speech activity needs silero-vad's model: pip install --no-deps silero-vad, "
            "or pass --vad-model PATH (or --no-vad)"
        )
    for location in spec.submodule_search_locations:
        path = Path(location) / "data" / "silero_vad.onnx"
        if path.is_file():
            return path
    raise AudioError("the silero-vad package has no data/silero_vad.onnx; reinstall it")


class SileroVad:
    """Speech probability per 512-sample chunk at 16 kHz, with the model's recurrent state."""

    def __init__(self, model: Path | None = None, threshold: float = 0.5) -> None:
        import onnxruntime as ort

        path = model or default_vad_model()
        if not path.is_file():
            raise AudioError(f"VAD model not found: {path}")
        if not 0.0 < threshold < 1.0:
            raise AudioError(f"VAD threshold must be in (0, 1), got {threshold}")
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = 1
        opts.inter_op_num_threads = 1
        try:
            self._session: Any = ort.InferenceSession(
                str(path), sess_options=opts, providers=["CPUExecutionProvider"]
            )
        except Exception as exc:  # onnxruntime raises its own untyped errors
            raise AudioError(f"cannot load VAD model {path}: {exc}") from exc
        names = {i.name for i in self._session.get_inputs()}
        if names != {"input", "state", "sr"}:
            raise AudioError(f"{path} is not a silero-vad v5+ model (inputs {sorted(names)})")
        self.threshold = threshold
        self._sr = np.array(RATE, dtype=np.int64)
        self.reset()

    def reset(self) -> None:
        self._state = np.zeros((2, 1, 128), np.float32)
        self._context = np.zeros(CONTEXT, np.float32)

    def probability(self, chunk: Samples) -> float:
        if chunk.ndim != 1 or not 0 < chunk.size <= CHUNK:
            raise AudioError(f"VAD chunks are {CHUNK} samples at {RATE} Hz, got {chunk.shape}")
        if chunk.size < CHUNK:  # the last chunk of a file: pad with silence
            chunk = np.pad(chunk, (0, CHUNK - chunk.size))
        x = np.concatenate([self._context, chunk.astype(np.float32, copy=False)])[None, :]
        out, self._state = self._session.run(
            None, {"input": x, "state": self._state, "sr": self._sr}
        )
        self._context = x[0, -CONTEXT:].copy()
        return float(out[0, 0])

    def is_speech(self, chunk: Samples) -> bool:
        return self.probability(chunk) >= self.threshold
