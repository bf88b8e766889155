"""The accuracy benchmark's peer trackers (benchmarks/peers.py): each finds the one crossing
of a box walking across a line, in our direction convention, and ``accuracy.py`` scores
them beside ours on the same detections. Skipped where boxmot or supervision is not
installed (the ``peers`` extra); needs no data but what it draws."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import cv2
import numpy as np
import pytest
from edgetally.runtime.counting.analytics import LineSpec

from tests.conftest import REPO

pytest.importorskip(
    "boxmot.trackers.box.ocsort.tracker",
    reason="boxmot or what its trackers import is missing (the peers extra)",
)
sv = pytest.importorskip("supervision", reason="supervision not installed (the peers extra)")

FPS = 25.0
SIZE = (320, 240)  # width, height
LINE = (160.0, 40.0, 160.0, 230.0)  # drawn top to bottom: ``in`` is moving right
ASIDE = (40.0, 40.0, 40.0, 120.0)  # a line the walker never reaches


def load(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        f"benchmark_{name}", REPO / "benchmarks" / f"{name}.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while being made
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def peers() -> ModuleType:
    module = load("peers")
    why = module.missing()
    if why:
        pytest.skip(why)
    return module


def background() -> np.ndarray:
    """A still, textured scene (BoT-SORT's camera-motion compensation needs corners)."""
    rng = np.random.default_rng(7)
    small = rng.integers(0, 255, (SIZE[1] // 8, SIZE[0] // 8, 3), dtype=np.uint8)
    return cv2.resize(small, SIZE, interpolation=cv2.INTER_NEAREST)


def walk(rightward: bool, n: int = 50) -> list[tuple[np.ndarray, np.ndarray]]:
    """Each frame's detections: one person box (and a weak stray box far from it) walking
    4 px a frame across ``LINE``, from x 60 to 260 (or back); its feet are on the line at
    frame 25."""
    frames = []
    for k in range(n):
        cx = 60.0 + 4 * k if rightward else 260.0 - 4 * k
        person = [cx - 15, 90.0, cx + 15, 190.0]
        stray = [270.0, 10.0, 290.0, 40.0]
        frames.append((np.array([person, stray], np.float32), np.array([0.9, 0.15], np.float32)))
    return frames


def ours(line: tuple[float, float, float, float], end: tuple[float, float]) -> str:
    """Our direction for a walk ending at ``end`` (the side it ends on)."""
    spec = LineSpec("l", *line)  # type: ignore[arg-type]  # a LineId is a str
    return "in" if spec.signed_distance(*end) > 0 else "out"


@pytest.mark.parametrize(
    ("line", "start", "end"),
    [
        ((200, 140, 200, 300), (150, 250), (250, 250)),  # top to bottom, moving right
        ((200, 140, 200, 300), (250, 250), (150, 250)),  # top to bottom, moving left
        ((200, 300, 200, 140), (150, 250), (250, 250)),  # bottom to top, moving right
        ((100, 200, 300, 200), (200, 250), (200, 150)),  # left to right, moving up
        ((300, 200, 100, 200), (200, 250), (200, 150)),  # right to left, moving up
        ((100, 100, 300, 300), (250, 100), (100, 250)),  # diagonal
    ],
)
def test_linezone_in_is_ours(
    peers: ModuleType,
    line: tuple[float, float, float, float],
    start: tuple[float, float],
    end: tuple[float, float],
) -> None:
    """LineZone(start=P1, end=P2) calls ``in`` what we do: toward the side (y2-y1, x1-x2)
    points to, y down."""
    x1, y1, x2, y2 = line
    zone = sv.LineZone(
        start=sv.Point(x1, y1),
        end=sv.Point(x2, y2),
        triggering_anchors=(sv.Position.BOTTOM_CENTER,),
    )
    seen = []
    for k in range(21):
        fx = start[0] + (end[0] - start[0]) * k / 20
        fy = start[1] + (end[1] - start[1]) * k / 20
        boxes = np.array([[fx - 10, fy - 50, fx + 10, fy]], np.float32)
        crossed_in, crossed_out = zone.trigger(sv.Detections(xyxy=boxes, tracker_id=np.array([3])))
        seen += ["in"] * int(crossed_in.sum()) + ["out"] * int(crossed_out.sum())
    assert [peers.LINEZONE_DIRECTION[d] for d in seen] == [ours(line, end)]


@pytest.mark.parametrize("rightward", [True, False], ids=["right", "left"])
@pytest.mark.parametrize(
    "tracker",
    ["boxmot-ocsort", "boxmot-bytetrack", "boxmot-sfsort", "boxmot-botsort", "sv-bytetrack"],
)
def test_peer_finds_the_one_crossing(peers: ModuleType, tracker: str, rightward: bool) -> None:
    assert tracker in peers.TRACKERS
    counter = peers.PeerCounter(tracker, [LINE, ASIDE], FPS)
    image = background()
    for k, (boxes, scores) in enumerate(walk(rightward)):
        counter.update(image, boxes, scores, k / FPS)
    want = "in" if rightward else "out"
    assert want == ours(LINE, (260.0, 190.0) if rightward else (60.0, 190.0))
    for th in peers.THRESHOLDS:
        crossed, aside = counter.events[th]
        assert [e.dir for e in crossed] == [want], (tracker, th)
        assert 24 / FPS <= crossed[0].t <= 30 / FPS, (tracker, th)
        assert aside == []
    assert counter.frames == 50


def test_accuracy_scores_peers_beside_ours(peers: ModuleType, tmp_path: Path) -> None:
    """accuracy.py's evaluate() on a synthetic sequence: ours and every peer at each
    threshold get a row, each with the walk's one crossing, and the table names them."""
    from edgetally.runtime.scoring.matching import Event
    from edgetally.runtime.scoring.references import ReferenceLine

    accuracy = load("accuracy")
    folder = tmp_path / "walk"
    folder.mkdir()
    image = background()
    detections = walk(rightward=True)
    for k in range(len(detections)):
        cv2.imwrite(str(folder / f"{k:04d}.png"), image)
    line = ",".join(f"{v:g}" for v in LINE)
    truth = [ReferenceLine(LINE, (Event(25 / FPS, "in"),))]
    seq = accuracy.Sequence("walk", str(folder), [line], truth, gate=False)
    cache = tmp_path / "cache"
    cache.mkdir()
    arrays: dict[str, Any] = {f"b{i}": b for i, (b, _) in enumerate(detections)}
    arrays.update({f"s{i}": s for i, (_, s) in enumerate(detections)})
    np.savez_compressed(
        accuracy._cache_path(cache, "m", "b", seq), n=np.array(len(detections)), **arrays
    )
    logged: list[str] = []

    rows = accuracy.evaluate([("m", "b")], [seq], cache, 1.0, log=logged.append, peers=True)

    names = [(r["tracker"], r["threshold"]) for r in rows]
    assert names == [("edgetally", None)] + [
        (t, th) for t in peers.TRACKERS for th in peers.THRESHOLDS
    ]
    for row in rows:
        assert {"model", "backend", "sequences"} <= row.keys()
        scored = row["sequences"]["walk"]
        assert (scored["tp"], scored["fp"], scored["fn"]) == (1, 0, 0), row["tracker"]
        assert scored["lines"][0]["in"] == 1
    assert any("ms per inferred frame" in m for m in logged)
    table = accuracy.table(rows, ["walk"]).splitlines()
    assert table[0].startswith("| model | backend | tracker |")
    assert "| m | b | edgetally | 1.00 / 1.00 |" in table
    assert "| m | b | boxmot-ocsort t=2 | 1.00 / 1.00 |" in table
