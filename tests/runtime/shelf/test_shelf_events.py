"""Shelf events end to end on a rendered scene whose truth is its script."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
from edgetally.runtime.shelf.buckets import ShelfAggregator
from edgetally.runtime.shelf.errors import ShelfError
from edgetally.runtime.shelf.monitor import ShelfMonitor
from edgetally.runtime.shelf.scorers import ClassicalScorer, DetectorScorer
from edgetally.runtime.shelf.synthetic import (
    PRODUCTS,
    Person,
    ScriptFrame,
    ShelfScene,
    default_script,
    facing_box,
    scene_config,
)
from edgetally.runtime.types import Detections

T0 = datetime(2025, 3, 1, 9, 0, tzinfo=UTC)
FPS = 5

# (frame, kind, facing): a state counts after 3 unoccluded frames (confirm_frames=3), so an
# event lands 2 frames after the first frame that shows the change with nobody in front.
TRUTH = [
    (87, "product_taken", "f1"),  # figure at f1 on 70..84 took all three; seen from 85
    (87, "facing_empty", "f1"),
    (107, "product_taken", "f2"),  # one of three taken on 95..104: not empty
    (117, "facing_empty", "f7"),  # emptied on 115 with no person box
    (137, "restocked", "f1"),  # refilled behind the figure on 125..134
    (192, "restocked", "f7"),
]


def _run(
    script: list[ScriptFrame], scene: ShelfScene, monitor: ShelfMonitor, lighting: float = 1.0
) -> list[tuple[int, str, str]]:
    events: list[tuple[int, str, str]] = []
    for i, step in enumerate(script):
        img = scene.render(np.array(step.stock), step.people)
        if lighting != 1.0:
            img = np.clip(img.astype(np.float32) * lighting, 0, 255).astype(np.uint8)
        boxes = np.array([p.box for p in step.people], np.float32).reshape(-1, 4)
        out = monitor.update(img, boxes, i, T0 + timedelta(seconds=i / FPS))
        events += [(e.frame_index, e.kind, e.facing_id) for e in out.events]
    return events


def _classical_monitor(scene: ShelfScene) -> ShelfMonitor:
    cfg = scene_config(confirm_frames=3)
    ref = scene.render(np.full(8, PRODUCTS))
    return ShelfMonitor(cfg, ClassicalScorer(ref, cfg.facings))


def test_scripted_scene_gives_exactly_the_true_events() -> None:
    scene = ShelfScene(seed=3)
    assert _run(default_script(), scene, _classical_monitor(scene)) == TRUTH


def test_people_in_front_are_not_empty_facings() -> None:
    """A body in front of a full facing reads as empty to the scorer: the gate stops it."""
    scene = ShelfScene(seed=4)
    x1, _, x2, _ = facing_box(5)
    body = Person(x1 - 10, 100, x2 + 10, 260)
    script = [ScriptFrame((PRODUCTS,) * 8, (body,) if 5 <= i <= 25 else ()) for i in range(35)]
    script[:0] = default_script()[:70]  # and the walker before it
    assert _run(script, scene, _classical_monitor(scene)) == []
    ungated = _classical_monitor(scene)
    ungated.occlusion_min = 2.0  # no box can cover more than the whole facing
    assert _run(script, scene, ungated) == [
        (70 + 7, "facing_empty", "f5"),
        (70 + 28, "restocked", "f5"),
    ]


def test_dimmer_light_changes_nothing() -> None:
    scene = ShelfScene(seed=5)
    monitor = _classical_monitor(scene)
    script = [ScriptFrame((PRODUCTS,) * 8, ())] * 10
    assert _run(script, scene, monitor, lighting=0.8) == []


def test_a_flicker_shorter_than_confirm_frames_is_ignored() -> None:
    scene = ShelfScene(seed=6)
    monitor = _classical_monitor(scene)
    full, gap = (PRODUCTS,) * 8, (PRODUCTS,) * 7 + (0,)
    script = [ScriptFrame(full, ())] * 3 + [ScriptFrame(gap, ())] * 2 + [ScriptFrame(full, ())] * 5
    assert _run(script, scene, monitor) == []
    script = [ScriptFrame(gap, ())] * 3
    assert _run(script, scene, monitor) == [(2, "facing_empty", "f7")]


def test_detector_scorer_plugs_into_the_same_monitor() -> None:
    """A gap detector is anything returning Detections: here, one that reads the script."""
    scene = ShelfScene(seed=7)
    script = default_script()
    cfg = scene_config(confirm_frames=3)
    current: list[ScriptFrame] = []

    def detect_gaps(image: np.ndarray) -> Detections:
        boxes = []
        for i, n in enumerate(current[0].stock):
            x1, y1, x2, y2 = facing_box(i)
            if n < PRODUCTS:
                boxes.append((x1 + 4 + n * 29, y1, x2, y2))
        xyxy = np.array(boxes, np.float32).reshape(-1, 4)
        return Detections(xyxy, np.ones(len(boxes), np.float32), np.zeros(len(boxes), np.int32))

    monitor = ShelfMonitor(cfg, DetectorScorer(detect_gaps))
    events = []
    for i, step in enumerate(script):
        current[:] = [step]
        boxes = np.array([p.box for p in step.people], np.float32).reshape(-1, 4)
        out = monitor.update(scene.render(np.array(step.stock)), boxes, i, T0)
        events += [(e.frame_index, e.kind, e.facing_id) for e in out.events]
    assert events == TRUTH


def test_buckets_count_events_per_facing() -> None:
    scene = ShelfScene(seed=3)
    monitor = _classical_monitor(scene)
    agg = ShelfAggregator([(f.region_id, f.facing_id) for f in monitor.facings], 20.0)
    buckets = []
    for i, step in enumerate(default_script()):
        img = scene.render(np.array(step.stock), step.people)
        boxes = np.array([p.box for p in step.people], np.float32).reshape(-1, 4)
        buckets += agg.add(monitor.update(img, boxes, i, T0 + timedelta(seconds=i / FPS)))
    last = agg.flush()
    assert last is not None
    buckets.append(last)
    # 200 frames at 5 fps = 40 s: two 20 s buckets, frames 0..99 and 100..199
    assert [b.start for b in buckets] == [T0, T0 + timedelta(seconds=20)]
    assert buckets[0].totals == {"facing_empty": 1, "restocked": 0, "product_taken": 1}
    assert buckets[1].totals == {"facing_empty": 1, "restocked": 2, "product_taken": 1}
    f1 = next(f for f in buckets[0].facings if f.facing_id == "f1")
    assert (f1.facing_empty, f1.product_taken, f1.empty_at_end) == (1, 1, True)
    assert len(buckets[1].facings) == 8
    assert not any(f.empty_at_end for f in buckets[1].facings)


def test_naive_timestamps_are_refused() -> None:
    scene = ShelfScene()
    monitor = _classical_monitor(scene)
    with pytest.raises(ShelfError, match="timezone"):
        naive = datetime(2025, 1, 1)
        monitor.update(scene.render(np.full(8, PRODUCTS)), np.zeros((0, 4), np.float32), 0, naive)
