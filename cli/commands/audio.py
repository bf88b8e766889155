"""`edgetally audio`: sound level, speech share and sound events per time bucket."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import typer
from edgetally.runtime.audio.errors import AudioError

audio_app = typer.Typer(help="Sound level, speech share and sound events per time bucket.")

_RUNTIMES = "auto, onnxruntime, openvino or litert"
_DEVICE = "OpenVINO device, onnxruntime provider or LiteRT delegate"
VadBackend = Annotated[str, typer.Option("--vad-backend", help=f"VAD runtime: {_RUNTIMES}.")]
VadAccelerator = Annotated[
    str | None, typer.Option("--vad-accelerator", help=f"The VAD's {_DEVICE}.")
]
ClassifierBackend = Annotated[
    str, typer.Option("--classifier-backend", help=f"Classifier runtime: {_RUNTIMES}.")
]
ClassifierAccelerator = Annotated[
    str | None, typer.Option("--classifier-accelerator", help=f"The classifier's {_DEVICE}.")
]


@dataclass(frozen=True, slots=True)
class _Runtimes:
    """Which inference backend (and accelerator) runs the VAD and the classifier."""

    vad_backend: str = "auto"
    vad_accelerator: str | None = None
    classifier_backend: str = "auto"
    classifier_accelerator: str | None = None


def _build(
    bucket_seconds: float,
    no_vad: bool,
    vad_model: Path | None,
    classifier: Path | None,
    class_map: Path | None,
    event_threshold: float,
    spl_offset: float | None,
    runtimes: _Runtimes,
) -> object:
    from edgetally.runtime.audio.classifier import EventCounter, ModelClassifier
    from edgetally.runtime.audio.pipeline import AudioAnalyzer
    from edgetally.runtime.audio.vad import SileroVad

    if (classifier is None) != (class_map is None):
        raise AudioError("--classifier and --class-map go together")
    vad = None
    if not no_vad:
        vad = SileroVad(
            vad_model, backend=runtimes.vad_backend, accelerator=runtimes.vad_accelerator
        )
    events = None
    if classifier is not None and class_map is not None:
        model = ModelClassifier(
            classifier,
            class_map,
            backend=runtimes.classifier_backend,
            accelerator=runtimes.classifier_accelerator,
        )
        events = EventCounter(model, event_threshold)
    return AudioAnalyzer(bucket_seconds, vad, events, spl_offset)


def _print_table(buckets: list[dict[str, object]]) -> None:
    typer.echo(f"{'start s':>9} {'Leq dBFS':>9} {'LAeq dBFS':>10} {'speech':>7}  events")
    for b in buckets:
        speech = b["speech_ratio"]
        sp = "-" if speech is None else f"{float(str(speech)):.2f}"
        events = b["events"]
        ev = ", ".join(f"{k}={v}" for k, v in events.items()) if isinstance(events, dict) else ""
        typer.echo(f"{b['start']:>9} {b['leq_dbfs']:>9} {b['laeq_dbfs']:>10} {sp:>7}  {ev}")


@audio_app.command("analyze")
def analyze(
    file: Path = typer.Argument(..., help="WAV, FLAC or OGG; any rate, mixed to mono."),
    bucket_seconds: float = typer.Option(60.0, "--bucket-seconds", help="Bucket length."),
    as_json: bool = typer.Option(False, "--json", help="Print a JSON list of buckets."),
    no_vad: bool = typer.Option(False, "--no-vad", help="Skip speech activity."),
    vad_model: Path | None = typer.Option(None, "--vad-model", help="silero-vad ONNX file."),
    classifier: Path | None = typer.Option(
        None, "--classifier", help="ONNX or TFLite audio classifier (16 kHz)."
    ),
    class_map: Path | None = typer.Option(
        None, "--class-map", help="Class map CSV: index,mid,display_name."
    ),
    event_threshold: float = typer.Option(0.5, "--event-threshold", help="Top-class score."),
    spl_offset: float | None = typer.Option(
        None, "--spl-offset", help="Calibration: the dB SPL that reads 0 dBFS."
    ),
    vad_backend: VadBackend = "auto",
    vad_accelerator: VadAccelerator = None,
    classifier_backend: ClassifierBackend = "auto",
    classifier_accelerator: ClassifierAccelerator = None,
) -> None:
    """Level (Leq, LAeq), speech share and sound events per bucket of a sound file."""
    from edgetally.runtime.audio.pipeline import AudioAnalyzer
    from edgetally.runtime.audio.sources import FileSource

    runtimes = _Runtimes(vad_backend, vad_accelerator, classifier_backend, classifier_accelerator)
    analyzer = _build(
        bucket_seconds, no_vad, vad_model, classifier, class_map, event_threshold, spl_offset,
        runtimes,
    )
    assert isinstance(analyzer, AudioAnalyzer)
    buckets = [b.to_json() for b in analyzer.run(FileSource(file).chunks())]
    if as_json:
        typer.echo(json.dumps(buckets))
    else:
        _print_table(buckets)


@audio_app.command("live")
def live(
    device: str | None = typer.Option(None, "--device", help="Input device name or index."),
    seconds: float | None = typer.Option(None, "--seconds", help="Stop after this long."),
    bucket_seconds: float = typer.Option(60.0, "--bucket-seconds", help="Bucket length."),
    no_vad: bool = typer.Option(False, "--no-vad", help="Skip speech activity."),
    vad_model: Path | None = typer.Option(None, "--vad-model", help="silero-vad ONNX file."),
    classifier: Path | None = typer.Option(None, "--classifier", help="Audio classifier."),
    class_map: Path | None = typer.Option(None, "--class-map", help="Class map CSV."),
    event_threshold: float = typer.Option(0.5, "--event-threshold", help="Top-class score."),
    spl_offset: float | None = typer.Option(None, "--spl-offset", help="dB SPL at 0 dBFS."),
    vad_backend: VadBackend = "auto",
    vad_accelerator: VadAccelerator = None,
    classifier_backend: ClassifierBackend = "auto",
    classifier_accelerator: ClassifierAccelerator = None,
) -> None:
    """Analyze a live microphone; prints one JSON object per bucket as it closes."""
    from edgetally.runtime.audio.pipeline import AudioAnalyzer
    from edgetally.runtime.audio.sources import MicSource

    runtimes = _Runtimes(vad_backend, vad_accelerator, classifier_backend, classifier_accelerator)
    analyzer = _build(
        bucket_seconds, no_vad, vad_model, classifier, class_map, event_threshold, spl_offset,
        runtimes,
    )
    assert isinstance(analyzer, AudioAnalyzer)
    dev: str | int | None = int(device) if device is not None and device.isdigit() else device
    for bucket in analyzer.run(MicSource(dev, seconds).chunks()):
        typer.echo(json.dumps(bucket.to_json()), nl=True)


def register(app: typer.Typer) -> None:
    app.add_typer(audio_app, name="audio")
