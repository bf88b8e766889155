"""The accuracy gate: does the INT8 model still find what the FP32 model finds, and count
the same people, through the device's own pre- and post-processing?"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from edgetally.runtime.counting.detectors import Detector
from edgetally.runtime.types import Detections, Progress, iou_matrix

MIN_AGREEMENT = 0.95
MAX_COUNT_DROP = 0.02
MATCH_IOU = 0.5


def matched(reference: Detections, candidate: Detections, iou: float = MATCH_IOU) -> int:
    """How many reference boxes have a candidate box of the same class at IoU >= ``iou``
    (greedy one-to-one matching, best IoU first)."""
    ious = iou_matrix(reference.xyxy, candidate.xyxy)
    if ious.size == 0:
        return 0
    ious[reference.class_id[:, None] != candidate.class_id[None, :]] = 0.0
    count = 0
    while True:
        r, c = np.unravel_index(int(np.argmax(ious)), ious.shape)
        if ious[r, c] < iou:
            return count
        count += 1
        ious[r, :] = 0.0
        ious[:, c] = 0.0


# Diagnostic only: how many lost boxes the INT8 model still has just under the threshold.
DIAGNOSTIC_DROP = 0.05


@dataclass(frozen=True, slots=True)
class Comparison:
    agreement: float | None  # None when the FP32 model found nothing to agree on
    reference_boxes: int
    matched_boxes: int
    fp32_ms: float  # median inference time per frame (the backend's run, same frames)
    int8_ms: float
    frames: int
    score_threshold: float = 0.25  # the one threshold both models' boxes were cut at
    # Diagnostic, never gated on: agreement when the INT8 boxes are cut DIAGNOSTIC_DROP lower.
    agreement_lower: float | None = None


def compare(
    fp32: Detector,
    int8: Detector,
    images: list[npt.NDArray[np.uint8]],
    diagnostic_drop: float = DIAGNOSTIC_DROP,
    progress: Progress | None = None,
) -> Comparison:
    """Run both detectors on every image (interleaved, so both see the same machine load).

    Both models' boxes are cut at the FP32 detector's score threshold (a box the INT8 model
    scores just under it counts as lost); ``agreement_lower`` repeats the match with the INT8
    boxes cut ``diagnostic_drop`` lower, to tell lost boxes from ones scored a little lower.
    ``progress`` is told ``("gate", images done, images in all)``."""
    threshold = fp32.score_threshold
    own = int8.score_threshold
    ref_total = hit_total = hit_lower = 0
    t32: list[float] = []
    t8: list[float] = []
    try:
        for done, image in enumerate(images, start=1):
            prep32, prep8 = fp32.prepare(image), int8.prepare(image)
            t0 = time.perf_counter()
            out32 = fp32.infer(prep32)
            t1 = time.perf_counter()
            out8 = int8.infer(prep8)
            t2 = time.perf_counter()
            t32.append(t1 - t0)
            t8.append(t2 - t1)
            ref = fp32.postprocess(out32, prep32)
            int8.score_threshold = threshold
            got = int8.postprocess(out8, prep8)
            int8.score_threshold = threshold - diagnostic_drop
            lower = int8.postprocess(out8, prep8)
            ref_total += len(ref)
            hit_total += matched(ref, got)
            hit_lower += matched(ref, lower)
            if progress is not None:
                progress("gate", done, len(images))
    finally:
        int8.score_threshold = own
    return Comparison(
        agreement=hit_total / ref_total if ref_total else None,
        reference_boxes=ref_total,
        matched_boxes=hit_total,
        fp32_ms=1000 * statistics.median(t32),
        int8_ms=1000 * statistics.median(t8),
        frames=len(images),
        score_threshold=threshold,
        agreement_lower=hit_lower / ref_total if ref_total else None,
    )


def warm_up(detector: Detector, image: npt.NDArray[np.uint8], runs: int = 3) -> None:
    prepared = detector.prepare(image)
    for _ in range(runs):
        detector.infer(prepared)


def count_accuracy(
    detector: Detector,
    seq_dir: Path,
    lines: list[str],
    progress: Progress | None = None,
    label: str = "count accuracy",
) -> float:
    """Count accuracy of ``detector`` on a MOT sequence, as ``edgetally eval`` scores it;
    ``progress`` is told ``(label, frames done, frames in all)``."""
    from edgetally.runtime.counting.pipeline import build_pipeline, parse_counters, run_count
    from edgetally.runtime.counting.sources import mot_frame_rate, open_source
    from edgetally.runtime.scoring.matching import Event
    from edgetally.runtime.scoring.mot import read_gt, true_lines
    from edgetally.runtime.scoring.run import score_run

    specs, _zones = parse_counters(lines)
    fps = mot_frame_rate(seq_dir) or 25.0
    truth = true_lines(read_gt(seq_dir), specs, fps)
    index = {spec.line_id: i for i, spec in enumerate(specs)}
    counted: list[list[Event]] = [[] for _ in specs]

    def collect(frame: Any, result: Any) -> None:
        for c in result.crossings:
            counted[index[c.line_id]].append(Event(c.frame_index / fps, c.direction))

    threshold = detector.score_threshold  # the pipeline lowers it for the tracker
    try:
        pipeline = build_pipeline(detector, specs)
        run_count(open_source(seq_dir), pipeline, collect, progress=_relabel(progress, label))
    finally:
        detector.score_threshold = threshold
    return score_run(truth, counted, tolerance_s=1.0).count_accuracy


def _relabel(progress: Progress | None, label: str) -> Progress | None:
    """``progress`` told under ``label`` instead of the name the loop gives."""
    if progress is None:
        return None
    tell = progress

    def told(_name: str, done: float, total: float | None) -> None:
        tell(label, done, total)

    return told


@dataclass(frozen=True, slots=True)
class Verdict:
    passed: bool
    reasons: tuple[str, ...]


def judge(
    agreement: float | None,
    acc_fp32: float | None,
    acc_int8: float | None,
    min_agreement: float = MIN_AGREEMENT,
    max_count_drop: float = MAX_COUNT_DROP,
) -> Verdict:
    reasons = []
    if agreement is None:
        reasons.append("the FP32 model found no person in the frames, so agreement is unknown")
    elif agreement < min_agreement:
        reasons.append(f"agreement {agreement:.3f} < {min_agreement}")
    if acc_fp32 is not None and acc_int8 is not None and acc_int8 < acc_fp32 - max_count_drop:
        reasons.append(
            f"count accuracy {acc_int8:.3f} is more than {max_count_drop} under FP32 {acc_fp32:.3f}"
        )
    return Verdict(not reasons, tuple(reasons))
