"""`edgetally shelf train`: labels checked line by line, and a gap detector trained on a few
rendered shelf photos that loads like any zoo model, runs on the device's backends, finds the
gaps and drives the shelf watcher to the scene's true events."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
from edgetally.main import build_app
from edgetally.models.zoo import resolve_model, sha256_of
from edgetally.quantize.shelf_train.augment import Augment
from edgetally.quantize.shelf_train.backbone import TrainError, default_backbone
from edgetally.quantize.shelf_train.labels import load_samples, parse_label_file
from edgetally.runtime.shelf.config import ScorerSpec
from edgetally.runtime.shelf.monitor import ShelfMonitor
from edgetally.runtime.shelf.scorers import DetectorScorer, load_shelf_detector
from edgetally.runtime.shelf.synthetic import (
    HEIGHT,
    PRODUCTS,
    WIDTH,
    ShelfScene,
    default_script,
    facing_box,
    scene_config,
)
from edgetally.runtime.types import iou_matrix
from typer.testing import CliRunner

from tests.conftest import shared_path
from tests.runtime.shelf.test_shelf_events import TRUTH

T0 = datetime(2025, 3, 1, 9, 0, tzinfo=UTC)


def gap_box(facing: int, stock: int) -> tuple[float, float, float, float]:
    """The empty part of a facing holding ``stock`` products (they stand left-aligned)."""
    x1, _, x2, y2 = facing_box(facing)
    return float(x1 + 2 + stock * 29), float(y2 - 84), float(x2 - 2), float(y2)


def write_scenes(folder: Path, seeds: range, rng: np.random.Generator) -> None:
    """Rendered shelves with random stock, and YOLO labels of their gaps."""
    (folder / "images").mkdir(parents=True)
    (folder / "labels").mkdir()
    for seed in seeds:
        stock = rng.choice([0, 2, 3, 3], size=8)
        image = ShelfScene(seed=seed).render(stock)
        cv2.imwrite(str(folder / "images" / f"{seed}.png"), image)
        lines = []
        for i, n in enumerate(stock):
            if n < PRODUCTS:
                x1, y1, x2, y2 = gap_box(i, int(n))
                lines.append(
                    f"0 {(x1 + x2) / 2 / WIDTH:.6f} {(y1 + y2) / 2 / HEIGHT:.6f} "
                    f"{(x2 - x1) / WIDTH:.6f} {(y2 - y1) / HEIGHT:.6f}"
                )
        (folder / "labels" / f"{seed}.txt").write_text("\n".join(lines) + "\n")


# -- labels ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("0 0.5 0.5 0.2", "expected 'class cx cy w h' or a polygon"),
        ("0 0.5 half 0.2 0.2", "expected 'class cx cy w h' (numbers)"),
        ("1 0.5 0.5 0.2 0.2", "class 1 out of range (one class: 0, an empty gap)"),
        ("0 0.5 1.2 0.2 0.2", "coordinates outside 0..1"),
        ("0 0.5 0.5 0 0.2", "a box needs a width and height above 0"),
    ],
)
def test_a_bad_label_line_is_named(tmp_path: Path, line: str, message: str) -> None:
    path = tmp_path / "a.txt"
    path.write_text(f"0 0.1 0.1 0.05 0.05\n{line}\n")
    with pytest.raises(TrainError) as info:
        parse_label_file(path)
    assert str(info.value) == f"{path}:2: {message}" or str(info.value).startswith(
        f"{path}:2: {message}"
    )


def test_boxes_and_polygons_read_as_normalised_corners(tmp_path: Path) -> None:
    path = tmp_path / "a.txt"
    path.write_text("0 0.5 0.5 0.2 0.4\n\n0 0.1 0.2 0.3 0.2 0.3 0.6 0.1 0.6\n")
    np.testing.assert_allclose(
        parse_label_file(path), [[0.4, 0.3, 0.6, 0.7], [0.1, 0.2, 0.3, 0.6]], atol=1e-6
    )


def test_missing_folders_and_no_images_are_refused(tmp_path: Path) -> None:
    (tmp_path / "images").mkdir()
    with pytest.raises(TrainError, match=r"labels folder .* not found"):
        load_samples(tmp_path / "images", tmp_path / "labels")
    (tmp_path / "labels").mkdir()
    with pytest.raises(TrainError, match=r"no images"):
        load_samples(tmp_path / "images", tmp_path / "labels")
    with pytest.raises(TrainError, match=r"images folder .* not found"):
        load_samples(tmp_path / "nowhere", tmp_path / "labels")


def test_the_cli_says_a_bad_label_in_one_line(tmp_path: Path) -> None:
    pytest.importorskip("torch")
    write_scenes(tmp_path / "set", range(2), np.random.default_rng(0))
    label = tmp_path / "set" / "labels" / "1.txt"
    label.write_text("0 0.5 0.5 0.2 1.5\n")
    result = CliRunner().invoke(
        build_app(),
        [
            "shelf",
            "train",
            str(tmp_path / "set" / "images"),
            "--labels",
            str(tmp_path / "set" / "labels"),
            "--out",
            str(tmp_path / "out"),
            "--backbone",
            str(tmp_path / "set" / "images" / "0.png"),
        ],
    )
    assert isinstance(result.exception, TrainError)
    assert str(result.exception) == f"{label}:1: coordinates outside 0..1 (labels are normalised)"
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
def test_the_cli_trains_one_epoch_and_reports_it(tmp_path: Path) -> None:
    pytest.importorskip("torch")
    backbone = backbone_file()
    write_scenes(tmp_path / "set", range(4), np.random.default_rng(3))
    result = CliRunner().invoke(
        build_app(),
        [
            "shelf",
            "train",
            str(tmp_path / "set" / "images"),
            "--labels",
            str(tmp_path / "set" / "labels"),
            "--out",
            str(tmp_path / "out"),
            "--epochs",
            "1",
            "--val",
            str(tmp_path / "set"),
            "--backbone",
            str(backbone),
            "--size",
            "128",
            "--json",
        ],
    )
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert out["model"] == str(tmp_path / "out" / "shelf-gaps.onnx")
    assert out["manifest"] == str(tmp_path / "out" / "shelf-gaps.onnx.model.json")
    assert (out["images"], len(out["epochs"])) == (4, 1)
    (epoch,) = out["epochs"]
    assert epoch["epoch"] == 1 and epoch["loss"] > 0 and 0.0 <= epoch["val_f1"] <= 1.0
    assert resolve_model(out["model"]).manifest.input.width == 128


# -- a trained model ---------------------------------------------------------------------------


def backbone_file() -> Path:
    """The packaged yolox-nano, else the shared one, else skip."""
    found = default_backbone()
    return found if found is not None else shared_path("models", "yolox_nano.onnx")


# The scene is easy: a small head, plain flips and colour, a high rate, and three short
# epochs over 96 rendered photos in pairs (144 steps) learn it.
SCENE_OPTIONS: dict[str, Any] = dict(
    epochs=3, batch=2, lr=1e-2, size=256, width=32, augment=Augment(zoom_in=0.0, zoom_out=0.0)
)


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    pytest.importorskip("torch")
    from edgetally.quantize.shelf_train.train import TrainOptions, train

    backbone = backbone_file()
    root = tmp_path_factory.mktemp("shelf_train")
    write_scenes(root / "train", range(100, 196), np.random.default_rng(1))
    write_scenes(root / "val", range(200, 204), np.random.default_rng(2))
    reports: list[Any] = []
    result = train(
        root / "train" / "images",
        root / "train" / "labels",
        root / "model",
        backbone,
        val_dir=root / "val",
        options=TrainOptions(**SCENE_OPTIONS),
        on_epoch=reports.append,
    )
    assert (result.images, len(result.epochs)) == (96, SCENE_OPTIONS["epochs"])
    assert reports == result.epochs and reports[0].val_f1 is not None
    return result.model


@pytest.mark.slow
def test_the_trained_model_loads_through_the_zoo_and_finds_a_gap(trained: Path) -> None:
    from edgetally.runtime.counting.detectors import load_detector

    assert sorted(p.name for p in trained.parent.iterdir()) == [
        "shelf-gaps.onnx",
        "shelf-gaps.onnx.model.json",
    ]
    resolved = resolve_model(str(trained))
    manifest = resolved.manifest
    assert (manifest.family, manifest.format, manifest.labels) == ("yolox", "onnx", ["gap"])
    assert manifest.sha256 == sha256_of(trained)
    assert (manifest.input.width, manifest.input.height) == (256, 256)
    stock = np.array([3, 0, 3, 3, 3, 3, 2, 3])
    image = ShelfScene(seed=7).render(stock)
    truth = np.array([gap_box(1, 0), gap_box(6, 2)], np.float32)
    for backend in ("onnxruntime", "openvino"):
        detector = load_detector(str(trained), backend, score_threshold=0.3)
        detector.classes = (0,)
        assert detector.info.backend == backend
        dets = detector.detect(image)
        # the two best boxes are the two gaps, each scored well above the rest's noise
        top = np.argsort(-dets.score)[:2]
        assert len(top) == 2 and dets.score[top].min() >= 0.5, (backend, dets)
        ious = iou_matrix(dets.xyxy[top], truth)
        assert ious.max(axis=0).min() >= 0.5 and len(set(ious.argmax(axis=1))) == 2, (backend, dets)


@pytest.mark.slow
def test_the_trained_detector_gives_the_scenes_true_events(trained: Path) -> None:
    """As the classical scorer's test: the scripted scene, scored by the trained model."""
    scene = ShelfScene(seed=3)
    cfg = scene_config(confirm_frames=3)
    detect = load_shelf_detector(ScorerSpec(kind="detector", model=str(trained)))
    monitor = ShelfMonitor(cfg, DetectorScorer(detect))
    events = []
    for i, step in enumerate(default_script()):
        img = scene.render(np.array(step.stock), step.people)
        boxes = np.array([p.box for p in step.people], np.float32).reshape(-1, 4)
        out = monitor.update(img, boxes, i, T0 + timedelta(seconds=i / 5))
        events += [(e.frame_index, e.kind, e.facing_id) for e in out.events]
    assert events == TRUTH
