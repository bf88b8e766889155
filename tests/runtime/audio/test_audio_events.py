"""Sound events from a classifier built here as a real ONNX graph, run by onnxruntime, and
from its TFLite twins (float and int8) in tests/runtime/audio/data, run by LiteRT; OpenVINO runs
the float ones too.

The .tflite files come from data/make_tiny_audio_tflite.py (needs TensorFlow); these tests
only need LiteRT."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
import soundfile
from edgetally.main import build_app
from edgetally.runtime.audio.classifier import EventCounter, ModelClassifier, read_class_map
from edgetally.runtime.audio.errors import AudioError
from edgetally.runtime.audio.pipeline import analyze_file
from edgetally.runtime.audio.sources import RATE
from onnx import TensorProto, helper, numpy_helper
from typer.testing import CliRunner

DATA = Path(__file__).parent / "data"
FRAMES, MELS = 96, 64
WINDOW = (FRAMES - 1) * 160 + 400  # 15600 samples, as YAMNet


def _logmel_model(path: Path) -> Path:
    """[1, 96, 64] log-mel -> mean over frames -> linear -> softmax over (low, high, hiss).

    low: energy in the lower mel bands; high: in the upper bands; the third class is never
    the winner. Silence gives equal scores (1/3), under any sensible threshold."""
    w = np.zeros((MELS, 3), np.float32)
    w[: MELS // 2, 0], w[MELS // 2 :, 0] = 1.0, -1.0
    w[: MELS // 2, 1], w[MELS // 2 :, 1] = -1.0, 1.0
    w *= 0.5
    graph = helper.make_graph(
        [
            helper.make_node("ReduceMean", ["x", "axes"], ["m"], keepdims=0),
            helper.make_node("MatMul", ["m", "w"], ["logits"]),
            helper.make_node("Softmax", ["logits"], ["scores"], axis=-1),
        ],
        "tiny_logmel",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, FRAMES, MELS])],
        [helper.make_tensor_value_info("scores", TensorProto.FLOAT, [1, 3])],
        [numpy_helper.from_array(w, "w"), numpy_helper.from_array(np.array([1], np.int64), "axes")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, path)
    return path


def _waveform_model(path: Path) -> Path:
    """[1, N] waveform (dynamic N) -> mean square -> (quiet, loud) with a step at 0.01."""
    graph = helper.make_graph(
        [
            helper.make_node("Mul", ["x", "x"], ["sq"]),
            helper.make_node("ReduceMean", ["sq", "axes"], ["ms"], keepdims=1),
            helper.make_node("MatMul", ["ms", "w"], ["lin"]),
            helper.make_node("Add", ["lin", "b"], ["logits"]),
            helper.make_node("Softmax", ["logits"], ["scores"], axis=-1),
        ],
        "tiny_wave",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, "n"])],
        [helper.make_tensor_value_info("scores", TensorProto.FLOAT, [1, 2])],
        [
            numpy_helper.from_array(np.array([[-1000.0, 1000.0]], np.float32), "w"),
            numpy_helper.from_array(np.array([5.0, -5.0], np.float32), "b"),
            numpy_helper.from_array(np.array([1], np.int64), "axes"),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 8
    onnx.save(model, path)
    return path


def _class_map(path: Path, names: list[str]) -> Path:
    lines = ["index,mid,display_name"] + [f'{i},/m/{i:04d},"{n}"' for i, n in enumerate(names)]
    path.write_text("\n".join(lines) + "\n")
    return path


def _tone(freq: float, n: int, amp: float = 0.3) -> np.ndarray:
    return (amp * np.sin(2 * np.pi * freq * np.arange(n) / RATE)).astype(np.float32)


@pytest.fixture
def logmel(tmp_path: Path) -> ModelClassifier:
    return ModelClassifier(
        _logmel_model(tmp_path / "c.onnx"),
        _class_map(tmp_path / "c.csv", ["Low hum", "High whistle", "Hiss"]),
    )


def test_logmel_classifier_scores_tones(logmel: ModelClassifier) -> None:
    assert logmel.window == WINDOW
    low = logmel.scores(_tone(300.0, WINDOW))
    high = logmel.scores(_tone(5000.0, WINDOW))
    silent = logmel.scores(np.zeros(WINDOW, np.float32))
    assert int(np.argmax(low)) == 0 and low[0] > 0.9
    assert int(np.argmax(high)) == 1 and high[1] > 0.9
    assert silent == pytest.approx([1 / 3] * 3, abs=1e-4)


def _logmel_twin(kind: str, tmp_path: Path) -> tuple[Path, Path]:
    """The model and class map of the log-mel classifier as ONNX, float TFLite or int8 TFLite."""
    if kind == "onnx":
        return _logmel_model(tmp_path / "c.onnx"), _class_map(
            tmp_path / "c.csv", ["Low hum", "High whistle", "Hiss"]
        )
    suffix = "_int8" if kind == "int8" else ""
    return DATA / f"tiny_logmel{suffix}.tflite", DATA / "tiny_logmel.csv"


@pytest.fixture(params=["onnx", "tflite", "int8"])
def any_logmel(request: pytest.FixtureRequest, tmp_path: Path) -> ModelClassifier:
    return ModelClassifier(*_logmel_twin(request.param, tmp_path))


def test_events_count_onsets_not_windows(any_logmel: ModelClassifier) -> None:
    pieces = [
        _tone(300.0, 2 * WINDOW),  # one hum lasting two windows: one event
        np.zeros(WINDOW, np.float32),
        _tone(300.0, WINDOW),
        _tone(5000.0, 2 * WINDOW),
        np.zeros(WINDOW, np.float32),
    ]
    counter = EventCounter(any_logmel, threshold=0.6)
    events: list[str] = []
    x = np.concatenate(pieces)
    for i in range(0, x.size, 512):
        events += counter.feed(x[i : i + 512])
    assert events == ["Low hum", "Low hum", "High whistle"]


@pytest.mark.parametrize("kind", ["onnx", "tflite"])
def test_waveform_model_with_dynamic_length_in_a_file(tmp_path: Path, kind: str) -> None:
    if kind == "onnx":
        model = _waveform_model(tmp_path / "w.onnx")
        cmap = _class_map(tmp_path / "w.csv", ["Quiet", "Loud"])
    else:
        model, cmap = DATA / "tiny_wave.tflite", DATA / "tiny_wave.csv"
    clf = ModelClassifier(model, cmap, window_seconds=0.5)
    assert clf.window == 8000
    x = np.concatenate(
        [np.zeros(RATE, np.float32), _tone(440.0, RATE, 0.5), np.zeros(RATE, np.float32)] * 2
    )
    path = tmp_path / "bursts.wav"
    soundfile.write(path, x, RATE)
    buckets = analyze_file(path, bucket_seconds=3.0, events=EventCounter(clf, 0.9))
    # quiet, loud, quiet | (quiet goes on), loud, quiet
    assert [b.events for b in buckets] == [{"Quiet": 2, "Loud": 1}, {"Quiet": 1, "Loud": 1}]


def test_class_map_errors_name_the_problem(tmp_path: Path) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text("id,name\n0,x\n")
    with pytest.raises(AudioError, match="header"):
        read_class_map(bad)
    gap = tmp_path / "gap.csv"
    gap.write_text("index,mid,display_name\n0,/m/a,A\n2,/m/b,B\n")
    with pytest.raises(AudioError, match="without gaps"):
        read_class_map(gap)
    model = _logmel_model(tmp_path / "c.onnx")
    with pytest.raises(AudioError, match="does not fit"):
        ModelClassifier(model, _class_map(tmp_path / "two.csv", ["A", "B"])).scores(
            np.zeros(WINDOW, np.float32)
        )


@pytest.mark.parametrize("kind", ["onnx", "tflite", "int8"])
def test_cli_analyze_json_with_classifier(tmp_path: Path, kind: str) -> None:
    x = np.concatenate([_tone(300.0, 2 * WINDOW), _tone(5000.0, 2 * WINDOW)])
    wav = tmp_path / "a.wav"
    soundfile.write(wav, x, RATE)
    model, cmap = _logmel_twin(kind, tmp_path)
    result = CliRunner().invoke(
        build_app(),
        [
            "audio",
            "analyze",
            str(wav),
            "--bucket-seconds",
            "1.95",
            "--json",
            "--no-vad",
            "--classifier",
            str(model),
            "--class-map",
            str(cmap),
            "--event-threshold",
            "0.6",
        ],
    )
    assert result.exit_code == 0, result.output
    rows = json.loads(result.output)
    assert [r["start"] for r in rows] == [0.0, 1.95]
    assert rows[0]["events"] == {"Low hum": 1} and rows[1]["events"] == {"High whistle": 1}
    assert set(rows[0]) >= {"start", "leq_dbfs", "laeq_dbfs", "speech_ratio", "events"}
    assert rows[0]["speech_ratio"] is None


def _cli_events(wav: Path, model: Path, cmap: Path) -> list[dict[str, int]]:
    result = CliRunner().invoke(
        build_app(),
        [
            "audio",
            "analyze",
            str(wav),
            "--bucket-seconds",
            "3",
            "--json",
            "--no-vad",
            "--classifier",
            str(model),
            "--class-map",
            str(cmap),
            "--event-threshold",
            "0.6",
        ],
    )
    assert result.exit_code == 0, result.output
    return [r["events"] for r in json.loads(result.output)]


def test_cli_tflite_counts_the_same_events_as_the_onnx_twin(tmp_path: Path) -> None:
    """Hums and whistles of different lengths and levels, with gaps of silence and noise."""
    rng = np.random.default_rng(3)
    pieces = [
        _tone(300.0, 2 * WINDOW),
        np.zeros(WINDOW, np.float32),
        _tone(250.0, WINDOW, 0.05),
        _tone(5000.0, 3 * WINDOW),
        (0.001 * rng.standard_normal(WINDOW)).astype(np.float32),
        _tone(6000.0, WINDOW, 0.9),
        np.zeros(WINDOW, np.float32),
        _tone(400.0, WINDOW),
    ]
    wav = tmp_path / "mix.wav"
    soundfile.write(wav, np.concatenate(pieces), RATE)
    onnx_events = _cli_events(wav, *_logmel_twin("onnx", tmp_path))
    assert sum(sum(b.values()) for b in onnx_events) >= 4  # the sound has events to count
    for kind in ("tflite", "int8"):
        assert _cli_events(wav, *_logmel_twin(kind, tmp_path)) == onnx_events, kind


def test_int8_scores_dequantize_to_the_float_scores(tmp_path: Path) -> None:
    """Full-integer model: float log-mel in (quantized here), int8 scores out (dequantized
    here), equal to the float model's scores within two steps of the output's scale."""
    from ai_edge_litert.interpreter import Interpreter

    scale, zero = Interpreter(str(DATA / "tiny_logmel_int8.tflite")).get_output_details()[0][
        "quantization"
    ]
    assert 0.0 < scale < 0.01 and zero != 0  # a real int8 output, not a float one
    float_clf = ModelClassifier(*_logmel_twin("tflite", tmp_path))
    int8_clf = ModelClassifier(*_logmel_twin("int8", tmp_path))
    sounds = [np.zeros(WINDOW, np.float32)] + [
        _tone(f, WINDOW, a) for f in (300.0, 5000.0) for a in (3e-5, 1e-4, 0.3)
    ]
    middling = 0
    for x in sounds:
        want, got = float_clf.scores(x), int8_clf.scores(x)
        assert got.dtype == np.float32 and got.shape == (3,)
        np.testing.assert_allclose(got, want, atol=2 * scale, rtol=0)
        middling += int(np.any((want > 0.05) & (want < 0.95)))
    assert middling >= 3  # not only saturated scores


def test_corrupt_tflite_is_a_one_line_error(tmp_path: Path) -> None:
    bad = tmp_path / "bad.tflite"
    bad.write_bytes((DATA / "tiny_logmel.tflite").read_bytes()[:200])
    with pytest.raises(AudioError, match="cannot load classifier"):
        ModelClassifier(bad, DATA / "tiny_logmel.csv")
    wav = tmp_path / "s.wav"
    soundfile.write(wav, np.zeros(RATE, np.float32), RATE)
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "edgetally",
            "audio",
            "analyze",
            str(wav),
            "--no-vad",
            "--classifier",
            str(bad),
            "--class-map",
            str(DATA / "tiny_logmel.csv"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 1, out.stderr
    assert out.stderr.startswith(f"edgetally: error: cannot load classifier {bad}")
    assert "Traceback" not in out.stderr


def test_auto_keeps_onnxruntime_for_onnx_and_litert_for_tflite(tmp_path: Path) -> None:
    for kind, name in (("onnx", "onnxruntime"), ("tflite", "litert"), ("int8", "litert")):
        assert ModelClassifier(*_logmel_twin(kind, tmp_path)).backend.info.name == name


@pytest.mark.parametrize("kind", ["onnx", "tflite", "wave"])
def test_openvino_scores_as_the_default_backend(tmp_path: Path, kind: str) -> None:
    if kind == "wave":  # a dynamic input length
        model, cmap, seconds = DATA / "tiny_wave.tflite", DATA / "tiny_wave.csv", 0.5
    else:
        (model, cmap), seconds = _logmel_twin(kind, tmp_path), 0.975
    default = ModelClassifier(model, cmap, seconds)
    ov = ModelClassifier(model, cmap, seconds, backend="openvino", accelerator="CPU")
    assert ov.backend.info.name == "openvino" and ov.window == default.window
    n = default.window
    for x in (np.zeros(n, np.float32), _tone(300.0, n), _tone(5000.0, n, 0.05)):
        np.testing.assert_allclose(ov.scores(x), default.scores(x), atol=1e-4)


def test_a_backend_that_cannot_run_the_classifier_is_a_one_line_error(tmp_path: Path) -> None:
    model, cmap = _logmel_twin("int8", tmp_path)
    with pytest.raises(AudioError, match="backend onnxruntime cannot run tflite"):
        ModelClassifier(model, cmap, backend="onnxruntime")
    with pytest.raises(AudioError, match="openvino does not give the quantization") as info:
        ModelClassifier(model, cmap, backend="openvino")
    assert "\n" not in str(info.value)
    wav = tmp_path / "s.wav"
    soundfile.write(wav, np.zeros(RATE, np.float32), RATE)
    result = CliRunner().invoke(
        build_app(),
        [
            "audio",
            "analyze",
            str(wav),
            "--no-vad",
            "--classifier",
            str(model),
            "--class-map",
            str(cmap),
            "--classifier-backend",
            "onnxruntime",
        ],
    )
    assert isinstance(result.exception, AudioError)
    assert "backend onnxruntime cannot run tflite" in str(result.exception)
