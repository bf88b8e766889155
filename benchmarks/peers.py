"""Peer trackers beside edgetally's own in ``benchmarks/accuracy.py``: other projects'
multi-object trackers, fed what our pipeline is fed and counted with supervision's
``LineZone``, so their counts are scored by the same ``score()`` as ours.

The trackers (``TRACKERS``), each with its project's default settings:

- boxmot 25.0.0, motion only: OC-SORT, ByteTrack, SFSORT and BoT-SORT with re-ID off
  (``use_embeddings=False``: no appearance model; its camera-motion compensation, sparse
  optical flow on the frame, stays on as it is by default); built by boxmot's own
  ``create_tracker`` from its ``configs/trackers/*.yaml`` defaults, with the sequence's frame
  rate for the two that take one (ByteTrack, BoT-SORT: it scales their lost-track buffer);
- supervision 0.30.9's ByteTrack (the last release that has it), its defaults and the
  sequence's frame rate.

What each receives, frame by frame: exactly the detections our ``ReplayDetector`` handed our
pipeline on that frame, boxes (pixel x1, y1, x2, y2) and scores, class 0 for all. That is
every cached detection scoring at or above our tracker's ``low`` threshold (0.1: the pipeline
lowers the detector's threshold to it so its second round gets the weak boxes); each peer
splits high from low scores itself, with its own thresholds (boxmot's four: high from 0.6
(BoT-SORT 0.63), new tracks from 0.6 (SFSORT 0.7), weak down to 0.1; supervision's: high from
0.25, new tracks from 0.35, weak above 0.1; ours: high from 0.5, weak down to 0.1).
boxmot also gets the frame as decoded (BGR, HxWx3): SFSORT reads its size, BoT-SORT its
pixels. A frame on which our motion gate skipped the detector is skipped for the peers too:
no detections, no tracker update, no line check, as for ours.

Counting: one ``sv.LineZone`` per line and per ``minimum_crossing_threshold`` (``THRESHOLDS``:
1 and 2 frames on the new side), anchored at the box's bottom centre (our foot point), fed the
tracker's boxes and ids. Its ``in`` is ours (tests/test_accuracy_peers.py checks it): for a
line P1->P2 given as ``start=P1, end=P2``, a crossing toward the side the vector
(y2-y1, x1-x2) points to, y pointing down. A crossing is an ``Event`` at the time of the frame
on which ``LineZone`` reports it (with threshold 2, one frame after the foot point was first
seen past the line).

Installed by the ``peers`` extra (``pip install -e '.[peers]'``) plus ``pip install --no-deps
boxmot==25.0.0`` (``./run install`` does both); pyproject.toml says why boxmot goes in
without its declared dependencies. Nothing outside benchmarks/ imports this.
"""

from __future__ import annotations

import importlib
import logging
import time
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np

BOXMOT = {  # our name -> boxmot's tracker name and options besides its defaults
    "boxmot-ocsort": ("ocsort", {}),
    "boxmot-bytetrack": ("bytetrack", {}),
    "boxmot-sfsort": ("sfsort", {}),
    "boxmot-botsort": ("botsort", {"use_embeddings": False}),
}
FRAME_RATE = {"bytetrack", "botsort"}  # boxmot trackers whose buffer is given in frames at 30 fps
TRACKERS = (*BOXMOT, "sv-bytetrack")
THRESHOLDS = (1, 2)
INSTALL = "pip install -e '.[peers]' && pip install --no-deps boxmot==25.0.0"

# LineZone's in/out against ours (start=P1, end=P2): the same, as checked by the tests.
LINEZONE_DIRECTION = {"in": "in", "out": "out"}


def missing() -> str | None:
    """Why the peer trackers cannot run here; None when they can."""
    # boxmot's package imports lazily: the trackers' own modules pull in what they need
    # (PyTorch, lapx, OpenCV).
    trackers = [f"boxmot.trackers.box.{name}.tracker" for name, _ in BOXMOT.values()]
    for module in (*trackers, "supervision"):
        try:
            importlib.import_module(module)
        except Exception as exc:  # not installed, or broken: either way, say which
            return f"{module.split('.')[0]} does not import ({exc}): {INSTALL}"
    import supervision as sv

    if not hasattr(sv, "ByteTrack"):
        return (
            f"supervision {sv.__version__} has no ByteTrack (removed in 0.31): "
            "pip install supervision==0.30.9"
        )
    return None


def label(tracker: str, threshold: int) -> str:
    """A peer's name in the table: ``boxmot-ocsort t=2``."""
    return f"{tracker} t={threshold}"


class BoxmotTracker:
    """A boxmot tracker behind one call: boxes, scores and the frame in, boxes and ids out."""

    def __init__(self, name: str, fps: float) -> None:
        from boxmot.trackers.factory import create_tracker
        from boxmot.trackers.specs import TrackerSpec

        logging.getLogger("boxmot").setLevel(logging.WARNING)  # its settings, logged per tracker
        boxmot_name, options = BOXMOT[name]
        opts: dict[str, Any] = dict(options)
        if boxmot_name in FRAME_RATE:
            opts["frame_rate"] = float(fps)
        self.tracker = create_tracker(TrackerSpec(boxmot_name, options=tuple(sorted(opts.items()))))

    def update(
        self, boxes: np.ndarray, scores: np.ndarray, image: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        dets = np.zeros((len(boxes), 6), np.float32)  # x1, y1, x2, y2, score, class
        dets[:, :4] = boxes
        dets[:, 4] = scores
        out = np.asarray(self.tracker.update(dets, image))  # x1, y1, x2, y2, id, score, class, i
        if out.size == 0:
            return np.zeros((0, 4), np.float32), np.zeros(0, np.int64)
        return out[:, :4].astype(np.float32), out[:, 4].astype(np.int64)


class SupervisionByteTrack:
    """supervision's ByteTrack behind the same call (it needs no frame)."""

    def __init__(self, fps: float) -> None:
        import supervision as sv

        with warnings.catch_warnings():  # deprecated since 0.28 in favour of `trackers`
            warnings.simplefilter("ignore")
            self.tracker = sv.ByteTrack(frame_rate=fps)

    def update(
        self, boxes: np.ndarray, scores: np.ndarray, image: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        import supervision as sv

        det = sv.Detections(
            xyxy=np.asarray(boxes, np.float32).reshape(-1, 4),
            confidence=np.asarray(scores, np.float32),
            class_id=np.zeros(len(boxes), int),
        )
        out = self.tracker.update_with_detections(det)
        ids = out.tracker_id if out.tracker_id is not None else np.zeros(0, np.int64)
        return out.xyxy.astype(np.float32), ids.astype(np.int64)


def make_tracker(name: str, fps: float) -> BoxmotTracker | SupervisionByteTrack:
    if name in BOXMOT:
        return BoxmotTracker(name, fps)
    if name == "sv-bytetrack":
        return SupervisionByteTrack(fps)
    raise ValueError(f"unknown peer tracker {name!r}: one of {', '.join(TRACKERS)}")


class PeerCounter:
    """One peer tracker and a ``LineZone`` per line and threshold; its crossings as
    ``Event``s, ``events[threshold][line]``, in the order of ``lines``."""

    def __init__(
        self,
        tracker: str,
        lines: Sequence[tuple[float, float, float, float]],
        fps: float,
        thresholds: Sequence[int] = THRESHOLDS,
    ) -> None:
        import supervision as sv

        self.name = tracker
        self.tracker = make_tracker(tracker, fps)
        self.zones = {
            th: [
                sv.LineZone(
                    start=sv.Point(x1, y1),
                    end=sv.Point(x2, y2),
                    triggering_anchors=(sv.Position.BOTTOM_CENTER,),
                    minimum_crossing_threshold=th,
                )
                for x1, y1, x2, y2 in lines
            ]
            for th in thresholds
        }
        self.events: dict[int, list[list[Any]]] = {th: [[] for _ in lines] for th in thresholds}
        self.frames = 0
        self.seconds = 0.0  # tracker and line checks, all frames

    def update(self, image: np.ndarray, boxes: np.ndarray, scores: np.ndarray, t: float) -> None:
        """Feed one frame's detections; ``t`` is its time, seconds from the first frame."""
        import supervision as sv
        from edgetally.runtime.scoring.matching import Event

        start = time.perf_counter()
        xyxy, ids = self.tracker.update(boxes, scores, image)
        tracked = sv.Detections(xyxy=xyxy.reshape(-1, 4), tracker_id=ids)
        for th, zones in self.zones.items():
            for i, zone in enumerate(zones):
                crossed_in, crossed_out = zone.trigger(tracked)
                for crossed, theirs in ((crossed_in, "in"), (crossed_out, "out")):
                    self.events[th][i].extend(
                        Event(t, LINEZONE_DIRECTION[theirs]) for _ in range(int(crossed.sum()))
                    )
        self.seconds += time.perf_counter() - start
        self.frames += 1

    @property
    def ms_per_frame(self) -> float:
        return 1000 * self.seconds / self.frames if self.frames else 0.0
