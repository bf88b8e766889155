"""Sound events from any ONNX or TFLite audio classifier with a class-map CSV.

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
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Protocol

import numpy as np
import numpy.typing as npt
from edgetally.runtime.audio.errors import AudioError
from edgetally.runtime.audio.sources import RATE, Samples

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
    return np.log(spec @ mel_filterbank(n_mels) + 0.001).astype(np.float32)


@dataclass(frozen=True, slots=True)
class _InputLayout:
    kind: Literal["waveform", "logmel"]
    shape: tuple[int, ...]  # the concrete shape fed to the model
    window: int
    frames: int = 0
    mels: int = 0


def _layout(shape: list[Any], window_seconds: float, path: Path) -> _InputLayout:
    # onnxruntime gives ints or dimension names, LiteRT numpy integers (-1 when dynamic)
    dims = [int(d) if isinstance(d, int | np.integer) and d > 0 else None for d in shape]
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


def _quant_params(detail: dict[str, Any], path: Path) -> tuple[np.dtype[Any], float, int]:
    """(dtype, scale, zero point) of a LiteRT tensor; scale 0 when it holds floats."""
    dtype = np.dtype(detail["dtype"])
    if dtype == np.float32:
        return dtype, 0.0, 0
    if dtype not in (np.int8, np.uint8, np.int16):
        raise AudioError(f"{path}: unsupported tensor type {dtype.name}")
    scale, zero = detail["quantization"]
    if not scale:
        raise AudioError(f"{path}: {dtype.name} tensor without quantization scale")
    return dtype, float(scale), int(zero)


def _quantizer(
    detail: dict[str, Any], path: Path
) -> Callable[[npt.NDArray[np.float32]], npt.NDArray[Any]]:
    """Float input to what the model takes: q = round(x / scale) + zero, clipped to the type."""
    dtype, scale, zero = _quant_params(detail, path)
    if not scale:
        return lambda x: x
    info = np.iinfo(dtype.name)

    def quantize(x: npt.NDArray[np.float32]) -> npt.NDArray[Any]:
        return np.clip(np.round(x / scale) + zero, info.min, info.max).astype(dtype)

    return quantize


def _dequantizer(
    detail: dict[str, Any], path: Path
) -> Callable[[npt.NDArray[Any]], npt.NDArray[np.float32]]:
    """The model's output as float scores: (q - zero) * scale."""
    _, scale, zero = _quant_params(detail, path)
    if not scale:
        return lambda q: np.asarray(q, np.float32)
    return lambda q: ((np.asarray(q, np.float32) - zero) * scale).astype(np.float32)


class ModelClassifier:
    """An ONNX (onnxruntime) or TFLite (LiteRT) audio classifier plus its class map."""

    def __init__(self, model: Path, class_map: Path, window_seconds: float = 0.975) -> None:
        if not model.is_file():
            raise AudioError(f"classifier model not found: {model}")
        self._labels = read_class_map(class_map)
        self._path = model
        suffix = model.suffix.lower()
        if suffix == ".onnx":
            self._init_onnx(model, window_seconds)
        elif suffix == ".tflite":
            self._init_tflite(model, window_seconds)
        else:
            raise AudioError(f"{model}: classifier must be .onnx or .tflite")

    def _init_onnx(self, model: Path, window_seconds: float) -> None:
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.intra_op_num_threads = 1
        try:
            sess = ort.InferenceSession(str(model), opts, providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own untyped errors
            raise AudioError(f"cannot load classifier {model}: {exc}") from exc
        inp = sess.get_inputs()[0]
        self._layout = _layout(list(inp.shape), window_seconds, model)
        name = inp.name

        def run(x: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
            return np.asarray(sess.run(None, {name: x})[0], np.float32)

        self._run = run

    def _init_tflite(self, model: Path, window_seconds: float) -> None:
        try:
            from ai_edge_litert.interpreter import Interpreter
        except ImportError as exc:
            raise AudioError(f"TFLite classifiers need ai-edge-litert: {exc}") from exc
        try:
            interp = Interpreter(model_path=str(model), num_threads=1)
        except (ValueError, RuntimeError) as exc:
            raise AudioError(f"cannot load classifier {model}: {exc}") from exc
        detail = interp.get_input_details()[0]
        self._layout = _layout(list(detail["shape_signature"]), window_seconds, model)
        if list(detail["shape"]) != list(self._layout.shape):
            interp.resize_tensor_input(detail["index"], list(self._layout.shape))
        try:
            interp.allocate_tensors()
        except (ValueError, RuntimeError) as exc:
            raise AudioError(f"cannot load classifier {model}: {exc}") from exc
        out = interp.get_output_details()[0]
        quantize = _quantizer(detail, model)
        dequantize = _dequantizer(out, model)

        def run(x: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
            interp.set_tensor(detail["index"], quantize(x))
            interp.invoke()
            return dequantize(interp.get_tensor(out["index"]))

        self._run = run

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
