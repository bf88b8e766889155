"""Empty-gap scoring: matching, YOLO labels, config errors, and the CLI on real photos."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from edgetally.main import build_app
from edgetally.runtime.scoring.shelf import evaluate, match, read_yolo_labels
from edgetally.runtime.shelf.config import load_config, parse_config
from edgetally.runtime.shelf.errors import ShelfError
from edgetally.runtime.shelf.proposer import DarkBlobGapProposer
from typer.testing import CliRunner

from tests.conftest import shared_path


def test_matching_is_one_to_one_at_the_iou() -> None:
    truth = np.array([[0, 0, 10, 10], [20, 0, 30, 10]], np.float32)
    pred = np.array([[0, 0, 10, 10], [1, 0, 11, 10], [20, 0, 26, 10], [50, 50, 60, 60]], np.float32)
    score = np.array([0.9, 0.8, 0.7, 0.6], np.float32)
    assert match(pred, score, truth, 0.3) == 2  # the duplicate and the stray do not count
    assert match(pred, score, truth, 0.7) == 1  # 6/10 overlap fails at 0.7


def test_yolo_labels_become_pixel_boxes(tmp_path: Path) -> None:
    p = tmp_path / "a.txt"
    p.write_text("0 0.5 0.5 0.2 0.4\n1 0.1 0.1 0.1 0.1\n")
    np.testing.assert_allclose(read_yolo_labels(p, 100, 50), [[40, 15, 60, 35]])
    p.write_text("0 zero\n")
    with pytest.raises(ShelfError, match=r"a\.txt:1"):
        read_yolo_labels(p, 100, 50)


def test_proposer_finds_a_dark_empty_gap_among_products(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    img = rng.integers(0, 255, (200, 300, 3)).astype(np.uint8)  # busy "products"
    img = np.asarray(cv2.GaussianBlur(img, (3, 3), 0), np.uint8)
    img[60:150, 100:180] = 25  # a dark, plain gap
    (tmp_path / "images").mkdir()
    (tmp_path / "labels").mkdir()
    cv2.imwrite(str(tmp_path / "images" / "s.png"), img)
    (tmp_path / "labels" / "s.txt").write_text(f"0 {140 / 300} {105 / 200} {80 / 300} {90 / 200}\n")
    [score] = evaluate(tmp_path, {"dark-blob": DarkBlobGapProposer()})
    assert (score.truths, score.true_positives) == (1, 1)
    assert score.precision == 1.0 and score.f1 == 1.0


def test_config_errors_point_at_the_key(tmp_path: Path) -> None:
    good = {
        "regions": [
            {
                "id": "r",
                "polygon": [[0, 0], [9, 0], [9, 9]],
                "facings": [{"id": "a", "polygon": [[0, 0], [5, 0], [5, 5], [0, 5]]}],
            }
        ]
    }
    assert parse_config(good).facings[0].bbox == (0, 0, 5, 5)
    bad = json.loads(json.dumps(good))
    bad["regions"][0]["facings"][0]["polygon"] = [[0, 0], [1, 1]]
    with pytest.raises(ShelfError, match=r"regions\[0\]\.facings\[0\]\.polygon"):
        parse_config(bad)
    with pytest.raises(ShelfError, match="confirm_frames"):
        parse_config({**good, "confirm_frames": 0})
    with pytest.raises(ShelfError, match=r"^confirm: unknown key"):
        parse_config({**good, "confirm": 3})
    bad = json.loads(json.dumps(good))
    bad["regions"][0]["facings"][0]["colour"] = "red"
    with pytest.raises(ShelfError, match=r"^regions\[0\]\.facings\[0\]\.colour: unknown key"):
        parse_config(bad)
    with pytest.raises(ShelfError, match=r"^regions\[0\]: must be a mapping"):
        parse_config({"regions": ["top"]})
    path = tmp_path / "shelf.yaml"
    path.write_text("regions: [\n")
    with pytest.raises(ShelfError, match="not valid YAML"):
        load_config(path)


def test_cli_refuses_a_folder_without_the_yolo_layout(tmp_path: Path) -> None:
    result = CliRunner().invoke(build_app(), ["shelf", "eval", str(tmp_path), "--json"])
    assert result.exit_code != 0
    assert "images/ and labels/" in str(result.exception)


@pytest.mark.slow
def test_cli_scores_the_void_dev_photos() -> None:
    folder = shared_path("data", "shelf", "void_dev")
    result = CliRunner().invoke(
        build_app(), ["shelf", "eval", str(folder), "--json", "--method", "dark-blob"]
    )
    assert result.exit_code == 0, result.output
    [row] = json.loads(result.output)
    assert row["images"] == 125 and row["truths"] > 600
    # the honest baseline: far from a trained detector, far above chance
    assert 0.15 < row["f1"] < 0.6
    assert 0 < row["true_positives"] <= min(row["predictions"], row["truths"])
