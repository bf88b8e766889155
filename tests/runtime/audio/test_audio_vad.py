"""silero-vad through onnxruntime (auto) and OpenVINO: espeak-ng speech reads as speech,
ESC-10 sounds do not."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from edgetally.runtime.audio.pipeline import analyze_file
from edgetally.runtime.audio.sources import FileSource
from edgetally.runtime.audio.vad import SileroVad

from tests.conftest import shared_path


@pytest.fixture(scope="module", params=["auto", "openvino"])
def vad(request: pytest.FixtureRequest) -> SileroVad:
    return SileroVad(backend=request.param)


def test_auto_is_onnxruntime_and_an_impossible_backend_is_a_one_line_error() -> None:
    from edgetally.runtime.audio.errors import AudioError

    assert SileroVad().backend.info.name == "onnxruntime"
    with pytest.raises(AudioError, match="backend litert cannot run onnx models") as info:
        SileroVad(backend="litert")
    assert str(info.value).startswith("cannot load VAD model ") and "\n" not in str(info.value)


def test_espeak_speech_is_speech_and_silence_is_not(tmp_path: Path, vad: SileroVad) -> None:
    exe = shutil.which("espeak-ng")
    if exe is None:
        pytest.skip("espeak-ng missing: ./run install installs it")
    wav = tmp_path / "s.wav"
    subprocess.run([exe, "-w", str(wav), "Where can I find the milk and the bread?"], check=True)
    speech = np.concatenate(list(FileSource(wav).chunks()))
    padded = np.concatenate([np.zeros(16000, np.float32), speech, np.zeros(16000, np.float32)])
    out = tmp_path / "padded.wav"
    import soundfile

    soundfile.write(out, padded, 16000)
    [bucket] = analyze_file(out, bucket_seconds=600, vad=vad)
    speech_share = speech.size / padded.size
    assert bucket.speech_ratio is not None
    assert abs(bucket.speech_ratio - speech_share) < 0.2
    vad.reset()
    assert not any(vad.is_speech(np.zeros(512, np.float32)) for _ in range(20))


def test_environmental_sounds_are_not_speech(vad: SileroVad) -> None:
    folder = shared_path("data", "audio", "esc10", "audio")
    clips = sorted(folder.glob("*.wav"))[:8]
    ratios = []
    for clip in clips:
        vad.reset()
        [bucket] = analyze_file(clip, bucket_seconds=10, vad=vad)
        assert bucket.speech_ratio is not None
        ratios.append(bucket.speech_ratio)
    assert float(np.mean(ratios)) < 0.05
