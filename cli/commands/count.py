"""`edgetally count`, `edgetally eval` and `edgetally snapshot`: footfall on a source."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Any

import typer
from edgetally.progress import progress
from edgetally.runtime.errors import ConfigError, SourceError

MODEL_HELP = "A zoo name (edgetally models list) or a model file."
_DEFAULT_MODEL = "pedestrian-ssdlite"


def _parse_start(start: str | None) -> datetime | None:
    if start is None:
        return None
    try:
        ts = datetime.fromisoformat(start)
    except ValueError as exc:
        raise ConfigError(f"--start {start!r}: not an ISO 8601 time") from exc
    if ts.tzinfo is None:
        raise ConfigError(f"--start {start!r}: give a timezone, for example {start}+00:00")
    return ts


def build_pipeline(
    lines: list[str],
    zones: list[str],
    model: str,
    backend: str,
    device: str | None,
    family: str | None,
    gate: bool,
) -> Any:
    from edgetally.runtime.counting.detectors import load_detector
    from edgetally.runtime.counting.pipeline import build_pipeline, parse_counters

    if not lines and not zones:
        raise ConfigError("give at least one --line x1,y1,x2,y2 (or a --zone)")
    specs = parse_counters(lines, zones)  # a bad line or zone: an error before the model loads
    detector = load_detector(model, backend, device, family)
    return build_pipeline(detector, *specs, gate=gate)


def _run(
    source_spec: str,
    lines: list[str],
    zones: list[str],
    model: str,
    backend: str,
    device: str | None,
    family: str | None,
    gate: bool,
    stride: int,
    max_frames: int | None,
    start: str | None,
    annotate: Path | None,
    quiet: bool = False,
) -> Any:
    """Count on the source; a bar on a terminal shows how far (none when ``quiet``)."""
    from edgetally.runtime.counting.annotate import VideoWriter, draw_result
    from edgetally.runtime.counting.pipeline import run_count
    from edgetally.runtime.counting.sources import SourceOptions, open_source

    if stride < 1:
        raise ConfigError("--stride must be at least 1")
    pipeline = build_pipeline(lines, zones, model, backend, device, family, gate)
    options = SourceOptions(start=_parse_start(start), stride=stride, max_frames=max_frames)
    source = open_source(source_spec, options)
    writer: list[VideoWriter] = []

    def on_result(frame: Any, result: Any) -> None:
        if annotate is None:
            return
        if not writer:
            writer.append(VideoWriter(annotate, source.fps / stride, frame.size))
        zones_ = [z.spec for z in pipeline.zones]
        writer[0].write(draw_result(frame.image, result, pipeline.lines, zones_))

    try:
        with progress("frames", quiet=quiet) as told:
            report = run_count(source, pipeline, on_result, progress=told)
    finally:
        for w in writer:
            w.close()
    return report


def _print_lines(report: Any, extra: list[dict[str, Any]] | None = None) -> None:
    typer.echo(
        f"{report.source}: {report.frames} frames, model {report.model} on "
        f"{report.backend}, {report.fps:.1f} fps"
    )
    for i, line in enumerate(report.lines):
        truth = ""
        if extra:
            truth = f"   (truth in {extra[i]['true_in']}, out {extra[i]['true_out']})"
        pts = ",".join(f"{v:g}" for v in line["line"])
        typer.echo(f"  line {pts}: in {line['in']}, out {line['out']}{truth}")
    stats = report.stats
    typer.echo(
        f"  motion gate skipped {stats['gate_skipped_share']:.0%} of frames; inference "
        f"{stats['infer_ms_per_inferred_frame']:.1f} ms/frame, tracking+analytics "
        f"{stats['analytics_ms_per_frame']:.2f} ms/frame"
    )


LineOpt = typer.Option(
    [], "--line", metavar="X1,Y1,X2,Y2", help="A counting line, in pixels (repeatable)."
)
ZoneOpt = typer.Option(
    [], "--zone", metavar="X1,Y1,X2,Y2,X3,Y3,...", help="A zone polygon (repeatable)."
)
ModelOpt = typer.Option(_DEFAULT_MODEL, "--model", metavar="MODEL", help=MODEL_HELP)
BackendOpt = typer.Option(
    "auto", "--backend", metavar="BACKEND", help="auto | onnxruntime | openvino | litert"
)
DeviceOpt = typer.Option(
    None,
    "--device",
    metavar="DEVICE",
    help="OpenVINO device (CPU, GPU, NPU, AUTO), onnxruntime provider, or LiteRT delegate library.",
)
FamilyOpt = typer.Option(
    None, "--family", metavar="FAMILY",
    help="Processing family of an unknown model file: yolox | tf-ssd | tflite-ssd.",
)
GateOpt = typer.Option(True, "--gate/--no-gate", help="Skip inference on frames without motion.")
StrideOpt = typer.Option(
    1, "--stride", min=1, metavar="N", help="Keep every n-th frame of a file."
)
MaxFramesOpt = typer.Option(
    None, "--max-frames", min=1, metavar="N", help="Stop after this many frames."
)
StartOpt = typer.Option(
    None, "--start", metavar="TIME", help="Time of a file's first frame (ISO 8601, with zone)."
)
JsonOpt = typer.Option(False, "--json", help="Print one JSON object (and no progress).")
SOURCE_HELP = "Video file, image folder, MOT folder, camera index or URL."


def count(
    source: str = typer.Argument(..., metavar="SOURCE", help=SOURCE_HELP),
    line: list[str] = LineOpt,
    zone: list[str] = ZoneOpt,
    model: str = ModelOpt,
    backend: str = BackendOpt,
    device: str | None = DeviceOpt,
    family: str | None = FamilyOpt,
    gate: bool = GateOpt,
    stride: int = StrideOpt,
    max_frames: int | None = MaxFramesOpt,
    start: str | None = StartOpt,
    annotate: Path | None = typer.Option(
        None, "--annotate", metavar="FILE",
        help="Write the video with boxes, ids, lines and counts here (.mp4, .avi).",
    ),
    as_json: bool = JsonOpt,
) -> None:
    """Count people crossing lines (in/out), occupancy and dwell, on the device."""
    report = _run(
        source,
        line,
        zone,
        model,
        backend,
        device,
        family,
        gate,
        stride,
        max_frames,
        start,
        annotate,
        quiet=as_json,
    )
    if as_json:
        typer.echo(json.dumps(report.as_json()))
    else:
        _print_lines(report)
    if annotate is not None:  # on stderr: --json keeps stdout one JSON object
        typer.echo(f"wrote {annotate} ({report.frames} frames, annotated)", err=True)


def evaluate(
    seq_dir: Path = typer.Argument(
        ..., metavar="SEQ_DIR", help="A MOT sequence: gt/gt.txt plus img1/ or a video."
    ),
    line: list[str] = LineOpt,
    model: str = ModelOpt,
    backend: str = BackendOpt,
    device: str | None = DeviceOpt,
    family: str | None = FamilyOpt,
    gate: bool = GateOpt,
    stride: int = StrideOpt,
    as_json: bool = JsonOpt,
) -> None:
    """Count on a MOT sequence and score the counts against its ground truth."""
    from edgetally.runtime.counting.analytics import LineSpec
    from edgetally.runtime.counting.mot import count_accuracy, read_gt, true_counts

    if not seq_dir.is_dir():
        raise SourceError(f"not a MOT sequence folder: {seq_dir}")
    if not line:
        raise ConfigError("give at least one --line x1,y1,x2,y2")
    gt = read_gt(seq_dir)
    report = _run(
        str(seq_dir), line, [], model, backend, device, family, gate, stride, None, None, None,
        quiet=as_json,
    )
    lines = []
    scored = []
    for text, counted in zip(line, report.lines, strict=True):
        t_in, t_out = true_counts(gt, LineSpec.parse(text))
        lines.append({**counted, "true_in": t_in, "true_out": t_out})
        scored.append((counted["in"], counted["out"], t_in, t_out))
    accuracy = round(count_accuracy(scored), 4)
    if as_json:
        typer.echo(json.dumps({**report.as_json(), "lines": lines, "count_accuracy": accuracy}))
    else:
        _print_lines(report, lines)
        typer.echo(f"  count accuracy {accuracy:.3f}")


def snapshot(
    source: str = typer.Argument(
        ..., metavar="SOURCE", help="Video file, image folder, camera index or URL."
    ),
    out: Path = typer.Option(..., "--out", metavar="FILE", help="PNG file to write."),
    frame: int = typer.Option(
        0, "--frame", min=0, metavar="N", help="Which frame of a file, counted from 0."
    ),
    line: list[str] = LineOpt,
    zone: list[str] = ZoneOpt,
    grid: bool = typer.Option(True, "--grid/--no-grid", help="Overlay a pixel grid."),
) -> None:
    """Save one frame as PNG (with a pixel grid) to pick line and zone coordinates from."""
    import cv2
    from edgetally.runtime.counting.analytics import LineCounter, LineSpec, ZoneSpec
    from edgetally.runtime.counting.annotate import draw_grid, draw_lines, draw_zones
    from edgetally.runtime.counting.sources import SourceOptions, open_source
    from edgetally.runtime.types import LineId, ZoneId

    src = open_source(source, SourceOptions(max_frames=frame + 1))
    picked = None
    try:
        for f in src:
            picked = f
    finally:
        src.close()
    if picked is None:
        raise SourceError(f"{source}: no frame could be read")
    if picked.index < frame:
        n = picked.index + 1
        raise SourceError(
            f"--frame {frame}: {src.name} has {n} frames, so --frame goes from 0 to {n - 1}"
        )
    image = draw_grid(picked.image) if grid else picked.image.copy()
    counters = [LineCounter(LineSpec.parse(t, LineId(f"line{i + 1}"))) for i, t in enumerate(line)]
    draw_zones(image, [ZoneSpec.parse(t, ZoneId(f"zone{i + 1}")) for i, t in enumerate(zone)], {})
    draw_lines(image, counters)
    if not cv2.imwrite(str(out), image):
        raise SourceError(f"cannot write {out}")
    w, h = picked.size
    typer.echo(f"wrote {out} (frame {picked.index}, {w}x{h})")


def register(app: typer.Typer) -> None:
    app.command("count")(count)
    app.command("eval")(evaluate)
    app.command("snapshot")(snapshot)
