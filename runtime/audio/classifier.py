"""Sound events from any ONNX or TFLite audio classifier with a class-map CSV, run by the
runtime's inference backends (onnxruntime, OpenVINO, LiteRT and their accelerators).

The class map uses YAMNet's format: a header line, then ``index,mid,display_name`` per class.
What the model takes is read from its input shape:

* rank 1 or 2 (``[N]``, ``[1, N]``): a 16 kHz mono waveform of N samples (YAMNet takes 15600);
  a dynamic N uses ``window_seconds``.
* rank 3 or 4 (``[1, frames, mels]``, ``[1, 1, frames, mels]``): a log-mel patch, computed here
  as YAMNet does: 25 ms Hann windows every 10 ms, ``mels`` bands from 125 to 7500 Hz,
  ``log(mel + 0.001)``.

The output may be ``[classes]`` or ``[frames, classes]`` (scores per frame): the window's
score per class is its maximum over frames.
"""

from __future__ import annotations

import csv
import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Protocol

import numpy as np
import numpy.typing as npt
from edgetally.models.errors import ModelFileError
from edgetally.runtime.audio.errors import AudioError
from edgetally.runtime.audio.sources import RATE, Samples
from edgetally.runtime.backends import Backend, TensorSpec, open_backend
from edgetally.runtime.errors import BackendError

MEL_HOP = 160
MEL_WIN = 400
MEL_FMIN, MEL_FMAX = 125.0, 7500.0


class SoundClassifier(Protocol):
    """Scores one window of 16 kHz mono audio against ``labels``."""

    @property
    def labels(self) -> tuple[str, ...]: ...

    @property
    def window(self) -> int:
        """Samples per window at 16 kHz."""
        ...

    def scores(self, window: Samples) -> npt.NDArray[np.float32]: ...


def read_class_map(path: Path) -> tuple[str, ...]:
    """display_name per class index from a YAMNet-style CSV (index,mid,display_name)."""
    if not path.is_file():
        raise AudioError(f"class map not found: {path}")
    with path.open(newline="", encoding="utf-8") as f:
        rows = list(csv.reader(f))
    if not rows or [c.strip() for c in rows[0][:3]] != ["index", "mid", "display_name"]:
        raise AudioError(f"{path}: class map must start with the header index,mid,display_name")
    labels: dict[int, str] = {}
    for lineno, row in enumerate(rows[1:], start=2):
        if not row:
            continue
        if len(row) < 3:
            raise AudioError(f"{path}:{lineno}: expected index,mid,display_name")
        try:
            index = int(row[0])
        except ValueError:
            raise AudioError(f"{path}:{lineno}: index {row[0]!r} is not an integer") from None
        labels[index] = row[2].strip()
    if sorted(labels) != list(range(len(labels))):
        raise AudioError(f"{path}: class indices must run 0..{len(labels) - 1} without gaps")
    return tuple(labels[i] for i in range(len(labels)))


@functools.lru_cache(maxsize=8)
def mel_filterbank(n_mels: int, n_fft: int = 512) -> npt.NDArray[np.float32]:
    """HTK-mel triangular filters, shape (n_fft // 2 + 1, n_mels)."""

    def hz_to_mel(f: npt.ArrayLike) -> npt.NDArray[np.float64]:
        return np.asarray(1127.0 * np.log1p(np.asarray(f, np.float64) / 700.0))

    bins = np.linspace(0.0, RATE / 2.0, n_fft // 2 + 1)
    mel = hz_to_mel(bins)
    edges = np.linspace(hz_to_mel(MEL_FMIN), hz_to_mel(MEL_FMAX), n_mels + 2)
    lo, mid, hi = edges[:-2], edges[1:-1], edges[2:]
    up = (mel[:, None] - lo[None, :]) / (mid - lo)[None, :]
    down = (hi[None, :] - mel[:, None]) / (hi - mid)[None, :]
    return np.maximum(0.0, np.minimum(up, down)).astype(np.float32)


@functools.lru_cache(maxsize=1)
def _hann() -> npt.NDArray[np.float32]:
    return np.hanning(MEL_WIN).astype(np.float32)


def log_mel(window: Samples, frames: int, n_mels: int) -> npt.NDArray[np.float32]:
    """(frames, n_mels) log-mel patch of a window of (frames - 1) * 160 + 400 samples."""
    idx = np.arange(frames)[:, None] * MEL_HOP + np.arange(MEL_WIN)[None, :]
    framed = window[idx] * _hann()
    spec = np.abs(np.fft.rfft(framed, n=512, axis=1)).astype(np.float32)
    # numpy's stubs type a ufunc on a float32 @ float32 product as Any.
    patch: npt.NDArray[np.float32] = np.log(spec @ mel_filterbank(n_mels) + 0.001).astype(
        np.float32
    )
    return patch


@dataclass(frozen=True, slots=True)
class _InputLayout:
    kind: Literal["waveform", "logmel"]
    shape: tuple[int, ...]  # the concrete shape fed to the model
    window: int
    frames: int = 0
    mels: int = 0


def _layout(dims: tuple[int | None, ...], window_seconds: float, path: Path) -> _InputLayout:
    shape = [-1 if d is None else d for d in dims]  # as a model's signature writes it
    if len(dims) in (1, 2):
        n = dims[-1] or round(window_seconds * RATE)
        if len(dims) == 2 and dims[0] not in (None, 1):
            raise AudioError(f"{path}: waveform input must have batch 1, got shape {shape}")
        return _InputLayout("waveform", (n,) if len(dims) == 1 else (1, n), n)
    if len(dims) in (3, 4):
        frames, mels = dims[-2], dims[-1]
        if frames is None or mels is None:
            raise AudioError(f"{path}: a log-mel input needs fixed frames and mels, got {shape}")
        concrete = (1, frames, mels) if len(dims) == 3 else (1, 1, frames, mels)
        return _InputLayout("logmel", concrete, (frames - 1) * MEL_HOP + MEL_WIN, frames, mels)
    raise AudioError(f"{path}: unsupported classifier input shape {shape}")


def _check_tensor(spec: TensorSpec, backend: Backend, path: Path) -> None:
    """Float, or an integer type whose quantization the backend converts at its edge."""
    if spec.dtype == "float32":
        return
    if spec.dtype not in ("int8", "uint8", "int16"):
        raise AudioError(f"{path}: unsupported tensor type {spec.dtype}")
    if not spec.scale and backend.info.name == "litert":
        raise AudioError(f"{path}: {spec.dtype} tensor without quantization scale")
    if not spec.scale:
        raise AudioError(
            f"{path}: {backend.info.name} does not give the quantization of its {spec.dtype} "
            "tensors: run full-integer TFLite models on litert"
        )


def model_format(path: Path) -> str:
    """The backends' name for a model file's format, from its suffix."""
    fmt = {".onnx": "onnx", ".tflite": "tflite"}.get(path.suffix.lower())
    if fmt is None:
        raise AudioError(f"{path}: classifier must be .onnx or .tflite")
    return fmt


class ModelClassifier:
    """An ONNX or TFLite audio classifier plus its class map, run by an inference backend:
    ``auto`` picks onnxruntime for ONNX and LiteRT for TFLite (OpenVINO where those are
    missing); ``accelerator`` is the backend's device, provider or delegate."""

    def __init__(
        self,
        model: Path,
        class_map: Path,
        window_seconds: float = 0.975,
        *,
        backend: str = "auto",
        accelerator: str | None = None,
    ) -> None:
        if not model.is_file():
            raise AudioError(f"classifier model not found: {model}")
        self._labels = read_class_map(class_map)
        self._path = model
        fmt = model_format(model)
        try:
            self.backend = open_backend(model, fmt, backend, accelerator, threads=1)
        except (BackendError, ModelFileError) as exc:
            raise AudioError(f"cannot load classifier {model}: {exc}") from exc
        inp, out = self.backend.inputs[0], self.backend.outputs[0]
        self._layout = _layout(inp.shape, window_seconds, model)
        _check_tensor(inp, self.backend, model)
        _check_tensor(out, self.backend, model)

    def _run(self, x: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
        # The backend quantizes the float input and dequantizes the scores of an int8 model.
        try:
            out = self.backend.run([x])[0]
        except BackendError as exc:
            raise AudioError(f"classifier {self._path}: {exc}") from exc
        return np.asarray(out, np.float32)

    @property
    def labels(self) -> tuple[str, ...]:
        return self._labels

    @property
    def window(self) -> int:
        return self._layout.window

    def scores(self, window: Samples) -> npt.NDArray[np.float32]:
        lay = self._layout
        if window.shape != (lay.window,):
            raise AudioError(f"classifier window must be {lay.window} samples, got {window.shape}")
        if lay.kind == "waveform":
            x = window.astype(np.float32).reshape(lay.shape)
        else:
            x = log_mel(window, lay.frames, lay.mels).reshape(lay.shape)
        out = self._run(x)
        if out.size % len(self._labels):
            raise AudioError(
                f"{self._path}: output of shape {out.shape} does not fit the class map's "
                f"{len(self._labels)} classes"
            )
        return np.asarray(out.reshape(-1, len(self._labels)).max(axis=0), np.float32)


class EventCounter:
    """Counts sound events: a class that becomes the top class above ``threshold`` in a window
    where it was not in the previous one counts one event (a run of windows is one event)."""

    def __init__(self, classifier: SoundClassifier, threshold: float = 0.5) -> None:
        if not 0.0 < threshold <= 1.0:
            raise AudioError(f"event threshold must be in (0, 1], got {threshold}")
        self.classifier = classifier
        self.threshold = threshold
        self._buf = np.zeros(0, np.float32)
        self._active: int | None = None

    def feed(self, chunk: Samples) -> list[str]:
        """Events that start within the windows this chunk completes."""
        self._buf = np.concatenate([self._buf, chunk])
        events: list[str] = []
        n = self.classifier.window
        while self._buf.size >= n:
            scores = self.classifier.scores(self._buf[:n])
            self._buf = self._buf[n:]
            top = int(np.argmax(scores))
            current = top if float(scores[top]) >= self.threshold else None
            if current is not None and current != self._active:
                events.append(self.classifier.labels[current])
            self._active = current
        return events
