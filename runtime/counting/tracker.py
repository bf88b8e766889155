"""A ByteTrack-style multi-object tracker.

Detections are associated in two rounds: first the confident ones (score >= ``high``) with
every live track by IoU against the Kalman-predicted box, then the weak ones (``low`` <=
score < ``high``) with the tracks still unmatched, which keeps ids through partial
occlusions where the detector's score drops. Unmatched tracks are kept, coasting on their
motion model, for ``max_lost_s`` seconds, so short occlusions and skipped frames (motion
gate, stride) do not change ids. New tracks start from confident detections and are
confirmed on their second match (immediately on the first frame of a stream).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt
from edgetally.runtime.types import Detections, Track, TrackId, iou_matrix
from scipy.optimize import linear_sum_assignment

F32 = npt.NDArray[np.float32]
F64 = npt.NDArray[np.float64]


@dataclass(frozen=True, slots=True)
class TrackerConfig:
    high: float = 0.5  # first-round detections
    low: float = 0.1  # second-round detections (below: ignored)
    new_track: float = 0.6  # a detection must be this confident to start a track
    match_iou: float = 0.2  # first round: minimum IoU to associate
    low_match_iou: float = 0.5  # second round
    unconfirmed_iou: float = 0.3
    max_lost_s: float = 1.5  # how long an unmatched track survives


class _Kalman:
    """Constant-velocity Kalman filter on (cx, cy, w, h); noise scales with box height.

    The covariance starts diagonal and the motion, noise and measurement models never
    couple two coordinates, so the 8x8 filter is four independent (position, velocity)
    filters: each coordinate keeps three covariance terms (pos-pos, pos-vel, vel-vel). Plain
    floats: a few dozen multiplications per track instead of 8x8 matrix products.
    """

    __slots__ = ("pos", "pp", "pv", "vel", "vv")
    _std_pos = 1.0 / 20
    _std_vel = 1.0 / 160

    def __init__(self, box: F64) -> None:
        cx, cy, w, h = _to_cxcywh(box)
        self.pos = [cx, cy, w, h]
        self.vel = [0.0, 0.0, 0.0, 0.0]
        self.pp = [(2 * self._std_pos * h) ** 2] * 4
        self.pv = [0.0] * 4
        self.vv = [(10 * self._std_vel * h) ** 2] * 4

    def predict(self, steps: float) -> None:
        h = max(self.pos[3], 1.0)
        scale = max(steps, 1.0)
        q_pos, q_vel = (self._std_pos * h) ** 2 * scale, (self._std_vel * h) ** 2 * scale
        pos, vel, pp, pv, vv = self.pos, self.vel, self.pp, self.pv, self.vv
        for i in range(4):
            pos[i] += steps * vel[i]
            pp[i] += 2 * steps * pv[i] + steps * steps * vv[i] + q_pos
            pv[i] += steps * vv[i]
            vv[i] += q_vel
        pos[2], pos[3] = max(pos[2], 1.0), max(pos[3], 1.0)

    def update(self, box: F64) -> None:
        z = _to_cxcywh(box)
        r = (self._std_pos * max(self.pos[3], 1.0)) ** 2
        pos, vel, pp, pv, vv = self.pos, self.vel, self.pp, self.pv, self.vv
        for i in range(4):
            k_pos, k_vel = pp[i] / (pp[i] + r), pv[i] / (pp[i] + r)
            innovation = z[i] - pos[i]
            pos[i] += k_pos * innovation
            vel[i] += k_vel * innovation
            vv[i] -= k_vel * pv[i]
            pp[i] *= 1 - k_pos
            pv[i] *= 1 - k_pos

    @property
    def x(self) -> F64:
        """The state (cx, cy, w, h, and their velocities)."""
        return np.array(self.pos + self.vel)

    @property
    def p(self) -> F64:
        """The full 8x8 covariance."""
        p = np.zeros((8, 8))
        for i in range(4):
            p[i, i], p[i, i + 4], p[i + 4, i], p[i + 4, i + 4] = (
                self.pp[i],
                self.pv[i],
                self.pv[i],
                self.vv[i],
            )
        return p

    @property
    def box(self) -> F64:
        cx, cy, w, h = self.pos
        return np.array([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2])


def _to_cxcywh(box: F64) -> tuple[float, float, float, float]:
    x1, y1, x2, y2 = (float(v) for v in box)
    return (x1 + x2) / 2, (y1 + y2) / 2, max(x2 - x1, 1.0), max(y2 - y1, 1.0)


@dataclass(slots=True)
class _Track:
    track_id: int
    kf: _Kalman
    score: float
    last_seen: float  # seconds
    confirmed: bool = False
    hits: int = 1
    box: F64 = field(default_factory=lambda: np.zeros(4))
    full: tuple[float, float] | None = None  # width, height of the whole person, last seen


class ByteTracker:
    """Assigns stable ids to detections frame after frame."""

    def __init__(self, config: TrackerConfig | None = None) -> None:
        self.config = config or TrackerConfig()
        self._tracks: list[_Track] = []
        self._next_id = 1
        self._last_t: float | None = None
        self._frame_dt: float | None = None  # seconds between consecutive updates, smallest seen

    def update(
        self,
        detections: Detections,
        t: float,
        bounds: tuple[float, float, float, float] | None = None,
    ) -> tuple[Track, ...]:
        """Feed the detections of the frame at time ``t`` (seconds); the confirmed tracks
        that were matched on this frame come back. With ``bounds`` (x1, y1, x2, y2: the
        picture, or the region the detector saw), a box cut by them is given back whole
        (see :func:`_whole_box`)."""
        cfg = self.config
        first_frame = self._last_t is None
        gap = 0.0 if self._last_t is None else max(t - self._last_t, 0.0)
        if gap > 0:
            self._frame_dt = gap if self._frame_dt is None else min(self._frame_dt, gap)
        steps = gap / self._frame_dt if self._frame_dt else 1.0
        self._last_t = t

        for tr in self._tracks:
            tr.kf.predict(steps)

        boxes = detections.xyxy.astype(np.float64)
        scores = detections.score.astype(np.float64)
        high = scores >= cfg.high
        low = (scores >= cfg.low) & ~high

        confirmed = [tr for tr in self._tracks if tr.confirmed]
        tentative = [tr for tr in self._tracks if not tr.confirmed]
        matched: list[_Track] = []

        # Round 1: confident detections against confirmed tracks.
        high_idx = np.flatnonzero(high)
        pairs, rest_tracks, rest_high = _associate(confirmed, boxes[high_idx], cfg.match_iou)
        for ti, di in pairs:
            self._hit(confirmed[ti], boxes[high_idx[di]], scores[high_idx[di]], t)
            matched.append(confirmed[ti])
        # Round 2: weak detections against what is left.
        low_idx = np.flatnonzero(low)
        left = [confirmed[i] for i in rest_tracks]
        pairs2, _, _ = _associate(left, boxes[low_idx], cfg.low_match_iou)
        for ti, di in pairs2:
            self._hit(left[ti], boxes[low_idx[di]], scores[low_idx[di]], t)
            matched.append(left[ti])
        # Tentative tracks get the remaining confident detections.
        remaining = high_idx[rest_high]
        pairs3, _, rest_new = _associate(tentative, boxes[remaining], cfg.unconfirmed_iou)
        dead: set[int] = set()
        hit_tentative = set()
        for ti, di in pairs3:
            tr = tentative[ti]
            self._hit(tr, boxes[remaining[di]], scores[remaining[di]], t)
            tr.confirmed = True
            matched.append(tr)
            hit_tentative.add(id(tr))
        for tr in tentative:
            if id(tr) not in hit_tentative:
                dead.add(id(tr))  # a tentative track gets one chance
        # New tracks.
        for di in remaining[rest_new]:
            if scores[di] < cfg.new_track:
                continue
            tr = _Track(
                self._next_id, _Kalman(boxes[di]), float(scores[di]), t, confirmed=first_frame
            )
            tr.box = boxes[di]
            self._next_id += 1
            self._tracks.append(tr)
            if first_frame:
                matched.append(tr)
        self._tracks = [
            tr for tr in self._tracks if id(tr) not in dead and t - tr.last_seen <= cfg.max_lost_s
        ]
        out = []
        for tr in matched:
            if not tr.confirmed:
                continue
            box = tr.box if bounds is None else _whole_box(tr, bounds)
            out.append(Track(TrackId(tr.track_id), tuple(float(v) for v in box), tr.score))  # type: ignore[arg-type]  # a box: four numbers
        return tuple(out)

    @staticmethod
    def _hit(tr: _Track, box: F64, score: float, t: float) -> None:
        tr.kf.update(box)
        tr.box = box
        tr.score = float(score)
        tr.last_seen = t
        tr.hits += 1

    @property
    def live_ids(self) -> set[TrackId]:
        return {TrackId(tr.track_id) for tr in self._tracks if tr.confirmed}


_BORDER_PX = 2.0


def _whole_box(tr: _Track, bounds: tuple[float, float, float, float]) -> F64:
    """The track's box, grown back to the person's whole size where the picture's border
    cuts it: a person half out of the picture has a box whose bottom centre is not their
    feet. The size is the one last seen uncut (none yet: the box as it is)."""
    left_edge, top_edge, right_edge, bottom_edge = bounds
    x1, y1, x2, y2 = (float(v) for v in tr.box)
    cut = (
        x1 <= left_edge + _BORDER_PX,
        y1 <= top_edge + _BORDER_PX,
        x2 >= right_edge - _BORDER_PX,
        y2 >= bottom_edge - _BORDER_PX,
    )
    if not any(cut):
        tr.full = (x2 - x1, y2 - y1)
        return tr.box
    if tr.full is None:
        return tr.box
    w, h = tr.full
    left, top, right, bottom = cut
    if left and not right:
        x1 = min(x1, x2 - w)
    if right and not left:
        x2 = max(x2, x1 + w)
    if bottom and not top:
        y2 = max(y2, y1 + h)
    if top and not bottom:
        y1 = min(y1, y2 - h)
    return np.array([x1, y1, x2, y2])


def _associate(
    tracks: list[_Track], boxes: F64, min_iou: float
) -> tuple[list[tuple[int, int]], list[int], npt.NDArray[np.intp]]:
    """Hungarian assignment on IoU; (pairs, unmatched track indices, unmatched box indices)."""
    if not tracks or len(boxes) == 0:
        return [], list(range(len(tracks))), np.arange(len(boxes))
    predicted = np.stack([tr.kf.box for tr in tracks])
    iou = iou_matrix(predicted, boxes)
    rows, cols = linear_sum_assignment(-iou)
    pairs = [(int(r), int(c)) for r, c in zip(rows, cols, strict=True) if iou[r, c] >= min_iou]
    used_t = {r for r, _ in pairs}
    used_d = {c for _, c in pairs}
    return (
        pairs,
        [i for i in range(len(tracks)) if i not in used_t],
        np.array([j for j in range(len(boxes)) if j not in used_d], dtype=np.intp),
    )
