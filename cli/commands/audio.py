"""`edgetally audio`: sound level, speech share and sound events per time bucket."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import typer
from edgetally.progress import progress
from edgetally.runtime.audio.errors import AudioError

audio_app = typer.Typer(help="Sound level, speech share and sound events per time bucket.")

_RUNTIMES = "auto, onnxruntime, openvino or litert"
_DEVICE = "OpenVINO device, onnxruntime provider or LiteRT delegate"
VadBackend = Annotated[
    str, typer.Option("--vad-backend", metavar="BACKEND", help=f"VAD runtime: {_RUNTIMES}.")
]
VadAccelerator = Annotated[
    str | None, typer.Option("--vad-accelerator", metavar="DEVICE", help=f"The VAD's {_DEVICE}.")
]
ClassifierBackend = Annotated[
    str,
    typer.Option(
        "--classifier-backend", metavar="BACKEND", help=f"Classifier runtime: {_RUNTIMES}."
    ),
]
ClassifierAccelerator = Annotated[
    str | None,
    typer.Option("--classifier-accelerator", metavar="DEVICE", help=f"The classifier's {_DEVICE}."),
]
BucketSeconds = Annotated[
    float, typer.Option("--bucket-seconds", metavar="SECONDS", help="Bucket length.")
]
NoVad = Annotated[bool, typer.Option("--no-vad", help="Skip speech activity.")]
VadModel = Annotated[
    Path | None, typer.Option("--vad-model", metavar="FILE", help="silero-vad ONNX file.")
]
ClassMap = Annotated[
    Path | None,
    typer.Option("--class-map", metavar="FILE", help="Class map CSV: index,mid,display_name."),
]
EventThreshold = Annotated[
    float, typer.Option("--event-threshold", metavar="SCORE", help="Top-class score.")
]
SplOffset = Annotated[
    float | None,
    typer.Option("--spl-offset", metavar="DB", help="Calibration: the dB SPL that reads 0 dBFS."),
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
        start, leq, laeq = (float(str(b[k])) for k in ("start", "leq_dbfs", "laeq_dbfs"))
        typer.echo(f"{start:>9g} {leq:>9.1f} {laeq:>10.1f} {sp:>7}  {ev}")


@audio_app.command("analyze")
def analyze(
    file: Path = typer.Argument(
        ..., metavar="FILE", help="WAV, FLAC or OGG; any rate, mixed to mono."
    ),
    bucket_seconds: BucketSeconds = 60.0,
    as_json: bool = typer.Option(
        False, "--json", help="Print a JSON list of buckets (and no progress)."
    ),
    no_vad: NoVad = False,
    vad_model: VadModel = None,
    classifier: Path | None = typer.Option(
        None, "--classifier", metavar="FILE", help="ONNX or TFLite audio classifier (16 kHz)."
    ),
    class_map: ClassMap = None,
    event_threshold: EventThreshold = 0.5,
    spl_offset: SplOffset = None,
    vad_backend: VadBackend = "auto",
    vad_accelerator: VadAccelerator = None,
    classifier_backend: ClassifierBackend = "auto",
    classifier_accelerator: ClassifierAccelerator = None,
) -> None:
    """Level (Leq, LAeq), speech share and sound events per bucket of a sound file (a bar
    on a terminal shows how far)."""
    from edgetally.runtime.audio.pipeline import AudioAnalyzer
    from edgetally.runtime.audio.sources import FileSource

    runtimes = _Runtimes(vad_backend, vad_accelerator, classifier_backend, classifier_accelerator)
    analyzer = _build(
        bucket_seconds,
        no_vad,
        vad_model,
        classifier,
        class_map,
        event_threshold,
        spl_offset,
        runtimes,
    )
    assert isinstance(analyzer, AudioAnalyzer)
    source = FileSource(file)
    with progress("s", quiet=as_json) as told:
        total = source.duration_s if told is not None else None
        run = analyzer.run(source.chunks(), progress=told, total_s=total, name=file.name)
        buckets = [b.to_json() for b in run]
    if as_json:
        typer.echo(json.dumps(buckets))
    else:
        _print_table(buckets)


@audio_app.command("live")
def live(
    device: str | None = typer.Option(
        None, "--device", metavar="DEVICE", help="Input device name or index."
    ),
    seconds: float | None = typer.Option(
        None, "--seconds", metavar="SECONDS", help="Stop after this long."
    ),
    bucket_seconds: BucketSeconds = 60.0,
    no_vad: NoVad = False,
    vad_model: VadModel = None,
    classifier: Path | None = typer.Option(
        None, "--classifier", metavar="FILE", help="Audio classifier."
    ),
    class_map: ClassMap = None,
    event_threshold: EventThreshold = 0.5,
    spl_offset: SplOffset = None,
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
        bucket_seconds,
        no_vad,
        vad_model,
        classifier,
        class_map,
        event_threshold,
        spl_offset,
        runtimes,
    )
    assert isinstance(analyzer, AudioAnalyzer)
    dev: str | int | None = int(device) if device is not None and device.isdigit() else device
    for bucket in analyzer.run(MicSource(dev, seconds).chunks()):
        typer.echo(json.dumps(bucket.to_json()), nl=True)


def register(app: typer.Typer) -> None:
    app.add_typer(audio_app, name="audio")
