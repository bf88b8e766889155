"""`edgetally count`, `edgetally eval` and `edgetally snapshot`: footfall on a source."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer
from edgetally.commands import sigterm_as_interrupt
from edgetally.models.zoo import DEFAULT_DETECTOR
from edgetally.progress import progress
from edgetally.runtime.errors import ConfigError, SourceError

if TYPE_CHECKING:  # imported where used: the command starts fast
    from edgetally.runtime.scoring.matching import EventScore
    from edgetally.runtime.scoring.references import ReferenceLine, ReferenceZone

MODEL_HELP = "A zoo name (edgetally models list) or a model file."


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
    roi: str | None = None,
) -> Any:
    from edgetally.runtime.counting.detectors import load_detector
    from edgetally.runtime.counting.pipeline import build_pipeline, parse_counters, parse_roi

    if not lines and not zones:
        raise ConfigError("give at least one --line x1,y1,x2,y2 (or a --zone)")
    specs = parse_counters(lines, zones)  # a bad line or zone: an error before the model loads
    region = None if roi is None else parse_roi(roi)
    detector = load_detector(model, backend, device, family)
    return build_pipeline(detector, *specs, gate=gate, roi=region)


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
    events: list[dict[str, Any]] | None = None,
    roi: str | None = None,
    signals: list[str] | None = None,
) -> Any:
    """Count on the source; a bar on a terminal shows how far (none when ``quiet``).

    ``events``, when given, receives each crossing and each zone entry and exit as a row
    (what ``--events`` writes), in frame order; an exit is stamped with the visit's last
    frame inside, also for the visits still in progress when the source ends."""
    from edgetally.runtime.counting.annotate import VideoWriter, draw_result
    from edgetally.runtime.counting.pipeline import number_as_typed, run_count
    from edgetally.runtime.counting.sources import SourceOptions, open_source

    if stride < 1:
        raise ConfigError("--stride must be at least 1")
    pipeline = build_pipeline(lines, zones, model, backend, device, family, gate, roi)
    options = SourceOptions(start=_parse_start(start), stride=stride, max_frames=max_frames)
    source = open_source(source_spec, options)
    writer: list[VideoWriter] = []

    points = {c.spec.line_id: [number_as_typed(v) for v in c.spec.points] for c in pipeline.lines}
    polygons = {z.spec.zone_id: [number_as_typed(v) for v in z.spec.points] for z in pipeline.zones}
    entered: dict[tuple[str, int], tuple[int, datetime]] = {}  # visit -> its first frame

    def zone_row(event: str, zone_id: str, track: int, frame_index: int, ts: datetime) -> Any:
        return {
            "t": round(frame_index / source.fps, 3),
            "time": ts.isoformat(),
            "frame": frame_index,
            "zone": polygons[zone_id],
            "zone_id": zone_id,
            "event": event,
            "track": track,
        }

    def exit_row(d: Any) -> Any:
        """A visit's exit at the last frame it was seen inside, so that exit minus entry is
        its dwell (the device learns of it later: seen outside, or its track lost)."""
        first, ts = entered.pop((d.zone_id, d.track_id))
        last = first + round(d.seconds * source.fps)
        row = zone_row("exit", d.zone_id, d.track_id, last, ts + timedelta(seconds=d.seconds))
        return {**row, "dwell_s": round(d.seconds, 3)}

    def on_result(frame: Any, result: Any) -> None:
        if events is not None:
            for c in result.crossings:
                events.append(
                    {
                        "t": round(c.frame_index / source.fps, 3),
                        "time": c.timestamp.isoformat(),
                        "frame": c.frame_index,
                        "line": points[c.line_id],
                        "line_id": c.line_id,
                        "dir": c.direction,
                        "track": c.track_id,
                    }
                )
            for e in result.entries:
                entered[e.zone_id, e.track_id] = (result.frame_index, e.timestamp)
                events.append(
                    zone_row("enter", e.zone_id, e.track_id, result.frame_index, e.timestamp)
                )
            events.extend(exit_row(d) for d in result.dwells)
        if annotate is None:
            return
        if not writer:
            writer.append(VideoWriter(annotate, source.fps / stride, frame.size))
        zones_ = [z.spec for z in pipeline.zones]
        writer[0].write(draw_result(frame.image, result, pipeline.lines, zones_))

    try:
        with progress("frames", quiet=quiet) as told, sigterm_as_interrupt(signals):
            report = run_count(source, pipeline, on_result, progress=told, interruptible=True)
    finally:
        for w in writer:
            w.close()
    if events is not None:
        events.extend(exit_row(d) for d in report.closed)
        events.sort(key=lambda row: row["frame"])  # exits go back to their last frame inside
        if report.partial:
            events.append({"partial": True, "frames": report.frames})
    return report


def _stopped(report: Any, signals: list[str]) -> int:
    """After an interrupted run: one line on stderr, and the exit code (130 for Ctrl-C,
    143 for SIGTERM, as a shell reports them)."""
    by = "SIGTERM" if "SIGTERM" in signals else "Ctrl-C"
    typer.echo(
        f"edgetally: interrupted ({by}) after {report.frames} frames: the counts above are partial",
        err=True,
    )
    return 143 if by == "SIGTERM" else 130


def _seconds(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f} s"


def _visits(n: int) -> str:
    return f"{n} visit{'' if n == 1 else 's'}"


def _print_lines(
    report: Any,
    extra: list[dict[str, Any]] | None = None,
    zones: list[dict[str, Any]] | None = None,
) -> None:
    """The report for a person; ``extra`` and ``zones``: the lines and zones with their
    truth and scores (eval)."""
    typer.echo(
        f"{report.source}: {report.frames} frames, model {report.model} on "
        f"{report.backend}, {report.fps:.1f} fps"
    )
    for i, line in enumerate(report.lines):
        truth = ""
        if extra:
            truth = f"   (truth in {extra[i]['true_in']}, out {extra[i]['true_out']}"
            if "f1" in extra[i]:
                truth += f"; events F1 {extra[i]['f1']:.3f}"
            truth += ")"
        pts = ",".join(f"{v:g}" for v in line["line"])
        typer.echo(f"  line {pts}: in {line['in']}, out {line['out']}{truth}")
    for zone in zones or report.zones:
        truth = ""
        if "true_visits" in zone:
            truth = f"   (truth {_visits(zone['true_visits'])}; visits F1 {zone['f1']:.3f})"
        pts = ",".join(f"{v:g}" for v in zone["zone"])
        typer.echo(
            f"  zone {pts}: {_visits(zone['visits'])}, occupancy mean "
            f"{zone['occupancy_mean']:.2f}, max {zone['occupancy_max']}; dwell p50 "
            f"{_seconds(zone['dwell_p50_s'])}, p90 {_seconds(zone['dwell_p90_s'])}{truth}"
        )
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
ModelOpt = typer.Option(DEFAULT_DETECTOR, "--model", metavar="MODEL", help=MODEL_HELP)
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
    None,
    "--family",
    metavar="FAMILY",
    help="Processing family of an unknown model file: yolox | tf-ssd | tflite-ssd.",
)
GateOpt = typer.Option(True, "--gate/--no-gate", help="Skip inference on frames without motion.")
RoiOpt = typer.Option(
    None,
    "--roi",
    metavar="X1,Y1,X2,Y2",
    help="Detect only in this region (top-left, bottom-right): people far from the camera "
    "come out larger.",
)
StrideOpt = typer.Option(1, "--stride", min=1, metavar="N", help="Keep every n-th frame of a file.")
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
    roi: str | None = RoiOpt,
    stride: int = StrideOpt,
    max_frames: int | None = MaxFramesOpt,
    start: str | None = StartOpt,
    annotate: Path | None = typer.Option(
        None,
        "--annotate",
        metavar="FILE",
        help="Write the video with boxes, ids, lines and counts here (.mp4, .avi).",
    ),
    events: Path | None = typer.Option(
        None,
        "--events",
        metavar="FILE",
        help="Write each crossing (t, time, frame, line, dir, track) and zone entry or exit "
        "(t, time, frame, zone, event, track, dwell_s) here as JSON Lines.",
    ),
    as_json: bool = JsonOpt,
) -> None:
    """Count people crossing lines (in/out), occupancy and dwell, on the device."""
    rows: list[dict[str, Any]] | None = None if events is None else []
    signals: list[str] = []
    if events is not None:
        _check_writable(events)
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
        events=rows,
        roi=roi,
        signals=signals,
    )
    if events is not None and rows is not None:
        events.write_text("".join(json.dumps(row) + "\n" for row in rows))
    if as_json:
        typer.echo(json.dumps(report.as_json()))
    else:
        _print_lines(report)
    if annotate is not None:  # on stderr: --json keeps stdout one JSON object
        typer.echo(f"wrote {annotate} ({report.frames} frames, annotated)", err=True)
    if events is not None and rows is not None:
        n_crossings = sum(1 for row in rows if "line" in row)
        zone_rows = (
            f", {len(rows) - n_crossings - report.partial} zone entries and exits" if zone else ""
        )
        marked = ", marked partial" if report.partial else ""
        typer.echo(f"wrote {events} ({n_crossings} crossings{zone_rows}{marked})", err=True)
    if report.partial:
        raise typer.Exit(_stopped(report, signals))


def _check_writable(path: Path) -> None:
    """Fail before the run, not after it, when the file cannot be written."""
    if path.is_dir():
        raise ConfigError(f"--events {path}: is a folder, give a file name")
    if not path.parent.is_dir():
        raise ConfigError(f"--events {path}: folder {path.parent} does not exist")


def evaluate(
    source: str = typer.Argument(
        ...,
        metavar="SOURCE",
        help="A MOT sequence (gt/gt.txt plus img1/ or a video), or any source with --reference.",
    ),
    line: list[str] = LineOpt,
    reference: list[Path] = typer.Option(
        [],
        "--reference",
        metavar="FILE",
        help='True crossings of a line: {"line": [...], "events": [{"t": s, '
        '"dir": "in"|"out"}]}, or count --events lines (repeatable).',
    ),
    zone: list[str] = typer.Option(
        [],
        "--zone",
        metavar="X1,Y1,X2,Y2,X3,Y3,...",
        help="A zone polygon to report, not scored (repeatable).",
    ),
    zone_reference: list[Path] = typer.Option(
        [],
        "--zone-reference",
        metavar="FILE",
        help='True visits of a zone, scored by entry: {"zone": [...], "visits": '
        '[{"t": s, "exit_t": s}]} (exit_t optional), or count --events lines '
        "(repeatable).",
    ),
    tolerance_s: float = typer.Option(
        1.0,
        "--tolerance-s",
        metavar="SECONDS",
        help="How far apart in time a counted and a true crossing (or zone entry) may be to match.",
    ),
    model: str = ModelOpt,
    backend: str = BackendOpt,
    device: str | None = DeviceOpt,
    family: str | None = FamilyOpt,
    gate: bool = GateOpt,
    roi: str | None = RoiOpt,
    stride: int = StrideOpt,
    as_json: bool = JsonOpt,
) -> None:
    """Count on a source and score each crossing against the truth: MOT ground truth for
    --line, or a reference file of events (--reference); and each zone visit against a
    reference file of visits (--zone-reference)."""
    from edgetally.runtime.counting.pipeline import parse_counters
    from edgetally.runtime.counting.sources import mot_frame_rate
    from edgetally.runtime.scoring.matching import check_tolerance
    from edgetally.runtime.scoring.mot import read_gt, true_lines
    from edgetally.runtime.scoring.references import (
        read_references,
        read_zone_references,
    )

    check_tolerance(tolerance_s)  # before the run, not after it
    refs: list[ReferenceLine] = read_references(reference)
    zone_refs: list[ReferenceZone] = read_zone_references(zone_reference)
    if refs and line:
        raise ConfigError("give --line (truth from gt/gt.txt) or --reference, not both")
    if zone_refs and zone:
        raise ConfigError(
            "give --zone (reported, not scored) or --zone-reference (scored), not both"
        )
    if refs:
        texts = [ref.text for ref in refs]
    elif line:
        seq_dir = Path(source)
        if not seq_dir.is_dir():
            raise SourceError(
                f"not a MOT sequence folder: {source} (for a plain video, give --reference)"
            )
        gt = read_gt(seq_dir)
        fps = mot_frame_rate(seq_dir) or 25.0
        specs, _ = parse_counters(line)
        refs = true_lines(gt, specs, fps)
        texts = line
    elif zone_refs:
        texts = []  # only zones to score
    else:
        raise ConfigError(
            "give at least one --line x1,y1,x2,y2 (truth from a MOT sequence's "
            "gt/gt.txt), --reference FILE or --zone-reference FILE"
        )
    zone_texts = [ref.text for ref in zone_refs] or zone
    rows: list[dict[str, Any]] = []
    signals: list[str] = []
    report = _run(
        source,
        texts,
        zone_texts,
        model,
        backend,
        device,
        family,
        gate,
        stride,
        None,
        None,
        None,
        quiet=as_json,
        events=rows,
        roi=roi,
        signals=signals,
    )
    _report_scores(report, refs, zone_refs, rows, tolerance_s, as_json)
    if report.partial:  # scored on the frames it saw, and said so
        raise typer.Exit(_stopped(report, signals))


def _report_scores(
    report: Any,
    refs: list[ReferenceLine],
    zone_refs: list[ReferenceZone],
    rows: list[dict[str, Any]],
    tolerance_s: float,
    as_json: bool,
) -> None:
    """What eval prints: the counts, each line's and zone's score, the totals."""
    from edgetally.runtime.scoring.matching import Event
    from edgetally.runtime.scoring.run import score_run

    counted = [
        [Event(r["t"], r["dir"]) for r in rows if r.get("line_id") == f"line{i + 1}"]
        for i in range(len(refs))
    ]
    run = score_run(refs, counted, tolerance_s)
    lines = [
        {**line_total, **scored.as_dict()}
        for line_total, scored in zip(report.lines, run.lines, strict=True)
    ]
    accuracy, total = run.count_accuracy, run.events
    zones, zone_total, zone_accuracy = _score_zones(report.zones, zone_refs, rows, tolerance_s)
    zone_scores = (
        {}
        if not zone_refs
        else {
            "zone_count_accuracy": zone_accuracy,
            "zone_visits": zone_total.as_dict(),
        }
    )
    if as_json:
        typer.echo(
            json.dumps(
                {
                    **report.as_json(),
                    "lines": lines,
                    "zones": zones,
                    "count_accuracy": accuracy,
                    "tolerance_s": tolerance_s,
                    "events": total.as_dict(),
                    **zone_scores,
                }
            )
        )
        return
    _print_lines(report, lines, zones)
    if lines:
        typer.echo(f"  count accuracy {accuracy:.3f}")
        typer.echo(
            f"  events (within {tolerance_s:g} s, same direction): {total.tp} matched, "
            f"{total.fp} false, {total.fn} missed; precision {total.precision:.3f}, "
            f"recall {total.recall:.3f}, F1 {total.f1:.3f}"
        )
    if zone_refs:
        typer.echo(
            f"  zone visits (entries within {tolerance_s:g} s): {zone_total.tp} matched, "
            f"{zone_total.fp} false, {zone_total.fn} missed; precision "
            f"{zone_total.precision:.3f}, recall {zone_total.recall:.3f}, F1 "
            f"{zone_total.f1:.3f}; visit count accuracy {zone_accuracy:.3f}"
        )


def _score_zones(
    counted: list[dict[str, Any]],
    refs: list[ReferenceZone],
    rows: list[dict[str, Any]],
    tolerance_s: float,
) -> tuple[list[dict[str, Any]], EventScore, float]:
    """Each counted zone with its truth and scores when ``refs`` (one per zone) are given
    (:func:`~edgetally.runtime.scoring.run.score_zones`), and the scores over all zones.
    Without ``refs``, the zones as counted."""
    from edgetally.runtime.counting.analytics import dwell_percentile
    from edgetally.runtime.scoring.matching import EventScore
    from edgetally.runtime.scoring.run import score_zones

    if not refs:
        return counted, EventScore(0, 0, 0), 1.0
    entries = [
        [r["t"] for r in rows if r.get("zone_id") == zone["zone_id"] and r["event"] == "enter"]
        for zone in counted
    ]
    scores, total, accuracy = score_zones(
        refs, [zone["visits"] for zone in counted], entries, tolerance_s
    )
    zones = []
    for zone, score in zip(counted, scores, strict=True):
        p50, p90 = dwell_percentile(score.true_dwells, 50), dwell_percentile(score.true_dwells, 90)
        zones.append(
            {
                **zone,
                "true_visits": score.true_visits,
                **score.entries.as_dict(),
                "visit_count_accuracy": score.visit_count_accuracy,
                "true_dwell_p50_s": None if p50 is None else round(p50, 3),
                "true_dwell_p90_s": None if p90 is None else round(p90, 3),
            }
        )
    return zones, total, accuracy


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
