"""The counting pipeline: gate -> detector -> tracker -> lines and zones, frame by frame."""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import numpy as np
from edgetally.runtime.counting.analytics import (
    LineCounter,
    LineSpec,
    ZoneSpec,
    ZoneSummary,
    ZoneTracker,
)
from edgetally.runtime.counting.detectors import Detector
from edgetally.runtime.counting.gate import GateConfig, MotionGate
from edgetally.runtime.counting.passage import PassageBook, PassageConfig
from edgetally.runtime.counting.sources import FrameSource
from edgetally.runtime.counting.tracker import ByteTracker, TrackerConfig
from edgetally.runtime.errors import ConfigError
from edgetally.runtime.types import (
    Detections,
    Dwell,
    Frame,
    FrameResult,
    LineId,
    Progress,
    Track,
    ZoneEntry,
    ZoneId,
)

Roi = tuple[float, float, float, float]  # x1, y1, x2, y2: top-left, bottom-right
MIN_ROI_PX = 32


@dataclass(frozen=True, slots=True)
class PipelineConfig:
    gate: GateConfig = field(default_factory=GateConfig)
    tracker: TrackerConfig = field(default_factory=TrackerConfig)
    passage: PassageConfig = field(default_factory=PassageConfig)
    birth_lookback_s: float = 0.8  # 0: never count a person first seen past a line
    first_side_in_band: bool = True  # a person first seen in a line's band is on a side
    roi: Roi | None = None  # the detector sees only this region (x1, y1, x2, y2), closer


@dataclass(slots=True)
class PipelineStats:
    frames: int = 0
    inferred: int = 0
    infer_s: float = 0.0  # pre-processing, inference and post-processing
    gate_s: float = 0.0  # the motion gate's comparison
    analytics_s: float = 0.0  # tracking, lines and zones
    wall_s: float = 0.0  # everything, decoding included

    def as_dict(self) -> dict[str, float]:
        return {
            "frames": self.frames,
            "inferred": self.inferred,
            "gate_skipped_share": round(1 - self.inferred / self.frames, 4) if self.frames else 0.0,
            "infer_ms_per_inferred_frame": round(1000 * self.infer_s / max(self.inferred, 1), 3),
            "gate_ms_per_frame": round(1000 * self.gate_s / max(self.frames, 1), 3),
            "analytics_ms_per_frame": round(1000 * self.analytics_s / max(self.frames, 1), 3),
            "fps": round(self.frames / self.wall_s, 2) if self.wall_s else 0.0,
        }


class CountingPipeline:
    """Turns frames into tracks, line crossings, occupancy and dwell."""

    def __init__(
        self,
        detector: Detector,
        lines: Sequence[LineSpec],
        zones: Sequence[ZoneSpec] = (),
        config: PipelineConfig | None = None,
    ) -> None:
        self.config = config or PipelineConfig()
        self.detector = detector
        if detector.score_threshold > self.config.tracker.low:
            # The tracker's second round needs the detector's weak boxes.
            detector.score_threshold = self.config.tracker.low
        ids = [ln.line_id for ln in lines]
        if len(set(ids)) != len(ids):
            raise ConfigError(f"duplicate line ids: {ids}")
        self.lines = [
            LineCounter(
                spec,
                birth_lookback_s=self.config.birth_lookback_s,
                first_side_in_band=self.config.first_side_in_band,
            )
            for spec in lines
        ]
        self.zones = [ZoneTracker(spec) for spec in zones]
        self.gate = MotionGate(self.config.gate)
        self.tracker = ByteTracker(self.config.tracker)
        self.book = PassageBook(self.config.passage)
        self.stats = PipelineStats()
        self._t0: datetime | None = None
        self._checked = False
        self._bounds: tuple[float, float, float, float] | None = None
        self._tracks: tuple[Track, ...] = ()

    def process(self, frame: Frame) -> FrameResult:
        if not self._checked:
            w, h = frame.size
            for counter in self.lines:
                counter.spec.check_inside(w, h)
            roi = self.config.roi
            if roi is not None:
                check_roi(roi, w, h)
            self._bounds = roi if roi is not None else (0.0, 0.0, float(w), float(h))
            self._checked = True
        t_start = time.perf_counter()
        infer = self.gate.should_infer(frame.image)
        gate_s = time.perf_counter() - t_start
        infer_s = 0.0
        if infer:
            t_inf = time.perf_counter()
            detections = self._detect(frame)
            infer_s = time.perf_counter() - t_inf
            if self._t0 is None:
                self._t0 = frame.timestamp
            t = (frame.timestamp - self._t0).total_seconds()
            self._tracks = self.tracker.update(detections, t, self._bounds)
            people = self.book.observe(self._tracks, t, frame.timestamp, frame.index)
        tracks = self._tracks
        crossings = []
        occupancy: dict[ZoneId, int] = {}
        dwells: list[Dwell] = []
        entries: list[ZoneEntry] = []
        if infer:
            live = self.tracker.live_ids
            gone = self.book.expire(t, live)
            present = self.book.present
            for counter in self.lines:
                crossings.extend(counter.update(tracks, frame.timestamp, frame.index, people))
                counter.forget(gone)
            for zone in self.zones:
                n, began, ended = zone.update(tracks, frame.timestamp, present, people)
                occupancy[zone.spec.zone_id] = n
                entries.extend(began)
                dwells.extend(ended)
        else:
            occupancy = {z.spec.zone_id: len(z.visits) for z in self.zones}
        elapsed = time.perf_counter() - t_start
        self.stats.frames += 1
        self.stats.inferred += int(infer)
        self.stats.infer_s += infer_s
        self.stats.gate_s += gate_s
        self.stats.analytics_s += elapsed - infer_s - gate_s
        return FrameResult(
            frame_index=frame.index,
            timestamp=frame.timestamp,
            tracks=tracks,
            crossings=tuple(crossings),
            occupancy=occupancy,
            dwells=tuple(dwells),
            entries=tuple(entries),
            inferred=infer,
        )

    def _detect(self, frame: Frame) -> Detections:
        """The detector on the frame, or on its region of interest (boxes put back in the
        frame's pixels)."""
        roi = self.config.roi
        if roi is None:
            return self.detector.detect(frame.image)
        x1, y1, x2, y2 = (round(v) for v in roi)
        found = self.detector.detect(frame.image[y1:y2, x1:x2])
        shift = np.array([x1, y1, x1, y1], dtype=found.xyxy.dtype)
        return Detections(found.xyxy + shift, found.score, found.class_id)

    def finish(self, ts: datetime) -> list[Dwell]:
        """End the visits still in progress (the source ended)."""
        return [d for zone in self.zones for d in zone.close(ts)]

    def line_totals(self) -> list[dict[str, Any]]:
        return [
            {
                "line": [number_as_typed(v) for v in c.spec.points],
                "in": c.counts["in"],
                "out": c.counts["out"],
            }
            for c in self.lines
        ]


def number_as_typed(value: float) -> float | int:
    """A coordinate as the user typed it: 200 stays 200, not 200.0."""
    rounded = round(value, 2)
    return int(rounded) if rounded.is_integer() else rounded


def zone_total(summary: ZoneSummary) -> dict[str, Any]:
    """A zone as ``count --json`` reports it: its points as typed, its id, visits (entries),
    occupancy mean and max over every frame, dwell p50 and p90 of the ended visits (None
    when none ended)."""
    p50, p90 = summary.dwell_percentile(50), summary.dwell_percentile(90)
    return {
        "zone": [number_as_typed(v) for v in summary.spec.points],
        "zone_id": summary.spec.zone_id,
        "visits": summary.visits,
        "occupancy_mean": round(summary.occupancy_mean, 4),
        "occupancy_max": summary.occupancy_max,
        "dwell_p50_s": None if p50 is None else round(p50, 3),
        "dwell_p90_s": None if p90 is None else round(p90, 3),
    }


def parse_roi(text: str) -> Roi:
    """``x1,y1,x2,y2`` as on the command line: the region's top-left and bottom-right."""
    try:
        values = [float(p) for p in text.replace(" ", "").split(",")]
    except ValueError:
        values = []
    if len(values) != 4 or not all(math.isfinite(v) for v in values):
        raise ConfigError(f"--roi {text!r}: expected four numbers x1,y1,x2,y2")
    x1, y1, x2, y2 = values
    return x1, y1, x2, y2


def check_roi(roi: Roi, width: int, height: int) -> None:
    """A region inside the picture, at least ``MIN_ROI_PX`` pixels each way."""
    x1, y1, x2, y2 = roi
    text = ",".join(f"{v:g}" for v in roi)
    if x2 - x1 < MIN_ROI_PX or y2 - y1 < MIN_ROI_PX:
        raise ConfigError(
            f"roi {text}: give the top-left then the bottom-right corner, at least "
            f"{MIN_ROI_PX} px apart each way"
        )
    if x1 < 0 or y1 < 0 or x2 > width or y2 > height:
        raise ConfigError(f"roi {text}: outside the {width}x{height} frame")


def build_pipeline(
    detector: Detector,
    lines: Sequence[str | LineSpec] = (),
    zones: Sequence[str | ZoneSpec] = (),
    *,
    gate: bool = True,
    prefix: str = "line",
    roi: Roi | None = None,
) -> CountingPipeline:
    """The one way to put a counting pipeline together: lines and zones as texts or specs
    (:func:`parse_counters`), the motion gate on or off, the detector on the whole picture
    or on a region of it (``roi``: small people far from the camera come out larger)."""
    line_specs, zone_specs = parse_counters(lines, zones, prefix=prefix)
    config = PipelineConfig(gate=GateConfig(enabled=gate), roi=roi)
    return CountingPipeline(detector, line_specs, zone_specs, config)


def parse_counters(
    lines: Sequence[str | LineSpec] = (),
    zones: Sequence[str | ZoneSpec] = (),
    *,
    prefix: str = "line",
) -> tuple[list[LineSpec], list[ZoneSpec]]:
    """Lines as ``x1,y1,x2,y2`` texts (ids ``{prefix}1``, ``{prefix}2``...) and zones as
    ``x1,y1,x2,y2,...`` texts (ids ``zone1``...) as specs; specs pass through."""
    line_specs = [
        spec if isinstance(spec, LineSpec) else LineSpec.parse(spec, LineId(f"{prefix}{i + 1}"))
        for i, spec in enumerate(lines)
    ]
    zone_specs = [
        spec if isinstance(spec, ZoneSpec) else ZoneSpec.parse(spec, ZoneId(f"zone{i + 1}"))
        for i, spec in enumerate(zones)
    ]
    return line_specs, zone_specs


@dataclass(frozen=True, slots=True)
class CountReport:
    source: str
    frames: int
    model: str
    backend: str
    fps: float
    lines: list[dict[str, Any]]
    stats: dict[str, float]
    zones: list[dict[str, Any]] = field(default_factory=list)  # zone_total() of each zone
    closed: tuple[Dwell, ...] = ()  # the visits still in progress when the source ended
    partial: bool = False  # interrupted before the source's end: the counts so far

    def as_json(self) -> dict[str, Any]:
        out = {
            "source": self.source,
            "frames": self.frames,
            "model": self.model,
            "backend": self.backend,
            "fps": self.fps,
            "lines": self.lines,
            "zones": self.zones,
        }
        if self.partial:
            out["partial"] = True
        return out


def run_count(
    source: FrameSource,
    pipeline: CountingPipeline,
    on_result: Callable[[Frame, FrameResult], None] | None = None,
    progress: Progress | None = None,
    *,
    interruptible: bool = False,
) -> CountReport:
    """Run ``pipeline`` over ``source`` to its end; ``on_result`` sees every frame and
    ``progress`` is told ``(source name, frames done, frames in all or None)``. With
    ``interruptible``, Ctrl-C (KeyboardInterrupt) ends the run between two frames and the
    report says ``partial``: the counts so far, visits in progress closed as at an end."""
    start = time.perf_counter()
    last: datetime | None = None
    total: int | None = getattr(source, "total", None)
    done = 0
    partial = False
    zones = [ZoneSummary(z.spec) for z in pipeline.zones]
    try:
        for frame in source:
            try:
                result = pipeline.process(frame)
            except KeyboardInterrupt:
                if not interruptible:
                    raise
                partial = True
                break
            last = frame.timestamp
            for zone in zones:
                zone.add(result)
            if on_result is not None:
                on_result(frame, result)
            done += 1
            if progress is not None:
                progress(source.name, done, total)
    except KeyboardInterrupt:
        if not interruptible:
            raise
        partial = True  # while a frame was read
    finally:
        pipeline.stats.wall_s = time.perf_counter() - start
        source.close()
    closed = pipeline.finish(last) if last is not None else []
    for zone in zones:
        zone.add_dwells(closed)
    info = pipeline.detector.info
    return CountReport(
        source=source.name,
        frames=pipeline.stats.frames,
        model=info.model,
        backend=info.backend,
        fps=pipeline.stats.as_dict()["fps"],
        lines=pipeline.line_totals(),
        stats=pipeline.stats.as_dict(),
        zones=[zone_total(zone) for zone in zones],
        closed=tuple(closed),
        partial=partial,
    )
