"""Real-time factor of the audio pipeline (resample to 16 kHz, Leq/LAeq, silero-vad, and a
small log-mel ONNX classifier) on this CPU: processing time / audio duration.

    .venv/bin/python benchmarks/audio.py [FILE ...]   (default: the ESC-10 clips in ../shared)
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import onnx
from edgetally.runtime.audio.classifier import EventCounter, ModelClassifier
from edgetally.runtime.audio.pipeline import AudioAnalyzer
from edgetally.runtime.audio.sources import FileSource
from edgetally.runtime.audio.vad import SileroVad
from onnx import TensorProto, helper, numpy_helper


def tiny_classifier(tmp: Path) -> ModelClassifier:
    w = np.random.default_rng(0).normal(0, 0.1, (64, 10)).astype(np.float32)
    graph = helper.make_graph(
        [
            helper.make_node("ReduceMean", ["x", "axes"], ["m"], keepdims=0),
            helper.make_node("MatMul", ["m", "w"], ["l"]),
            helper.make_node("Softmax", ["l"], ["y"], axis=-1),
        ],
        "bench",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 96, 64])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 10])],
        [numpy_helper.from_array(w, "w"), numpy_helper.from_array(np.array([1], np.int64), "axes")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 8
    onnx.save(model, tmp / "c.onnx")
    (tmp / "c.csv").write_text(
        "index,mid,display_name\n" + "".join(f"{i},/m/{i},class{i}\n" for i in range(10))
    )
    return ModelClassifier(tmp / "c.onnx", tmp / "c.csv")


def main() -> None:
    files = [Path(a) for a in sys.argv[1:]]
    if not files:
        esc = Path(__file__).resolve().parents[1].parent / "shared/data/audio/esc10/audio"
        files = sorted(esc.glob("*.wav"))
    if not files:
        raise SystemExit("give sound files, or have ../shared/data/audio/esc10")
    with tempfile.TemporaryDirectory() as tmp:
        clf = tiny_classifier(Path(tmp))
        vad = SileroVad()
        for label, use_vad, use_clf in (
            ("level only", False, False),
            ("level + VAD", True, False),
            ("level + VAD + classifier", True, True),
        ):
            audio_s = 0.0
            start = time.perf_counter()
            for f in files:
                vad.reset()
                an = AudioAnalyzer(
                    60.0, vad if use_vad else None, EventCounter(clf, 0.5) if use_clf else None
                )
                for b in an.run(FileSource(f).chunks()):
                    audio_s += b.duration_s
            spent = time.perf_counter() - start
            print(
                f"{label:<26} real-time factor {spent / audio_s:.4f} "
                f"({audio_s:.0f} s of audio in {spent:.2f} s)"
            )


if __name__ == "__main__":
    main()
