"""The ByteTrack-style tracker keeps ids through occlusions, weak detections and gaps."""

from __future__ import annotations

import numpy as np
from edgetally.runtime.counting.tracker import ByteTracker, TrackerConfig
from edgetally.runtime.types import Detections


def dets(*boxes: tuple[float, float, float, float, float]) -> Detections:
    if not boxes:
        return Detections.empty()
    arr = np.asarray(boxes, dtype=np.float32)
    return Detections(arr[:, :4], arr[:, 4], np.zeros(len(arr), np.int32))


def box(x: float, score: float = 0.9, y: float = 100) -> tuple[float, float, float, float, float]:
    return (x, y, x + 40, y + 120, score)


def test_ids_survive_an_occlusion_and_weak_detections() -> None:
    tracker = ByteTracker()
    ids = []
    for i in range(40):
        x = 10 + 6 * i
        if 15 <= i < 22:
            d = dets()  # fully occluded for 7 frames
        elif 25 <= i < 30:
            d = dets(box(x, score=0.3))  # partly occluded: only a weak detection
        else:
            d = dets(box(x))
        tracks = tracker.update(d, i / 25)
        ids += [t.track_id for t in tracks]
    assert set(ids) == {1}
    assert len(ids) == 40 - 7


def test_two_people_crossing_paths_keep_their_ids() -> None:
    tracker = ByteTracker()
    seen: dict[int, list[float]] = {}
    for i in range(30):
        a, b = 20 + 8 * i, 260 - 8 * i
        tracks = tracker.update(dets(box(a, y=100), box(b, y=140)), i / 25)
        for t in tracks:
            seen.setdefault(int(t.track_id), []).append(t.xyxy[0])
    assert len(seen) == 2
    moving = sorted(seen.values(), key=lambda xs: xs[0])
    assert moving[0][-1] > moving[0][0]  # the one that started left ended right
    assert moving[1][-1] < moving[1][0]


def test_skipped_frames_keep_ids_and_lost_tracks_expire() -> None:
    tracker = ByteTracker(TrackerConfig(max_lost_s=1.0))
    for i in range(6):  # walking right at 6 px per frame
        assert [t.track_id for t in tracker.update(dets(box(10 + 6 * i)), i / 25)] == [1]
    # The motion gate skipped 10 frames: the person moved 60 px meanwhile.
    assert [t.track_id for t in tracker.update(dets(box(10 + 6 * 15)), 15 / 25)] == [1]
    # Gone for longer than max_lost_s: a new person gets a new id.
    assert [t.track_id for t in tracker.update(dets(box(76)), 2.0)] == []
    assert [t.track_id for t in tracker.update(dets(box(78)), 2.04)] == [2]


def test_weak_detections_alone_never_start_a_track() -> None:
    tracker = ByteTracker()
    for i in range(10):
        assert tracker.update(dets(box(10 + i, score=0.3)), i / 25) == ()


def test_kalman_blockwise_steps_equal_the_matrix_form() -> None:
    """The filter's blockwise algebra is the textbook F P F^T + Q and (I - K H) P."""
    from edgetally.runtime.counting.tracker import _Kalman, _to_cxcywh

    rng = np.random.default_rng(7)
    kf = _Kalman(np.array([10.0, 20.0, 50.0, 120.0]))
    for i in range(40):
        steps = float(rng.integers(1, 4))
        f = np.eye(8)
        f[:4, 4:] = np.eye(4) * steps
        h = max(kf.x[3], 1.0)
        q = np.square([kf._std_pos * h] * 4 + [kf._std_vel * h] * 4) * steps
        x_ref = f @ kf.x
        x_ref[2:4] = np.maximum(x_ref[2:4], 1.0)
        p_ref = f @ kf.p @ f.T + np.diag(q)
        kf.predict(steps)
        assert np.allclose(kf.x, x_ref) and np.allclose(kf.p, p_ref)

        box = np.array([10 + 3 * i, 20 + i, 50 + 3 * i, 120 - i], float) + rng.normal(0, 2, 4)
        hm = np.eye(4, 8)
        h = max(kf.x[3], 1.0)
        s = hm @ kf.p @ hm.T + np.eye(4) * (kf._std_pos * h) ** 2
        gain = kf.p @ hm.T @ np.linalg.inv(s)
        x_ref = kf.x + gain @ (np.array(_to_cxcywh(box)) - hm @ kf.x)
        p_ref = (np.eye(8) - gain @ hm) @ kf.p
        kf.update(box)
        assert np.allclose(kf.x, x_ref) and np.allclose(kf.p, p_ref, atol=1e-8)
