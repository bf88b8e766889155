"""The counting pipeline: gate -> detector -> tracker -> lines and zones, frame by frame."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from edgetally.runtime.counting.analytics import LineCounter, LineSpec, ZoneSpec, ZoneTracker
from edgetally.runtime.counting.detectors import Detector
from edgetally.runtime.counting.gate import GateConfig, MotionGate
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
    ZoneId,
)


@dataclass(frozen=True, slots=True)
class PipelineConfig:
    gate: GateConfig = field(default_factory=GateConfig)
    tracker: TrackerConfig = field(default_factory=TrackerConfig)


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
        self.lines = [LineCounter(spec) for spec in lines]
        self.zones = [ZoneTracker(spec) for spec in zones]
        self.gate = MotionGate(self.config.gate)
        self.tracker = ByteTracker(self.config.tracker)
        self.stats = PipelineStats()
        self._t0: datetime | None = None
        self._checked = False
        self._tracks: tuple[Track, ...] = ()

    def process(self, frame: Frame) -> FrameResult:
        if not self._checked:
            w, h = frame.size
            for counter in self.lines:
                counter.spec.check_inside(w, h)
            self._checked = True
        t_start = time.perf_counter()
        infer = self.gate.should_infer(frame.image)
        gate_s = time.perf_counter() - t_start
        infer_s = 0.0
        if infer:
            t_inf = time.perf_counter()
            detections: Detections = self.detector.detect(frame.image)
            infer_s = time.perf_counter() - t_inf
            if self._t0 is None:
                self._t0 = frame.timestamp
            t = (frame.timestamp - self._t0).total_seconds()
            self._tracks = self.tracker.update(detections, t)
        tracks = self._tracks
        crossings = []
        occupancy: dict[ZoneId, int] = {}
        dwells: list[Dwell] = []
        if infer:
            live = self.tracker.live_ids
            for counter in self.lines:
                crossings.extend(counter.update(tracks, frame.timestamp, frame.index))
                counter.forget(live)
            for zone in self.zones:
                occupancy[zone.spec.zone_id], ended = zone.update(tracks, frame.timestamp, live)
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
            inferred=infer,
        )

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


def build_pipeline(
    detector: Detector,
    lines: Sequence[str | LineSpec] = (),
    zones: Sequence[str | ZoneSpec] = (),
    *,
    gate: bool = True,
    prefix: str = "line",
) -> CountingPipeline:
    """The one way to put a counting pipeline together: lines and zones as texts or specs
    (:func:`parse_counters`), the motion gate on or off."""
    line_specs, zone_specs = parse_counters(lines, zones, prefix=prefix)
    config = PipelineConfig(gate=GateConfig(enabled=gate))
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

    def as_json(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "frames": self.frames,
            "model": self.model,
            "backend": self.backend,
            "fps": self.fps,
            "lines": self.lines,
        }


def run_count(
    source: FrameSource,
    pipeline: CountingPipeline,
    on_result: Callable[[Frame, FrameResult], None] | None = None,
    progress: Progress | None = None,
) -> CountReport:
    """Run ``pipeline`` over ``source`` to its end; ``on_result`` sees every frame and
    ``progress`` is told ``(source name, frames done, frames in all or None)``."""
    start = time.perf_counter()
    last: datetime | None = None
    total: int | None = getattr(source, "total", None)
    done = 0
    try:
        for frame in source:
            result = pipeline.process(frame)
            last = frame.timestamp
            if on_result is not None:
                on_result(frame, result)
            done += 1
            if progress is not None:
                progress(source.name, done, total)
    finally:
        pipeline.stats.wall_s = time.perf_counter() - start
        source.close()
    if last is not None:
        pipeline.finish(last)
    info = pipeline.detector.info
    return CountReport(
        source=source.name,
        frames=pipeline.stats.frames,
        model=info.model,
        backend=info.backend,
        fps=pipeline.stats.as_dict()["fps"],
        lines=pipeline.line_totals(),
        stats=pipeline.stats.as_dict(),
    )
