"""A ``scorer: detector`` shelf on the device: the watcher loads the configured detector and
its boxes, not the classical comparison, decide which facings are empty."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import cv2
import numpy as np
import pytest
from edgetally.main import build_app
from edgetally.models.errors import EdgetallyError
from edgetally.runtime.config import load_config, parse_config
from edgetally.runtime.counting.detectors import load_detector
from edgetally.runtime.shelf.buckets import ShelfBucket
from edgetally.runtime.shelf.config import ScorerSpec, ShelfConfig
from edgetally.runtime.shelf.errors import ShelfError
from edgetally.runtime.shelf.proposer import DetectorGapProposer, shelf_bands
from edgetally.runtime.shelf.scorers import Detect, DetectorScorer, load_shelf_detector
from edgetally.runtime.shelf.synthetic import (
    PRODUCTS,
    ScriptFrame,
    ShelfScene,
    default_script,
    facing_box,
    scene_config_data,
    standing_at,
)
from edgetally.runtime.shelf.watch import ShelfWatch
from edgetally.runtime.types import Detections
from typer.testing import CliRunner

from tests.conftest import shared_path

T0 = datetime(2025, 3, 1, 9, 0, tzinfo=UTC)


def _camera_shelf(**scorer: object) -> ShelfConfig:
    """The scene's shelf as a device config's camera holds it, with scorer keys added."""
    cfg = parse_config(
        {
            "site": "s",
            "device": "d",
            "cameras": [{"id": "c", "source": "v.mp4", "shelf": {**scene_config_data(), **scorer}}],
        }
    )
    shelf = cfg.cameras[0].shelf
    assert shelf is not None
    return shelf


def _gap_stand_in(script: list[ScriptFrame], gap_class: int) -> tuple[Detect, list[int]]:
    """A gap detector that reads the script: a box of ``gap_class`` over the empty part of
    each facing, and a decoy box of another class over every facing."""
    frame = [0]

    def detect(image: np.ndarray) -> Detections:
        boxes, classes = [], []
        for i, n in enumerate(script[frame[0]].stock):
            x1, y1, x2, y2 = facing_box(i)
            boxes.append((x1, y1, x2, y2))
            classes.append(gap_class + 1)
            if n < PRODUCTS:
                boxes.append((x1 + 4 + n * 29, y1, x2, y2))
                classes.append(gap_class)
        k = len(boxes)
        return Detections(
            np.array(boxes, np.float32).reshape(k, 4),
            np.full(k, 0.9, np.float32),
            np.array(classes, np.int32),
        )

    return detect, frame


def _run(watch: ShelfWatch, script: list[ScriptFrame], frame: list[int]) -> list[ShelfBucket]:
    scene = ShelfScene(seed=11)
    buckets: list[ShelfBucket] = []
    for i, step in enumerate(script):
        frame[0] = i
        boxes = [p.box for p in step.people]
        img = scene.render(np.array(step.stock), step.people)
        buckets += watch.update(img, boxes, i, T0 + timedelta(seconds=i / 5))
    last = watch.flush()
    return buckets + ([last] if last is not None else [])


def _empties(buckets: list[ShelfBucket]) -> dict[str, int]:
    out: dict[str, int] = {}
    for b in buckets:
        for f in b.facings:
            out[f.facing_id] = out.get(f.facing_id, 0) + f.facing_empty
    return {k: v for k, v in out.items() if v}


def test_the_watcher_scores_with_the_configured_detector() -> None:
    script = default_script()
    detect, frame = _gap_stand_in(script, gap_class=2)
    asked: list[ScorerSpec] = []

    def loader(spec: ScorerSpec) -> Detect:
        asked.append(spec)
        return detect

    shelf = _camera_shelf(scorer="detector", model="gaps.onnx", gap_class=2)
    watch = ShelfWatch(shelf, 3600, detector_loader=loader)
    buckets = _run(watch, script, frame)
    assert [(s.model, s.gap_class, s.products) for s in asked] == [("gaps.onnx", 2, False)]
    assert watch.monitor is not None and isinstance(watch.monitor.scorer, DetectorScorer)
    # The script empties f1 (frame 77) and f7 (frame 115); the one of three taken from f2
    # leaves it two-thirds full.
    assert _empties(buckets) == {"f1": 1, "f7": 1}


def test_the_detector_not_the_picture_decides() -> None:
    """Frames where facings empty, scored by a detector that sees no gaps: no events, though
    the classical scorer on the same frames finds them."""
    script = default_script()
    frame = [0]

    def no_gaps(image: np.ndarray) -> Detections:
        return Detections.empty()

    shelf = _camera_shelf(scorer="detector", model="gaps.onnx")
    quiet = ShelfWatch(shelf, 3600, detector_loader=lambda spec: no_gaps)
    assert _empties(_run(quiet, script, frame)) == {}
    classical = ShelfWatch(_camera_shelf(), 3600)
    assert _empties(_run(classical, script, frame)) == {"f1": 1, "f7": 1}


@pytest.mark.parametrize(
    ("keys", "message"),
    [
        ({"scorer": "detector"}, "cameras[0].shelf: model: a detector scorer needs a model"),
        ({"scorer": "yolo"}, "cameras[0].shelf: scorer: must be 'classical' or 'detector'"),
        ({"model": "gaps.onnx"}, "cameras[0].shelf: model: only with scorer: detector"),
        ({"scorer": "detector", "model": "m", "products": "yes"}, "shelf: products: must be"),
        (
            {"scorer": "detector", "model": "m", "products": True, "gap_class": 1},
            "shelf: gap_class: not with products: true",
        ),
        ({"scorer": "detector", "model": "m", "min_score": 2}, "shelf: min_score: must be"),
    ],
)
def test_bad_scorer_keys_name_the_key(keys: dict[str, object], message: str) -> None:
    from edgetally.runtime.errors import ConfigError

    with pytest.raises(ConfigError) as info:
        _camera_shelf(**keys)
    assert message in str(info.value)


def test_a_model_file_is_relative_to_the_config_and_a_zoo_name_is_kept(tmp_path: Path) -> None:
    def shelf_of(model: str) -> ScorerSpec:
        path = tmp_path / "dev.json"
        shelf = {**scene_config_data(), "scorer": "detector", "model": model}
        path.write_text(
            json.dumps(
                {
                    "site": "s",
                    "device": "d",
                    "cameras": [{"id": "c", "source": "v.mp4", "shelf": shelf}],
                }
            )
        )
        cfg = load_config(path).cameras[0].shelf
        assert cfg is not None
        return cfg.scorer

    assert shelf_of("models/gaps.onnx").model == str(tmp_path / "models/gaps.onnx")
    assert shelf_of("pedestrian-ssdlite").model == "pedestrian-ssdlite"


def test_a_gap_class_the_model_lacks_is_refused() -> None:
    spec = ScorerSpec(kind="detector", model="pedestrian-ssdlite", gap_class=5)
    with pytest.raises(ShelfError, match=r"^gap_class: 5 is not a class of pedestrian-ssdlite"):
        load_shelf_detector(spec)


@pytest.mark.slow
def test_a_zoo_model_loads_and_runs_through_the_watcher() -> None:
    """Wiring, not accuracy: no trained gap or product detector is available offline, so the
    offline person model stands in as a "product" detector (products: true). This proves the
    zoo, backend and scorer path end to end; its scores mean nothing about shelves. The
    model finds nobody in the rendered figures, so a street frame with people, resized to
    the scene, is added when the shared footage is there: its boxes must cover facings."""
    shelf = _camera_shelf(
        scorer="detector", model="pedestrian-ssdlite", products=True, min_score=0.2
    )
    watch = ShelfWatch(shelf, 3600, backend="auto")
    reference = load_detector("pedestrian-ssdlite", score_threshold=0.2)
    scene = ShelfScene(seed=12)
    people = [(), (standing_at(1, height=250),), (standing_at(6, height=250),)]
    frames = [scene.render(np.full(8, PRODUCTS), who) for who in people]
    try:
        video = shared_path("data", "footfall", "tud_stadtmitte", "TUD-Stadtmitte.mp4")
    except pytest.skip.Exception:
        video = None
    if video is not None:
        cap = cv2.VideoCapture(str(video))
        for _ in range(50):
            ok, street = cap.read()
        cap.release()
        assert ok
        frames.append(np.asarray(cv2.resize(street, frames[0].shape[1::-1]), np.uint8))
    for i, img in enumerate(frames):
        watch.update(img, [], i, T0 + timedelta(seconds=i))
        monitor = watch.monitor
        assert monitor is not None and isinstance(monitor.scorer, DetectorScorer)
        assert monitor.scorer.products
        got = monitor.scorer.score(img, shelf.facings)
        # The same boxes, covered by hand: emptiness is the share no box covers.
        dets = reference.detect(img)
        cover = np.zeros(img.shape[:2], bool)
        for x1, y1, x2, y2 in dets.xyxy:
            cover[int(y1) : int(np.ceil(y2)), int(x1) : int(np.ceil(x2))] = True
        expected = [
            1.0 - cover[y1:y2, x1:x2].mean() for x1, y1, x2, y2 in (f.bbox for f in shelf.facings)
        ]
        np.testing.assert_allclose(got, expected, atol=1e-6)
        if i == 3:  # the street frame: people found, so some facings read partly covered
            assert len(dets) > 0 and min(got) < 1.0
    bucket = watch.flush()
    assert bucket is not None and len(bucket.facings) == len(shelf.facings)


def test_a_gap_detector_proposes_its_gap_class_only() -> None:
    xyxy = np.array([[0, 0, 10, 10], [5, 5, 30, 30], [40, 0, 60, 20]], np.float32)
    dets = Detections(xyxy, np.array([0.9, 0.8, 0.7], np.float32), np.array([0, 1, 1], np.int32))
    image = np.zeros((50, 80, 3), np.uint8)
    out = DetectorGapProposer(lambda img: dets, gap_class=1).propose(image)
    np.testing.assert_array_equal(out.xyxy, xyxy[1:])
    np.testing.assert_array_equal(out.score, dets.score[1:])
    assert out.class_id.tolist() == [0, 0]  # the gap class of the evaluation


def test_a_product_detector_proposes_what_no_product_covers() -> None:
    img = np.full((200, 400, 3), 120, np.uint8)
    img[100:105] = 20  # a shelf board: the band above it and the one below
    img[196:] = 20
    bands = shelf_bands(np.asarray(cv2.cvtColor(img, cv2.COLOR_BGR2GRAY), np.uint8))
    assert len(bands) == 2
    (a1, a2), (b1, b2) = bands
    products = np.array(
        [
            [0, a1 + 10, 150, a2],
            [250, a1 + 10, 400, a2],  # a gap 150..250
            [0, b1, 400, b2 - 5],  # the lower band full
            [160, a1, 240, a1 + 5],
        ],
        np.float32,
    )  # too thin to fill the band
    dets = Detections(products, np.ones(4, np.float32), np.zeros(4, np.int32))
    out = DetectorGapProposer(lambda im: dets, products=True).propose(img)
    np.testing.assert_array_equal(out.xyxy, [[150, a1, 250, a2]])


def test_the_cli_names_the_scorer_option_at_fault() -> None:
    runner = CliRunner()
    for args, message in [
        (["shelf", "eval", ".", "--scorer", "detector"], "--model: a detector scorer needs"),
        (["shelf", "demo", "--model", "pedestrian-ssdlite"], "--model: only with scorer"),
        (
            [
                "shelf",
                "demo",
                "--scorer",
                "detector",
                "--model",
                "pedestrian-ssdlite",
                "--gap-class",
                "3",
            ],
            "gap_class: 3 is not a class of pedestrian-ssdlite",
        ),
    ]:
        result = runner.invoke(build_app(), args)
        assert isinstance(result.exception, EdgetallyError), result.output
        assert str(result.exception).startswith(message)


@pytest.mark.slow
def test_the_cli_scores_a_zoo_detector_on_a_labelled_folder(tmp_path: Path) -> None:
    """Wiring, not accuracy (the person model stands in for a product detector)."""
    scene = ShelfScene(seed=13)
    (tmp_path / "images").mkdir()
    (tmp_path / "labels").mkdir()
    truths = 0
    for n, stock in enumerate([(3, 0, 3, 3, 3, 3, 3, 0), (3,) * 8]):
        cv2.imwrite(str(tmp_path / "images" / f"{n}.png"), scene.render(np.array(stock)))
        lines = []
        for i in np.flatnonzero(np.array(stock) == 0):
            x1, y1, x2, y2 = facing_box(int(i))
            lines.append(
                f"0 {(x1 + x2) / 800} {(y1 + y2) / 520} {(x2 - x1) / 400} {(y2 - y1) / 260}"
            )
        truths += len(lines)
        (tmp_path / "labels" / f"{n}.txt").write_text("\n".join(lines))
    result = CliRunner().invoke(
        build_app(),
        [
            "shelf",
            "eval",
            str(tmp_path),
            "--json",
            "--scorer",
            "detector",
            "--model",
            "pedestrian-ssdlite",
            "--products",
            "--min-score",
            "0.5",
        ],
    )
    assert result.exit_code == 0, result.output
    (score,) = json.loads(result.output)
    assert score["method"] == "detector"
    assert score["images"] == 2 and score["truths"] == truths == 2
