"""Counting accuracy of every built-in model and backend on every sequence and reference.

For each model x backend it runs the detector once over every frame of every sequence
(cached on disk: ``--cache``), then replays those detections through the real counting
pipeline (motion gate, tracker, lines) exactly as ``edgetally eval`` runs them, and scores
each line two ways: count accuracy (1 - sum |count - truth| / sum truth) and crossing
events matched one by one within ``--tolerance-s`` (precision, recall, F1).

Beside our own tracker and lines (row ``edgetally``), peer trackers run on the same
detections and are scored the same way (benchmarks/peers.py says what each gets): boxmot's
OC-SORT, ByteTrack, SFSORT and BoT-SORT (re-ID off) and supervision's ByteTrack, each counted
by supervision's ``LineZone`` with ``minimum_crossing_threshold`` 1 and 2 (rows such as
``boxmot-ocsort t=2``). They run when boxmot and supervision import (the ``peers`` extra);
otherwise one line on stderr says why they were skipped. ``--no-peers`` leaves them out.

Sequences and their truth:
- TUD-Campus and TUD-Stadtmitte (../shared/data/footfall): MOT ground truth (annotated by
  hand, frame by frame), the lines of the data's README first, then more lines across the
  same walkways (every 100 px or so), each scored from the same annotations;
- vtest.avi (Debian's opencv-doc): the reviewed references in benchmarks/data/vtest/.

Output: a markdown table, one row per model, backend and tracker (count accuracy / event F1
per sequence), or with ``--json`` the rows as objects: ``model``, ``backend``, ``tracker``
(``edgetally`` or a peer's name), ``threshold`` (the peer's ``minimum_crossing_threshold``;
null for ours) and ``sequences`` (each sequence's scores, per line too). Tracking time per
frame, ours and each peer's, goes to stderr.

Usage: python benchmarks/accuracy.py [--models M ...] [--json] [--cache DIR]
       [--tolerance-s S] [--peers/--no-peers]
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import json
import os
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
SHARED = HERE.parents[1] / "shared"
VTEST = Path("/usr/share/doc/opencv-doc/examples/data/vtest.avi")
VTEST_REFERENCES = HERE / "data" / "vtest"
START = datetime(2026, 1, 1, tzinfo=UTC)  # the replayed sources' first frame
CACHE_THRESHOLD = 0.05  # detections kept in the cache: below every tracker setting tried

CONFIGS = [
    ("yolox-nano", "onnxruntime"),
    ("yolox-nano", "openvino"),
    ("lwpd", "onnxruntime"),
    ("lwpd", "openvino"),
    ("pedestrian-ssdlite", "openvino"),
    ("ssd-mobilenet-v1-coco-quant", "litert"),
]


@dataclass
class Sequence:
    name: str
    source: str
    lines: list[str]
    truth: list[Any]  # ReferenceLine per line
    gate: bool = True


@dataclass
class Cached:
    """Every frame's detections of one model on one sequence."""

    boxes: list[np.ndarray] = field(default_factory=list)
    scores: list[np.ndarray] = field(default_factory=list)


def sequences(with_vtest: bool = True) -> list[Sequence]:
    from edgetally.runtime.counting.pipeline import parse_counters
    from edgetally.runtime.counting.sources import mot_frame_rate
    from edgetally.runtime.scoring.mot import read_gt, true_lines
    from edgetally.runtime.scoring.references import read_references

    found = []
    footfall = SHARED / "data" / "footfall"
    for name, lines in (
        (
            "tud_campus",
            [
                "320,250,320,480",
                "120,200,120,480",
                "220,200,220,480",
                "420,200,420,480",
                "520,200,520,480",
            ],
        ),
        (
            "tud_stadtmitte",
            [
                "450,200,450,480",
                "320,200,320,480",
                "100,200,100,480",
                "200,200,200,480",
                "550,200,550,480",
            ],
        ),
    ):
        seq = footfall / name
        if not seq.is_dir():
            continue
        gt = read_gt(seq)
        fps = mot_frame_rate(seq) or 25.0
        specs, _ = parse_counters(lines)
        found.append(Sequence(name, str(seq), lines, true_lines(gt, specs, fps)))
    if with_vtest and VTEST.is_file():
        refs = read_references(sorted(VTEST_REFERENCES.glob("*.json")))
        # vtest.avi is a busy walkway: the reference runs were made without the gate.
        found.append(Sequence("vtest", str(VTEST), [r.text for r in refs], refs, gate=False))
    return found


def _cache_path(cache: Path, model: str, backend: str, seq: Sequence) -> Path:
    key = hashlib.sha256(f"{model}|{backend}|{seq.source}|{CACHE_THRESHOLD}".encode())
    return cache / f"{model}-{backend}-{seq.name}-{key.hexdigest()[:10]}.npz"


def frames(source: str) -> Iterator[Any]:
    from edgetally.runtime.counting.sources import SourceOptions, open_source

    src = open_source(source, SourceOptions(start=START))
    try:
        yield from src
    finally:
        src.close()


def detect_all(model: str, backend: str, seq: Sequence, cache: Path) -> Cached:
    path = _cache_path(cache, model, backend, seq)
    if path.is_file():
        data = np.load(path)
        n = int(data["n"])
        return Cached([data[f"b{i}"] for i in range(n)], [data[f"s{i}"] for i in range(n)])
    from edgetally.runtime.counting.detectors import load_detector

    precise = None
    if backend == "openvino":  # f32 everywhere, as the demo: bf16 CPUs otherwise differ
        from edgetally.runtime.backends.openvino_backend import OpenVinoConfig

        precise = OpenVinoConfig(properties={"INFERENCE_PRECISION_HINT": "f32"})
    detector = load_detector(
        model, backend, score_threshold=CACHE_THRESHOLD, backend_config=precise
    )
    out = Cached()
    for frame in frames(seq.source):
        det = detector.detect(frame.image)
        out.boxes.append(det.xyxy.astype(np.float32))
        out.scores.append(det.score.astype(np.float32))
    cache.mkdir(parents=True, exist_ok=True)
    arrays = {f"b{i}": b for i, b in enumerate(out.boxes)}
    arrays.update({f"s{i}": s for i, s in enumerate(out.scores)})
    np.savez_compressed(path, n=np.array(len(out.boxes)), **arrays)  # type: ignore[arg-type]
    return out


class ReplayDetector:
    """Stands in for a detector: hands the pipeline the cached detections of the frame
    (those at or above ``score_threshold``, which the pipeline lowers to its tracker's
    ``low``); ``handed`` keeps what it handed last, for the peer trackers."""

    def __init__(self, cached: Cached, model: str, backend: str) -> None:
        from edgetally.runtime.counting.detectors import DetectorInfo

        self.cached = cached
        self.index = 0
        self.score_threshold = 0.25
        self.info = DetectorInfo(model, "", backend, "CPU", "")
        self.handed: Any = None

    def detect(self, image: Any) -> Any:
        from edgetally.runtime.types import Detections

        keep = self.cached.scores[self.index] >= self.score_threshold
        boxes = self.cached.boxes[self.index][keep]
        self.handed = Detections(
            boxes, self.cached.scores[self.index][keep], np.zeros(len(boxes), np.int32)
        )
        return self.handed


PipelineFactory = Callable[[Any, list[str], bool], Any]


def default_pipeline(detector: Any, lines: list[str], gate: bool) -> Any:
    from edgetally.runtime.counting.pipeline import build_pipeline

    return build_pipeline(detector, lines, gate=gate)


def replay(
    cached: Cached,
    seq: Sequence,
    model: str,
    backend: str,
    make: PipelineFactory = default_pipeline,
    peers: list[Any] | None = None,
    timing: dict[str, list[float]] | None = None,
) -> list[list[Any]]:
    """The crossings (as events) of each line of ``seq`` from the cached detections.

    Each of ``peers`` (benchmarks/peers.py's ``PeerCounter``, made for ``seq.lines``) is fed
    the detections our pipeline was handed on each frame it inferred, and collects its own
    events. ``timing`` gathers seconds and frames of tracking per tracker (ours: the
    pipeline's tracking, lines and zones; ``[seconds, frames]``)."""
    from edgetally.runtime.scoring.matching import Event

    detector = ReplayDetector(cached, model, backend)
    pipeline = make(detector, seq.lines, seq.gate)
    events: list[list[Any]] = [[] for _ in seq.lines]
    ids = [c.spec.line_id for c in pipeline.lines]
    for frame in frames(seq.source):
        detector.index = frame.index
        detector.handed = None
        result = pipeline.process(frame)
        for c in result.crossings:  # seconds from the first frame, as the truth's times
            t = (c.timestamp - START).total_seconds()
            events[ids.index(c.line_id)].append(Event(t, c.direction))
        if peers and detector.handed is not None:  # the gate let this frame through
            t = (frame.timestamp - START).total_seconds()
            handed = detector.handed
            for peer in peers:
                peer.update(frame.image, handed.xyxy, handed.score, t)
    if timing is not None:
        stats = getattr(pipeline, "stats", None)
        if stats is not None:
            _add_time(timing, "edgetally", stats.analytics_s, stats.inferred)
        for peer in peers or []:
            _add_time(timing, peer.name, peer.seconds, peer.frames)
    return events


def _add_time(timing: dict[str, list[float]], name: str, seconds: float, frames: int) -> None:
    total = timing.setdefault(name, [0.0, 0])
    total[0] += seconds
    total[1] += frames


def load_peers() -> ModuleType:
    """benchmarks/peers.py (it imports boxmot and supervision only when a peer is made)."""
    name = "edgetally_benchmark_peers"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, HERE / "peers.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def source_fps(source: str) -> float:
    from edgetally.runtime.counting.sources import SourceOptions, open_source

    src = open_source(source, SourceOptions(start=START))
    try:
        return float(src.fps)
    finally:
        src.close()


def score(seq: Sequence, events: list[list[Any]], tolerance_s: float) -> dict[str, Any]:
    from edgetally.runtime.scoring.run import score_run

    run = score_run(seq.truth, events, tolerance_s)
    per_line = [
        {"line": ref.text, "in": ls.counted_in, "out": ls.counted_out, **ls.as_dict()}
        for ref, ls in zip(seq.truth, run.lines, strict=True)
    ]
    return {"count_accuracy": run.count_accuracy, **run.events.as_dict(), "lines": per_line}


def evaluate(
    configs: list[tuple[str, str]],
    seqs: list[Sequence],
    cache: Path,
    tolerance_s: float,
    make: PipelineFactory = default_pipeline,
    log: Callable[[str], None] | None = None,
    peers: bool = False,
) -> list[dict[str, Any]]:
    """One row per model x backend x tracker: ours (``tracker`` "edgetally", ``threshold``
    None), then with ``peers`` each peer tracker at each LineZone threshold."""
    module = load_peers() if peers else None
    rows = []
    for model, backend in configs:
        ours: dict[str, Any] = {
            "model": model,
            "backend": backend,
            "tracker": "edgetally",
            "threshold": None,
            "sequences": {},
        }
        theirs: dict[tuple[str, int], dict[str, Any]] = {}
        if module is not None:
            for name in module.TRACKERS:
                for th in module.THRESHOLDS:
                    theirs[(name, th)] = {
                        "model": model,
                        "backend": backend,
                        "tracker": name,
                        "threshold": th,
                        "sequences": {},
                    }
        timing: dict[str, list[float]] = {}
        for seq in seqs:
            if log:
                log(f"{model} on {backend}: {seq.name}")
            cached = detect_all(model, backend, seq, cache)
            counters = []
            if module is not None:
                fps = source_fps(seq.source)
                lines = [tuple(ref.line) for ref in seq.truth]
                counters = [module.PeerCounter(name, lines, fps) for name in module.TRACKERS]
            ours["sequences"][seq.name] = score(
                seq, replay(cached, seq, model, backend, make, counters, timing), tolerance_s
            )
            for counter in counters:
                for th, events in counter.events.items():
                    theirs[(counter.name, th)]["sequences"][seq.name] = score(
                        seq, events, tolerance_s
                    )
        if log and timing:
            log(
                f"{model} on {backend}: tracking + line checks, ms per inferred frame: "
                + ", ".join(f"{name} {1000 * s / max(n, 1):.2f}" for name, (s, n) in timing.items())
            )
        rows.append(ours)
        rows.extend(theirs.values())
    return rows


def _available(model: str, backend: str) -> str | None:
    from edgetally.models.zoo import resolve_model
    from edgetally.runtime.backends.registry import available_backends

    try:
        resolve_model(model)
    except Exception as exc:  # any reason to skip is printed
        return str(exc)
    if not available_backends().get(backend):
        return f"backend {backend} is not installed"
    return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="*", help="model or model:backend (default: all)")
    parser.add_argument(
        "--cache", type=Path, default=Path.home() / ".cache" / "edgetally" / "accuracy"
    )
    parser.add_argument("--tolerance-s", type=float, default=1.0)
    parser.add_argument("--json", action="store_true")
    parser.add_argument(
        "--peers",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="peer trackers beside ours (default: when boxmot and supervision import)",
    )
    args = parser.parse_args()
    # Models not shipped in the package come from ../shared/models when it is there.
    if "EDGETALLY_MODEL_DIRS" not in os.environ and (SHARED / "models").is_dir():
        os.environ["EDGETALLY_MODEL_DIRS"] = str(SHARED / "models")

    configs = CONFIGS
    if args.models:
        configs = [
            (m.split(":")[0], m.split(":")[1]) if ":" in m else (m, b)
            for m in args.models
            for mm, b in CONFIGS
            if mm == m.split(":")[0] and (":" not in m or m.split(":")[1] == b)
        ]
    runnable = []
    for model, backend in configs:
        why = _available(model, backend)
        if why:
            print(f"skipped {model} on {backend}: {why}", file=sys.stderr)
        else:
            runnable.append((model, backend))
    seqs = sequences()
    if not seqs:
        sys.exit("no sequence found (../shared/data/footfall, vtest.avi from opencv-doc)")
    peers = args.peers
    if peers is not False:
        why = load_peers().missing()
        if why and peers:
            sys.exit(f"--peers: {why}")
        if why:
            print(f"peer trackers skipped: {why}", file=sys.stderr)
        peers = why is None
    rows = evaluate(
        runnable,
        seqs,
        args.cache,
        args.tolerance_s,
        log=lambda m: print(m, file=sys.stderr),
        peers=peers,
    )
    if args.json:
        print(json.dumps({"tolerance_s": args.tolerance_s, "rows": rows}))
        return
    print(table(rows, [s.name for s in seqs]))


def table(rows: list[dict[str, Any]], names: list[str]) -> str:
    head = "| model | backend | tracker | " + " | ".join(f"{n} acc / F1" for n in names) + " |"
    out = [head, "|" + "---|" * (len(names) + 3)]
    for row in rows:
        cells = [
            f"{row['sequences'][n]['count_accuracy']:.2f} / {row['sequences'][n]['f1']:.2f}"
            for n in names
        ]
        tracker = row.get("tracker", "edgetally")
        if row.get("threshold") is not None:
            tracker = f"{tracker} t={row['threshold']}"
        out.append(f"| {row['model']} | {row['backend']} | {tracker} | " + " | ".join(cells) + " |")
    return "\n".join(out)


if __name__ == "__main__":
    main()
