"""Builds the tiny TFLite audio classifiers that tests/runtime/audio/test_audio_events.py runs.

Needs TensorFlow (``pip install 'edgetally[tflite]'``); the tests only need LiteRT. Run from
the repository root:

    python tests/runtime/audio/data/make_tiny_audio_tflite.py

Writes next to this file (weights are fixed, so the models only change with the converter):

* ``tiny_logmel.tflite``: ``[1, 96, 64]`` log-mel -> mean over frames -> linear -> softmax
  over (Low hum, High whistle, Hiss), the same graph as the ONNX classifier the tests build.
* ``tiny_logmel_int8.tflite``: the same model, full-integer (int8 input and output).
* ``tiny_logmel.csv``: its class map.
* ``tiny_wave.tflite``: ``[1, N]`` waveform with a dynamic N -> mean square -> softmax over
  (Quiet, Loud) with the step at 0.01, as the ONNX waveform twin; ``tiny_wave.csv``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import tensorflow as tf
from edgetally.runtime.audio.classifier import log_mel
from edgetally.runtime.audio.sources import RATE

HERE = Path(__file__).resolve().parent
FRAMES, MELS = 96, 64
WINDOW = (FRAMES - 1) * 160 + 400


def logmel_weights() -> np.ndarray:
    """(mels, 3): class 0 likes the lower half of the bands, class 1 the upper, 2 neither."""
    w = np.zeros((MELS, 3), np.float32)
    w[: MELS // 2, 0], w[MELS // 2 :, 0] = 1.0, -1.0
    w[: MELS // 2, 1], w[MELS // 2 :, 1] = -1.0, 1.0
    return w * 0.5


Representative = Callable[[], Iterator[list[np.ndarray]]]


def _convert(
    fn: tf.types.experimental.ConcreteFunction,
    owner: tf.Module,
    representative: Representative | None = None,
) -> bytes:
    """Float TFLite, or full-integer (int8 in and out) calibrated on ``representative``."""
    conv = tf.lite.TFLiteConverter.from_concrete_functions([fn], trackable_obj=owner)
    if representative is not None:
        conv.optimizations = [tf.lite.Optimize.DEFAULT]
        conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        conv.inference_input_type = tf.int8
        conv.inference_output_type = tf.int8
        conv.representative_dataset = representative
    out = conv.convert()
    assert isinstance(out, bytes)
    return out


def _representative() -> Representative:
    """Log-mel patches of silence, tones across the band and noise, at several levels."""
    rng = np.random.default_rng(0)
    t = np.arange(WINDOW) / RATE
    clips = [np.zeros(WINDOW, np.float32)]
    for freq in (150.0, 300.0, 600.0, 1200.0, 2500.0, 5000.0, 7000.0):
        for amp in (0.01, 0.1, 0.3, 0.9):
            clips.append((amp * np.sin(2 * np.pi * freq * t)).astype(np.float32))
    for amp in (0.01, 0.1, 0.5):
        clips.append((amp * rng.standard_normal(WINDOW)).astype(np.float32))
    patches = [log_mel(c, FRAMES, MELS)[None] for c in clips]

    def gen() -> Iterator[list[np.ndarray]]:
        for p in patches:
            yield [p]

    return gen


def _class_map(path: Path, names: list[str]) -> None:
    lines = ["index,mid,display_name"] + [f'{i},/m/{i:04d},"{n}"' for i, n in enumerate(names)]
    path.write_text("\n".join(lines) + "\n")


def main() -> None:
    w = tf.constant(logmel_weights())

    @tf.function(  # type: ignore[untyped-decorator]  # TensorFlow ships no type information
        input_signature=[tf.TensorSpec([1, FRAMES, MELS], tf.float32)]
    )
    def logmel(x: tf.Tensor) -> tf.Tensor:
        return tf.nn.softmax(tf.matmul(tf.reduce_mean(x, axis=1), w), axis=-1)

    @tf.function(  # type: ignore[untyped-decorator]  # TensorFlow ships no type information
        input_signature=[tf.TensorSpec([1, None], tf.float32)]
    )
    def wave(x: tf.Tensor) -> tf.Tensor:
        ms = tf.reduce_mean(x * x, axis=1, keepdims=True)
        logits = ms * tf.constant([[-1000.0, 1000.0]]) + tf.constant([5.0, -5.0])
        return tf.nn.softmax(logits, axis=-1)

    owner = tf.Module()
    owner.logmel, owner.wave = logmel, wave
    fn = logmel.get_concrete_function()
    int8 = _convert(fn, owner, representative=_representative())
    (HERE / "tiny_logmel.tflite").write_bytes(_convert(fn, owner))
    (HERE / "tiny_logmel_int8.tflite").write_bytes(int8)
    (HERE / "tiny_wave.tflite").write_bytes(_convert(wave.get_concrete_function(), owner))
    _class_map(HERE / "tiny_logmel.csv", ["Low hum", "High whistle", "Hiss"])
    _class_map(HERE / "tiny_wave.csv", ["Quiet", "Loud"])
    for p in sorted(HERE.glob("tiny_*")):
        print(f"{p.name}: {p.stat().st_size} bytes")


if __name__ == "__main__":
    main()
