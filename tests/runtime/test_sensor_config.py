"""The device config's audio: and shelf: blocks: key-path errors, relative paths, and the
audio worker resuming a file where its last stored bucket ended."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import numpy as np
import pytest
import soundfile
from edgetally.models.wire import AudioLevels, from_json
from edgetally.runtime.audio.classifier import ModelClassifier
from edgetally.runtime.audio.device import build_analyzer, event_name, run_audio, wire_events
from edgetally.runtime.audio.sources import FileSource
from edgetally.runtime.config import load_config, parse_config
from edgetally.runtime.errors import ConfigError
from edgetally.runtime.shelf.synthetic import scene_config_data
from edgetally.runtime.uplink.outbox import Outbox


def base(**extra: object) -> dict[str, object]:
    return {"site": "s", "device": "d", **extra}


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (base(), "a device needs at least one camera (cameras) or an audio source"),
        (
            base(audio={"source": "x.wav", "classifier": "m.onnx"}),
            "audio: classifier and class_map go together",
        ),
        (base(audio={"source": "x.wav", "gain": 3}), "audio.gain: unknown key"),
        (base(audio={"source": "x.wav", "spl_offset_db": -5}), "audio.spl_offset_db"),
        (
            base(audio={"source": "x.wav", "vad_backend": "tensorrt"}),
            "audio.vad_backend: unknown backend 'tensorrt': expected auto, onnxruntime",
        ),
        (
            base(cameras=[{"id": "c", "source": "v.mp4"}]),
            "cameras[0]: a camera needs at least one line, zone or shelf",
        ),
        (
            base(cameras=[{"id": "c", "source": "v.mp4", "shelf": {"regions": []}}]),
            "cameras[0].shelf: regions: must be a non-empty list",
        ),
        (
            base(
                cameras=[
                    {
                        "id": "c",
                        "source": "v.mp4",
                        "shelf": {
                            "regions": [
                                {
                                    "id": "top",
                                    "polygon": [[0, 0], [9, 0], [9, 9]],
                                    "facings": [{"id": "a b", "polygon": [[0, 0], [9, 0], [9, 9]]}],
                                }
                            ]
                        },
                    }
                ]
            ),
            "cameras[0].shelf: facing id 'a b'",
        ),
    ],
)
def test_errors_name_the_key(data: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=r"^config: ") as info:
        parse_config(data)
    assert message in str(info.value)


def test_shelf_and_audio_blocks_load_with_paths_relative_to_the_file(tmp_path: Path) -> None:
    shelf = {**scene_config_data(), "reference": "full.png"}
    path = tmp_path / "dev.yaml"
    path.write_text(
        json.dumps(
            base(
                audio={"id": "ceiling", "source": "sounds/a.wav", "vad": False},
                cameras=[{"id": "c", "source": "v.mp4", "shelf": shelf}],
            )
        )
    )
    cfg = load_config(path)
    assert cfg.audio is not None and cfg.audio.source == str(tmp_path / "sounds/a.wav")
    shelf_cfg = cfg.cameras[0].shelf
    assert shelf_cfg is not None and shelf_cfg.reference == tmp_path / "full.png"
    assert len(shelf_cfg.facings) == 8
    live = parse_config(base(audio={"source": "mic:2"})).audio
    assert live is not None and live.live and live.relative_to(tmp_path).source == "mic:2"


def test_the_shelf_block_is_parsed_once_and_a_dump_validates_again(tmp_path: Path) -> None:
    from edgetally.runtime.shelf.config import ShelfConfig

    shelf = {**scene_config_data(), "scorer": "detector", "model": "gaps.onnx", "gap_class": 1}
    path = tmp_path / "dev.yaml"
    path.write_text(json.dumps(base(cameras=[{"id": "c", "source": "v.mp4", "shelf": shelf}])))
    cfg = load_config(path)
    held = cfg.cameras[0].shelf
    assert isinstance(held, ShelfConfig) and held.scorer.model == str(tmp_path / "gaps.onnx")
    # What `device run --config FILE --option ...` does: dump, change, validate again.
    assert parse_config(cfg.model_dump()) == cfg
    assert ShelfConfig.model_validate(held.model_dump(mode="json")) == held


def test_the_audio_block_picks_each_model_s_backend(tmp_path: Path) -> None:
    data = Path(__file__).parent / "audio" / "data"
    cfg = parse_config(
        base(
            audio={
                "source": "x.wav",
                "vad_backend": "openvino",
                "vad_accelerator": "CPU",
                "classifier": str(data / "tiny_logmel.tflite"),
                "class_map": str(data / "tiny_logmel.csv"),
                "classifier_backend": "openvino",
            }
        )
    ).audio
    assert cfg is not None
    analyzer = build_analyzer(cfg, 60)
    assert analyzer.vad is not None and analyzer.events is not None
    classifier = analyzer.events.classifier
    assert isinstance(classifier, ModelClassifier)
    assert analyzer.vad.backend.info == classifier.backend.info
    assert analyzer.vad.backend.info.name == "openvino"
    default_cfg = parse_config(base(audio={"source": "x.wav"})).audio
    assert default_cfg is not None
    default = build_analyzer(default_cfg, 60)
    assert default.vad is not None and default.vad.backend.info.name == "onnxruntime"


def test_event_names_fit_the_wire() -> None:
    assert event_name("Speech, speaking") == "speech_speaking"
    assert event_name("Glass!") == "glass"
    many = {f"Class {i}": i + 1 for i in range(40)}
    out = wire_events({**many, "Dog": 0})
    assert len(out) == 32 and min(out.values()) == 9 and "dog" not in out


def test_an_interrupted_file_resumes_after_its_last_stored_bucket(tmp_path: Path) -> None:
    wav = tmp_path / "a.wav"
    rng = np.random.default_rng(1)
    soundfile.write(str(wav), 0.1 * rng.standard_normal(16000 * 7), 16000, subtype="PCM_16")
    cfg = parse_config(base(audio={"source": str(wav), "vad": False})).audio
    assert cfg is not None
    stop = threading.Event()
    stored: list[int] = []

    def on_stored(n: int) -> None:
        stored.append(n)
        if len(stored) == 2:
            stop.set()  # killed after two buckets

    with Outbox(tmp_path / "o.db") as box:
        first = run_audio(
            cfg,
            build_analyzer(cfg, 2),
            box,
            site="s",
            device="d",
            bucket_seconds=2,
            stop=stop,
            on_stored=on_stored,
        )
        assert not first.completed and first.buckets == 2
        second = run_audio(
            cfg,
            build_analyzer(cfg, 2),
            box,
            site="s",
            device="d",
            bucket_seconds=2,
            stop=threading.Event(),
            on_stored=lambda n: None,
        )
        assert second.completed and second.resumed_at_s == 4.0 and second.buckets == 4
        msgs = [from_json(AudioLevels, r.payload) for r in box.pending(limit=100)]
    assert [m.seq for m in msgs] == [0, 1, 2, 3]
    starts = [(m.start - msgs[0].start).total_seconds() for m in msgs]
    assert starts == [0.0, 2.0, 4.0, 6.0]
    assert [m.duration_s for m in msgs] == [2.0, 2.0, 2.0, 1.0]
    whole = [b.leq_dbfs for b in build_analyzer(cfg, 2).run(FileSource(wav).chunks())]
    assert [m.leq_dbfs for m in msgs] == pytest.approx(whole, abs=0.05)
